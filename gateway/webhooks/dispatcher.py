"""Sends events to the configured webhooks: one sender per webhook, in the master.

Each sender first takes its webhook's lease (gateway.webhooks.outbox: always
granted on SQLite; on PostgreSQL one node of the cluster holds it, the others
ask again every `poll_interval` and take over when the holder goes), then
tails the outbox from the webhook's cursor:
it reads up to `batch_size` events of its types, keeps those of its
categories, POSTs them as one signed JSON batch, and moves its cursor on
only after a 2xx. When events pile up (a busy gateway, a receiver back
after an outage) each POST carries a full batch and the next follows at
once; when idle, it looks every `poll_interval`.

Answers: 2xx → done. 410 Gone → this webhook pauses until the next reload
or restart (logged; its cursor stays, so nothing is lost). 413 → the batch
is halved (down to one event) and sent again. Any other status, a timeout,
or a refused connection → retried after `retry_initial`, doubled each time
up to `retry_max` (or the receiver's Retry-After, up to `retry_max`).
Redirects are not followed.

A failure to read or store (the state database away, a lost lease) gives
the lease up; the sender asks for it again after `poll_interval`, so another
node may go on meanwhile.

Senders are independent tasks: a slow or dead receiver delays only its own
webhook. Intake and delivery never wait for webhooks; they only write their
events, as they always do. Time comes from the injected clock.

Security: the receiver's answers are only classified by status; the secret
is only used to sign and never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp

from gateway.clock import Clock
from gateway.errors import StateUnavailable
from gateway.webhooks.outbox import Outbox, OutboxEvent, OutboxLease, Position
from gateway.webhooks.settings import WebhookConfig
from gateway.webhooks.signature import signature_headers

__all__ = ["RESULTS", "PostResult", "WebhookDispatcher", "WebhookSender", "batch_body",
           "event_json", "next_delay"]

log = logging.getLogger(__name__)

# Bounded values for `result` (metrics labels).
RESULTS = ("success", "client_error", "server_error", "timeout", "connection_error", "gone")
USER_AGENT = "smtp-gateway-webhooks/1"
_ENCODE_INLINE = 100  # events; a 100-event body encodes in about 1.5 ms
_MAX_ANSWER = 65536  # octets of a receiver's answer read; the rest is dropped with the connection


@dataclass(frozen=True)
class PostResult:
    result: str  # one of RESULTS
    status: int | None = None
    retry_after: float | None = None
    error: str = ""  # for connection errors: the exception's class

    @property
    def ok(self) -> bool:
        return self.result == "success"


def next_delay(failures: int, initial: float, maximum: float) -> float:
    """The wait after `failures` consecutive failures (≥ 1): `initial`, then doubling
    each time, never more than `maximum`."""
    return float(min(maximum, initial * 2.0 ** min(failures - 1, 60)))


def event_json(e: OutboxEvent) -> dict[str, object]:
    reply = None
    if e.reply_code is not None:
        reply = {"code": e.reply_code, "enhanced": e.reply_enhanced or "",
                 "text": e.reply_text or ""}
    return {
        "id": e.seq,
        "type": e.type,
        "time": e.time,
        "time_iso": datetime.fromtimestamp(e.time, UTC).isoformat(timespec="milliseconds"),
        "queue_id": e.queue_id or None,
        "message_id": e.message_id,
        "recipient": e.recipient,
        "route": e.route,
        "host": e.host,
        "reply": reply,
        "category": e.category,
        "detail": e.detail,
    }


def batch_body(webhook: str, events: Sequence[OutboxEvent]) -> bytes:
    doc = {"webhook": webhook, "events": [event_json(e) for e in events]}
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class WebhookSender:
    """One webhook's loop: take the lease, read from its cursor, POST, advance."""

    def __init__(self, config: WebhookConfig, outbox: Outbox, clock: Clock,
                 session: aiohttp.ClientSession, report: Callable[[str, int], None]) -> None:
        self.config = config
        self.lease: OutboxLease = outbox.lease(config.name)
        self._clock = clock
        self._session = session
        self._report = report
        self.cursor: Position | None = None  # None: not holding the lease
        self.failures = 0  # consecutive failed POSTs
        self.outbox_failures = 0  # consecutive failed reads or cursor writes
        self.batch_limit = config.batch_size  # halved on 413
        self.paused = False  # after 410 Gone, until reload or restart
        self.sent = 0  # events acknowledged by the receiver
        # aiohttp checks certificates against the system's store unless given a context.
        self._ssl: ssl.SSLContext | bool = True
        if config.ca_file is not None:
            self._ssl = ssl.create_default_context(cafile=str(config.ca_file))

    def __repr__(self) -> str:
        state = "PAUSED" if self.paused else ("FAILING" if self.failures else "OK")
        if self.cursor is None and not self.paused:
            state = "STANDBY"
        return (f"<WebhookSender {self.config.name} {state} cursor={self.cursor}"
                f" failures={self.failures} sent={self.sent}>")

    async def run(self) -> None:
        try:
            while not self.paused:
                try:
                    wait = await self._turn()
                    self.outbox_failures = 0
                except Exception as exc:  # the state store away or broken: try again later
                    self._outbox_failed(exc)
                    await self._give_up_lease()
                    wait = self.config.poll_interval
                if wait > 0:
                    await self._clock.sleep(wait)
        finally:
            await self._give_up_lease()  # stopped, reloaded or paused: another node may go on

    async def _turn(self) -> float:
        if self.cursor is None:
            self.cursor = await self.lease.acquire(self._clock.now())
            if self.cursor is None:
                return self.config.poll_interval  # another node sends this webhook
        return await self.step()

    async def _give_up_lease(self) -> None:
        self.cursor = None
        await self.lease.release()

    def _outbox_failed(self, exc: Exception) -> None:
        self.outbox_failures += 1
        if self.outbox_failures > 1:
            return  # one line per stretch of failures
        if isinstance(exc, StateUnavailable):
            log.warning("webhook %s: cannot read the outbox: %s", self.config.name, exc)
        else:
            log.exception("webhook %s: cannot read the outbox", self.config.name)

    async def step(self) -> float:
        """One read and (if anything is wanted) one POST; return how long to wait before
        the next step: 0 when more is waiting, the retry delay after a failure, else the
        poll interval."""
        cfg = self.config
        assert self.cursor is not None  # the lease is held
        read = await self.lease.read(self.cursor, cfg.events, self.batch_limit)
        wanted = [e for e in read.events if cfg.wants(e.type, e.category)]
        if wanted:
            outcome = await self.post(wanted)
            self._report(outcome.result, len(wanted))
            if not outcome.ok:
                return self._failed(outcome)
            self.failures = 0
            self.sent += len(wanted)
        if read.scanned_to > self.cursor:
            await self.lease.advance(read.scanned_to, self._clock.now())
            self.cursor = read.scanned_to
        return 0.0 if len(read.events) >= self.batch_limit else cfg.poll_interval

    async def post(self, events: Sequence[OutboxEvent]) -> PostResult:
        cfg = self.config
        if len(events) > _ENCODE_INLINE:
            # A big batch takes milliseconds to encode: not on the loop that delivers mail.
            body = await asyncio.to_thread(batch_body, cfg.name, events)
        else:
            body = batch_body(cfg.name, events)
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
                   "X-Gateway-Webhook": cfg.name,
                   **signature_headers(cfg.secret, self._clock.now(), body)}
        try:
            async with self._session.post(
                    cfg.url, data=body, headers=headers, allow_redirects=False, ssl=self._ssl,
                    timeout=aiohttp.ClientTimeout(total=cfg.timeout)) as response:
                # Read (a bounded part of) the answer so the connection can be reused.
                await response.content.read(_MAX_ANSWER)
                return _classify(response.status, response.headers.get("Retry-After"))
        except TimeoutError:
            return PostResult("timeout")
        except (aiohttp.ClientError, OSError) as exc:
            # The class names the trouble (refused, certificate, reset) without the URL,
            # which may carry a token.
            return PostResult("connection_error", error=type(exc).__name__)

    def _failed(self, outcome: PostResult) -> float:
        """Decide what a failed POST means; return the wait before the next try."""
        cfg = self.config
        if outcome.result == "gone":
            self.paused = True
            log.error("webhook %s: the receiver answered 410 Gone; paused until reload or "
                      "restart (events wait from cursor %s)", cfg.name, self.cursor)
            return 0.0
        if outcome.status == 413 and self.batch_limit > 1:
            self.batch_limit = max(1, self.batch_limit // 2)
            log.warning("webhook %s: 413 Payload Too Large; batches of %d now", cfg.name,
                        self.batch_limit)
            return 0.0
        self.failures += 1
        delay = next_delay(self.failures, cfg.retry_initial, cfg.retry_max)
        if outcome.retry_after is not None:
            delay = min(cfg.retry_max, max(delay, outcome.retry_after))
        if self.failures == 1 or self.failures % 10 == 0:
            log.warning("webhook %s: %s%s%s (failure %d); next try in %.0fs", cfg.name,
                        outcome.result, f" {outcome.status}" if outcome.status else "",
                        f" ({outcome.error})" if outcome.error else "", self.failures, delay)
        return delay


def _classify(status: int, retry_after: str | None) -> PostResult:
    if 200 <= status < 300:
        return PostResult("success", status)
    if status == 410:
        return PostResult("gone", status)
    wait = float(retry_after) if retry_after and retry_after.strip().isdigit() else None
    kind = "server_error" if status >= 500 else "client_error"
    return PostResult(kind, status, wait)


class WebhookDispatcher:
    """Every webhook's sender, started and stopped with the gateway; `reconfigure()`
    on reload (cursors are kept by name, so a changed URL resumes where it was)."""

    def __init__(self, configs: Sequence[WebhookConfig], outbox: Outbox, clock: Clock,
                 on_delivery: Callable[[str], None] | None = None) -> None:
        self.configs = tuple(configs)
        self._outbox = outbox
        self._clock = clock
        # Metrics hook: called with one of RESULTS per POST.
        self.on_delivery = on_delivery
        self.counts: Counter[str] = Counter()  # POSTs by result
        self.events_sent = 0
        self.senders: dict[str, WebhookSender] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._session: aiohttp.ClientSession | None = None
        self._opened = False

    def __repr__(self) -> str:
        return f"<WebhookDispatcher {list(self.senders.values())!r} {dict(self.counts)}>"

    async def start(self) -> None:
        if not self.configs:
            return  # no webhooks: no task, no query, no HTTP client
        await self._open()
        for cfg in self.configs:
            self._start(cfg)

    async def _open(self) -> None:
        if not self._opened:
            await self._outbox.open()
            self._opened = True
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, limit_per_host=4))

    def _start(self, cfg: WebhookConfig) -> None:
        assert self._session is not None
        sender = WebhookSender(cfg, self._outbox, self._clock, self._session, self._record)
        self.senders[cfg.name] = sender
        self._tasks[cfg.name] = asyncio.get_running_loop().create_task(sender.run())

    def _record(self, result: str, events: int) -> None:
        self.counts[result] += 1
        if result == "success":
            self.events_sent += events
        if self.on_delivery is not None:
            self.on_delivery(result)

    async def reconfigure(self, configs: Sequence[WebhookConfig]) -> None:
        """Restart every sender with the new settings (a paused one starts again)."""
        await self._stop_senders()
        self.configs = tuple(configs)
        await self.start()

    async def _stop_senders(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        self.senders.clear()

    async def stop(self) -> None:
        await self._stop_senders()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def lag(self) -> dict[str, int]:
        """Events each webhook this node sends has not looked at yet (for the metrics
        exporter; webhooks another node holds are that node's to report)."""
        return {name: await s.lease.pending(s.cursor)
                for name, s in list(self.senders.items()) if s.cursor is not None}
