"""`Delivery.deliver()`: one DeliveryJob in, one Attempt out (Postfix smtp(8)); the
stage's overview is in gateway/delivery/__init__.py.

Security: talks to remote servers (see smtp_client.py and mx.py); smarthost passwords
stay in `Secret` and reach only the AUTH command.
"""

from __future__ import annotations

import logging
import re
import ssl
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gateway.bounces.verp import ReturnPaths
from gateway.clock import Clock
from gateway.delivery.breaker_sharing import SharedBreakers
from gateway.delivery.mx import MxHost, MxResolver
from gateway.delivery.outcome import HostOutcome, classify, host_failed
from gateway.delivery.pool import ConnectionPool, Lease
from gateway.delivery.router import Router
from gateway.delivery.settings import DeliveryConfig
from gateway.delivery.smarthosts import BreakerState, CircuitBreaker
from gateway.delivery.smtp_client import (
    Endpoint,
    MailRequest,
    SessionFailed,
    SessionSettings,
    SmtpConnection,
    StaleConnection,
    TlsMode,
)
from gateway.errors import DeliveryError
from gateway.model import Attempt, DeliveryJob, RecipientResult, Reply, Route, Smarthost

if TYPE_CHECKING:
    from gateway.state.breakers import BreakerStore

__all__ = ["BreakerState", "CircuitBreaker", "Delivery", "MxResolver", "Router"]

log = logging.getLogger(__name__)

# Postfix smtp_mx_address_limit / smtp_mx_session_limit: addresses tried per
# attempt, and sessions that got as far as a greeting.
MX_ADDRESS_LIMIT = 5
MX_SESSION_LIMIT = 2
INTERNAL_ERROR = Reply(451, "4.3.0", "internal error during delivery")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MX_TLS = {
    "none": TlsMode.NONE,
    "opportunistic": TlsMode.OPPORTUNISTIC,
    "required": TlsMode.REQUIRED,
    "verify": TlsMode.REQUIRED,
}
_SMARTHOST_TLS = {"none": TlsMode.NONE, "starttls": TlsMode.REQUIRED, "implicit": TlsMode.IMPLICIT}


@dataclass
class _Progress:
    """One job's recipients as the attempt goes from host to host."""

    pending: tuple[str, ...]
    results: dict[str, Reply] = field(default_factory=dict)
    reasons: dict[str, Reply] = field(default_factory=dict)  # why a pending one is still pending
    host: str = ""  # the last server that answered

    def absorb(self, outcome: HostOutcome, host: str) -> None:
        for result in outcome.done:
            self.results[result.recipient] = result.reply
        for result in outcome.retry:
            self.reasons[result.recipient] = result.reply
        self.pending = tuple(r.recipient for r in outcome.retry)
        if host:
            self.host = host

    def give_up(self, reply: Reply) -> None:
        """The pending recipients get the last reason seen for them, else `reply`."""
        for recipient in self.pending:
            self.results[recipient] = self.reasons.get(recipient, reply)
        self.pending = ()

    def settle(self, reply: Reply) -> None:
        """The pending recipients get `reply`, whatever happened before (NXDOMAIN is final)."""
        self.reasons.clear()
        self.give_up(reply)


class _TlsContexts:
    """Built once: creating an SSLContext and loading a trust store costs milliseconds."""

    def __init__(self, config: DeliveryConfig) -> None:
        self.ca_file = config.ca_file
        cafile = str(config.ca_file) if config.ca_file else None
        self.verify = ssl.create_default_context(cafile=cafile)
        # Opportunistic TLS encrypts against passive listening only; checking the
        # certificate would just turn a self-signed MX into plaintext (RFC 7435).
        self.encrypt_only = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.encrypt_only.check_hostname = False
        self.encrypt_only.verify_mode = ssl.CERT_NONE


class Delivery:
    def __init__(self, config: DeliveryConfig, clock: Clock, *,
                 resolver: MxResolver | None = None, breaker_store: BreakerStore | None = None,
                 node: str = "") -> None:
        """`breaker_store`: the cluster's breaker state (None: this node's own);
        `node`: this node's name in it."""
        self._clock = clock
        self._own_resolver = resolver is None
        self._resolver = resolver or MxResolver(config.dns, clock)
        self._breakers = SharedBreakers(breaker_store, node)
        self._pool = ConnectionPool(config.connection_idle_timeout)
        self._tls = _TlsContexts(config)
        self._endpoints: dict[Smarthost, Endpoint] = {}
        # VERP (gateway.bounces.verp): set by the Gateway; None keeps every sender as is.
        self.return_paths: ReturnPaths | None = None
        self._apply(config)

    def _apply(self, config: DeliveryConfig) -> None:
        self.config = config
        self._settings = SessionSettings(config.helo_name, config.connect_timeout,
                                         config.command_timeout, config.data_timeout)
        if self._tls.ca_file != config.ca_file:
            self._tls = _TlsContexts(config)
        self._endpoints.clear()
        self._pool.idle_timeout = config.connection_idle_timeout

    def reconfigure(self, config: DeliveryConfig) -> None:
        """SIGHUP: new timeouts, DNS servers and trust store; breakers and pool stay."""
        if self._own_resolver and config.dns != self._resolver.config:
            self._resolver = MxResolver(config.dns, self._clock)
        self._apply(config)

    def breakers(self) -> list[CircuitBreaker]:
        return self._breakers.all()

    async def close(self) -> None:
        self._pool.close()

    def __repr__(self) -> str:
        return f"<Delivery {self._pool!r} {self._breakers!r}>"

    # -- one job ---------------------------------------------------------------------------

    async def deliver(self, job: DeliveryJob, content: bytes) -> Attempt:
        started = self._clock.now()
        progress = _Progress(tuple(dict.fromkeys(job.recipients)))
        try:
            await self._deliver(job, content, progress)
        except Exception:
            # A bug must not strand the message: defer whatever is not settled.
            log.exception("delivery of %s via %s failed", job.message.id, job.route.name)
        progress.give_up(INTERNAL_ERROR)
        results = tuple(RecipientResult(r, progress.results.get(r, INTERNAL_ERROR))
                        for r in job.recipients)
        return Attempt(job.route.name, progress.host, results, started, self._clock.now())

    async def _deliver(self, job: DeliveryJob, content: bytes, progress: _Progress) -> None:
        envelope = job.message.envelope
        if _CONTROL.search(envelope.mail_from):
            progress.settle(Reply(553, "5.1.7", "bad sender address syntax"))
            return
        bad = [r for r in progress.pending if _CONTROL.search(r)]
        for recipient in bad:
            progress.results[recipient] = Reply(553, "5.1.3", "bad recipient address syntax")
        progress.pending = tuple(r for r in progress.pending if r not in bad)
        if not progress.pending:
            return
        request = MailRequest(envelope.mail_from, progress.pending, envelope.smtputf8,
                              envelope.body_type.upper() == "8BITMIME")
        paths = self.return_paths
        if paths is not None and paths.applies(job.route.verp, envelope.mail_from):
            await self._each_with_return_path(job, paths, request, content, progress)
        else:
            await self._send(job, request, content, progress)

    async def _each_with_return_path(self, job: DeliveryJob, paths: ReturnPaths,
                                     request: MailRequest, content: bytes,
                                     progress: _Progress) -> None:
        """VERP: each recipient its own transaction, with its own envelope sender (the
        message's bytes, and so its From: and DKIM signature, are unchanged)."""
        recipients = job.message.envelope.recipients
        for recipient in progress.pending:
            sub = _Progress((recipient,))
            sender = paths.for_recipient(job.message.id, recipients, recipient)
            await self._send(job, MailRequest(sender, (recipient,), request.smtputf8,
                                              request.eight_bit), content, sub)
            progress.results.update(sub.results)
            progress.reasons.update(sub.reasons)
            progress.host = sub.host or progress.host
        progress.pending = tuple(r for r in progress.pending if r not in progress.results)

    async def _send(self, job: DeliveryJob, request: MailRequest, content: bytes,
                    progress: _Progress) -> None:
        if job.route.kind == "smarthost":
            await self._via_smarthosts(job.route, request, content, progress)
        else:
            domain = job.domain.lower() or request.recipients[0].rpartition("@")[2].lower()
            await self._via_mx(job.route, domain, request, content, progress)

    # -- smarthosts ------------------------------------------------------------------------

    async def _via_smarthosts(self, route: Route, request: MailRequest, content: bytes,
                              progress: _Progress) -> None:
        for smarthost in route.smarthosts:
            if not progress.pending:
                return
            breaker = self._breakers.get(route, smarthost)
            if not await self._breakers.allows(breaker, self._clock.now()):
                continue
            outcome, reached = await self._via_smarthost(
                route, smarthost, _only(request, progress.pending), content)
            before = breaker.state
            state = await self._breakers.record(breaker, outcome.host_ok, self._clock.now())
            if not outcome.host_ok:
                reason = outcome.retry[0].reply if outcome.retry else None
                log.warning("smarthost %s of route %s failed (%s), breaker %s",
                            smarthost.name, route.name, reason, state)
            elif state is not before:
                log.warning("smarthost %s of route %s works again, breaker %s",
                            smarthost.name, route.name, state)
            progress.absorb(outcome, smarthost.name if reached else "")
        progress.give_up(Reply(451, "4.4.0", f"no smarthost of route {route.name} is "
                               "available (circuit breakers open)"))

    async def _via_smarthost(self, route: Route, smarthost: Smarthost, request: MailRequest,
                             content: bytes) -> tuple[HostOutcome, bool]:
        key: Hashable = ("smarthost", route.name, smarthost)
        lease = await self._pool.acquire(key, smarthost.max_connections)
        try:
            return await self._on_lease(lease, self._smarthost_endpoint(smarthost),
                                        request, content)
        finally:
            self._pool.release(lease, smarthost.messages_per_connection)

    def _smarthost_endpoint(self, smarthost: Smarthost) -> Endpoint:
        endpoint = self._endpoints.get(smarthost)
        if endpoint is None:
            mode = _SMARTHOST_TLS[smarthost.tls]
            context = self._tls.verify if smarthost.verify_cert else self._tls.encrypt_only
            endpoint = self._endpoints[smarthost] = Endpoint(
                smarthost.host, smarthost.host, smarthost.port, mode,
                None if mode is TlsMode.NONE else context, smarthost.username, smarthost.password)
        return endpoint

    # -- MX ------------------------------------------------------------------------------

    async def _via_mx(self, route: Route, domain: str, request: MailRequest, content: bytes,
                      progress: _Progress) -> None:
        key: Hashable = ("mx", route.name, route.tls, self.config.mx_port, domain)
        lease = await self._pool.acquire(key, route.max_connections_per_destination)
        try:
            tried: set[str] = set()
            if lease.connection is not None:
                # A cached session to this domain skips DNS altogether.
                endpoint = lease.connection.endpoint
                tried.add(endpoint.address)
                outcome, reached = await self._on_lease(lease, endpoint, request, content)
                progress.absorb(outcome, endpoint.name if reached else "")
            if progress.pending:
                await self._walk_mx(route, domain, lease, request, content, progress, tried)
        except DeliveryError as exc:  # from DNS: NXDOMAIN, null MX, SERVFAIL
            progress.settle(Reply(exc.code, exc.enhanced, exc.text))
        finally:
            self._pool.release(lease, route.messages_per_connection)

    async def _walk_mx(self, route: Route, domain: str, lease: Lease, request: MailRequest,
                       content: bytes, progress: _Progress, tried: set[str]) -> None:
        """Try MX hosts' addresses in order until one takes the message or limits are hit."""
        hosts = await self._resolver.mx_hosts(domain)
        sessions = 0
        fallback = Reply(550, "5.4.4", f"no MX host of {domain} has an address")
        for host in hosts:
            try:
                addresses = await self._resolver.addresses(host.name)
            except DeliveryError as exc:
                fallback = Reply(451, exc.enhanced if exc.code < 500 else "4.4.3", exc.text)
                continue
            for address in addresses:
                if address in tried:
                    continue
                if len(tried) >= MX_ADDRESS_LIMIT or sessions >= MX_SESSION_LIMIT:
                    progress.give_up(fallback)
                    return
                tried.add(address)
                endpoint = self._mx_endpoint(route, host, address)
                outcome, reached = await self._on_lease(
                    lease, endpoint, _only(request, progress.pending), content)
                sessions += reached
                progress.absorb(outcome, host.name if reached else "")
                if not progress.pending:
                    return
        progress.give_up(fallback)

    def _mx_endpoint(self, route: Route, host: MxHost, address: str) -> Endpoint:
        mode = _MX_TLS[route.tls]
        context = self._tls.verify if route.tls == "verify" else self._tls.encrypt_only
        return Endpoint(host.name, address, self.config.mx_port, mode,
                        None if mode is TlsMode.NONE else context)

    # -- one host, one transaction ---------------------------------------------------------

    async def _on_lease(self, lease: Lease, endpoint: Endpoint, request: MailRequest,
                        content: bytes) -> tuple[HostOutcome, bool]:
        """Deliver over the lease's idle connection, or a new one to `endpoint`.

        Returns the outcome and whether the server answered at all. A host that
        failed loses its connection: the next message should not start there.
        """
        if lease.connection is not None:
            try:
                replies = await lease.connection.send(request, content, reset=True)
                return self._settle(lease, classify(request.recipients, replies)), True
            except StaleConnection:
                lease.discard()  # the server dropped it while idle: nothing was sent
            except SessionFailed as exc:
                lease.discard()
                return host_failed(request.recipients, exc.reply), True
        try:
            lease.connection = await SmtpConnection.open(endpoint, self._settings)
        except SessionFailed as exc:
            return host_failed(request.recipients, exc.reply), exc.answered
        try:
            replies = await lease.connection.send(request, content, reset=False)
        except SessionFailed as exc:
            lease.discard()
            return host_failed(request.recipients, exc.reply), True
        return self._settle(lease, classify(request.recipients, replies)), True

    @staticmethod
    def _settle(lease: Lease, outcome: HostOutcome) -> HostOutcome:
        if not outcome.host_ok:
            lease.discard()
        return outcome


def _only(request: MailRequest, recipients: tuple[str, ...]) -> MailRequest:
    if recipients == request.recipients:
        return request
    return MailRequest(request.mail_from, recipients, request.smtputf8, request.eight_bit)

