"""Bounce handling as the Gateway runs it: VERP, the SMTP inbox, Maildir and IMAP
pollers, actions and DSNs, built from config.yaml's `bounces:` section.

The Gateway plugs the parts into the other stages — `return_paths` into
delivery, `inbox` into intake, `actions` into the scheduler's one hook — and
hands the current PolicySet to `apply_policies()` on every policy reload.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from gateway.bounces.actions import BounceActions, BounceCounters
from gateway.bounces.dsn import Failure, build_dsn, dsn_allowed, header_section
from gateway.bounces.imap import ImapIngester
from gateway.bounces.inbox import BounceInbox
from gateway.bounces.ingest import BounceProcessor
from gateway.bounces.maildir import Maildir, MaildirIngester
from gateway.bounces.verp import ReturnPaths, VerpCodec
from gateway.clock import Clock
from gateway.config import Config
from gateway.model import (
    Client,
    Envelope,
    Event,
    EventType,
    QueuedMessage,
    QueueState,
    Route,
)
from gateway.policy.rules_file import PolicySet
from gateway.spool import Spool
from gateway.state.store import STATE_ERRORS, StateStore

__all__ = ["BounceService", "DsnSender", "inbox_for"]

log = logging.getLogger(__name__)

# Processed-message keys are kept this long: they guard against reprocessing a
# message whose move (to cur/, to the processed folder) a crash interrupted.
KEY_RETENTION = 90 * 86400.0

Enqueue = Callable[[Envelope, bytes], Awaitable[QueuedMessage]]


def codec_for(config: Config) -> VerpCodec | None:
    verp = config.bounces.verp
    return VerpCodec(verp.key, verp.domain, verp.prefix) if verp is not None else None


def inbox_for(config: Config, on_stored: Callable[[], None] | None = None
              ) -> BounceInbox | None:
    """The SMTP inbox for the bounce domain (also built by each intake worker)."""
    domain = config.bounces.domain
    if domain is None:
        return None
    maildir = Maildir(config.data_dir / "bounces")
    maildir.create()
    return BounceInbox(domain, config.bounces.smtp_listeners, maildir, on_stored)


class DsnSender:
    """RFC 3464 notices to the sender, for failures on routes with `dsn: true`."""

    def __init__(self, spool: Spool, routes: Sequence[Route], hostname: str, clock: Clock,
                 enqueue: Enqueue, actions: BounceActions) -> None:
        self.spool = spool
        self.routes = {r.name: r for r in routes}
        self.hostname = hostname
        self.clock = clock
        self.enqueue = enqueue
        self.actions = actions

    def filed(self, qm: QueuedMessage, events: Sequence[Event]) -> None:
        failures = [Failure(e.recipient, e.reply, e.host or "", e.type is EventType.EXPIRED)
                    for e in events
                    if e.type in (EventType.BOUNCED, EventType.EXPIRED)
                    and e.recipient and e.reply is not None
                    and self._wanted(e.route)]
        if not failures:
            return
        try:  # still in active/: the scheduler removes it after this call
            _, content = self.spool.files.read(qm.id, QueueState.ACTIVE)
        except Exception as exc:
            log.warning("%s: no DSN, the queue file cannot be read: %s", qm.id, exc)
            return
        header = header_section(content)
        if not dsn_allowed(qm, header):
            return
        now = self.clock.now()
        msg = build_dsn(qm, header, failures, self.hostname, now)
        envelope = Envelope(mail_from="", recipients=(qm.envelope.mail_from,),
                            client=Client("dsn", "127.0.0.1"), received_at=now,
                            message_id=str(msg["Message-ID"]))
        self.actions.spawn(self._send(qm, envelope, msg.as_bytes(), failures))

    def _wanted(self, route_name: str | None) -> bool:
        route = self.routes.get(route_name or "")
        return route is not None and route.dsn

    async def _send(self, qm: QueuedMessage, envelope: Envelope, data: bytes,
                    failures: list[Failure]) -> None:
        dsn = await self.enqueue(envelope, data)
        self.actions.counters.dsns_sent += 1
        now = self.clock.now()
        self.actions.state.events.record(
            Event(time=now, queue_id=qm.id, type=EventType.DSN_SENT, recipient=f.recipient,
                  message_id=qm.envelope.message_id, detail=f"dsn queue id {dsn.id}")
            for f in failures)


class BounceService:
    def __init__(self, config: Config, state: StateStore, spool: Spool, clock: Clock,
                 enqueue: Enqueue) -> None:
        self.config = config
        self.store = state.bounces  # bounces.db, or the shared database (closed with it)
        self.counters = BounceCounters()
        self.actions = BounceActions(state, self.store, clock, self.counters)
        codec = codec_for(config)
        self.return_paths = ReturnPaths(codec)
        self.processor = BounceProcessor(self.actions, self.store, codec)
        self.dsn = DsnSender(spool, config.routes, config.hostname, clock, enqueue,
                             self.actions)
        self.ingesters: list[MaildirIngester | ImapIngester] = []
        interval = config.bounces.poll_interval
        self.inbox = inbox_for(config, self._poke_smtp)
        if self.inbox is not None:
            self.ingesters.append(MaildirIngester(self.inbox.maildir, self.processor, "smtp",
                                                  interval, keep=False))
        if config.bounces.maildir is not None:
            self.ingesters.append(MaildirIngester(Maildir(config.bounces.maildir),
                                                  self.processor, "maildir", interval))
        if config.bounces.imap is not None:
            self.ingesters.append(ImapIngester(config.bounces.imap, self.processor, interval,
                                               config.delivery.ca_file))

    def __repr__(self) -> str:
        return f"<BounceService {self.return_paths!r} {self.inbox!r} {self.ingesters!r}>"

    def filed(self, qm: QueuedMessage, events: Sequence[Event]) -> None:
        """The scheduler's hook: actions, then DSNs. Never raises into the scheduler."""
        try:
            self.actions.filed(qm, events)
            self.dsn.filed(qm, events)
        except Exception:
            self.counters.errors += 1
            log.exception("%s: bounce handling of the delivery outcome failed", qm.id)

    def apply_policies(self, policies: PolicySet | None) -> None:
        self.actions.policies = policies

    def reconfigure(self, config: Config) -> None:
        """SIGHUP: per-route DSN settings (per-route VERP comes with the routes). The
        `bounces:` section itself changes only on restart: a new domain or key applied to
        return paths before the inbox and pollers follow would let bounces slip by."""
        self.dsn.routes = {r.name: r for r in config.routes}

    def _poke_smtp(self) -> None:
        for ingester in self.ingesters:
            if isinstance(ingester, MaildirIngester) and ingester.source == "smtp":
                ingester.poke()

    async def start(self) -> None:
        if self.ingesters:
            try:
                await self.store.purge(self.actions.clock.now() - KEY_RETENTION)
            except STATE_ERRORS as exc:
                # The shared database away at start: the queue must still go out, and
                # old keys can wait for the next start; ingestion retries by itself.
                log.warning("bounce ledger not purged, state store unavailable: %s", exc)
        for ingester in self.ingesters:
            ingester.start()

    async def stop(self) -> None:
        for ingester in self.ingesters:
            await ingester.stop()
        await self.actions.drain()
