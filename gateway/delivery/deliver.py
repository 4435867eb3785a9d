"""`Delivery.deliver()`: one DeliveryJob in, one Attempt out (Postfix smtp(8)); the
stage's overview is in gateway/delivery/__init__.py.

Transport security (security.py): each MX host gets DANE, the domain's MTA-STS policy
or the route's `tls`; every session's TLS outcome goes to the OutcomeSink (TLS
reports) and the tls_outcomes metric; REQUIRETLS messages (RFC 8689) go only over
validated TLS to servers that offer REQUIRETLS.

Security: talks to remote servers (see smtp_client.py and mx.py); smarthost passwords
stay in `Secret` and reach only the AUTH command.
"""

from __future__ import annotations

import asyncio
import logging
import re
import weakref
from collections.abc import Hashable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from gateway.bounces.verp import ReturnPaths
from gateway.clock import Clock
from gateway.delivery.breaker_sharing import SharedBreakers
from gateway.delivery.mx import MxHost, MxResolver
from gateway.delivery.outcome import HostOutcome, classify, host_failed
from gateway.delivery.pool import ConnectionPool, Lease
from gateway.delivery.router import Router
from gateway.delivery.security import (
    ActiveSts,
    HostPolicy,
    TlsContexts,
    TransportSecurity,
    active_sts,
    refused,
)
from gateway.delivery.settings import DeliveryConfig
from gateway.delivery.smarthosts import BreakerState, CircuitBreaker
from gateway.delivery.smtp_client import (
    Endpoint,
    MailRequest,
    SessionFailed,
    SessionSettings,
    SmtpConnection,
    StaleConnection,
    TlsFailed,
    TlsMode,
)
from gateway.delivery.tls_policy import OutcomeSink, PolicyType, StsSource
from gateway.errors import DeliveryError, TempFail
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
_SMARTHOST_TLS = {"none": TlsMode.NONE, "starttls": TlsMode.REQUIRED, "implicit": TlsMode.IMPLICIT}


@dataclass
class _Progress:
    """One job's recipients as the attempt goes from host to host."""

    pending: tuple[str, ...]
    results: dict[str, Reply] = field(default_factory=dict)
    reasons: dict[str, Reply] = field(default_factory=dict)  # why a pending one is still pending
    host: str = ""  # the last server that answered
    tls: str = ""  # the session that took a recipient (Attempt.tls)

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


class Delivery:
    def __init__(self, config: DeliveryConfig, clock: Clock, *,
                 resolver: MxResolver | None = None, breaker_store: BreakerStore | None = None,
                 node: str = "", sts: StsSource | None = None,
                 outcomes: OutcomeSink | None = None) -> None:
        """`breaker_store`: the cluster's breaker state (None: this node's own);
        `node`: this node's name in it; `sts`: MTA-STS policies (None: not used);
        `outcomes`: where TLS outcomes go for TLS reports (None: metrics only)."""
        self._clock = clock
        self._own_resolver = resolver is None
        self._resolver = resolver or MxResolver(config.dns, clock)
        self._breakers = SharedBreakers(breaker_store, node)
        self._pool = ConnectionPool(config.connection_idle_timeout)
        self._tls = TlsContexts(config)
        self._endpoints: dict[Smarthost, Endpoint] = {}
        # The HostPolicy each open MX session was opened under, for its outcomes.
        self._policies: weakref.WeakKeyDictionary[SmtpConnection, HostPolicy] = (
            weakref.WeakKeyDictionary())
        # VERP (gateway.bounces.verp): set by the Gateway; None keeps every sender as is.
        self.return_paths: ReturnPaths | None = None
        # MTA-STS (mta_sts.py) and TLS reporting (tlsrpt.py): may be set after construction.
        self.sts: StsSource | None = sts
        self._outcomes = outcomes
        self._apply(config)

    @property
    def outcomes(self) -> OutcomeSink | None:
        return self._outcomes

    @outcomes.setter
    def outcomes(self, sink: OutcomeSink | None) -> None:
        self._outcomes = sink
        self._security.outcomes = sink

    def _apply(self, config: DeliveryConfig) -> None:
        self.config = config
        self._settings = SessionSettings(config.helo_name, config.connect_timeout,
                                         config.command_timeout, config.data_timeout)
        if self._tls.ca_file != config.ca_file:
            self._tls = TlsContexts(config)
        self._security = TransportSecurity(config, self._resolver, self._tls, self._outcomes)
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
        closing = self._pool.close()
        if closing:
            await asyncio.gather(*(conn.wait_closed() for conn in closing))

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
        return Attempt(job.route.name, progress.host, results, started, self._clock.now(),
                       progress.tls)

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
                              envelope.body_type.upper() == "8BITMIME", envelope.requiretls)
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
                                              request.eight_bit, request.requiretls),
                             content, sub)
            progress.results.update(sub.results)
            progress.reasons.update(sub.reasons)
            progress.host = sub.host or progress.host
            progress.tls = sub.tls or progress.tls
        progress.pending = tuple(r for r in progress.pending if r not in progress.results)

    async def _send(self, job: DeliveryJob, request: MailRequest, content: bytes,
                    progress: _Progress) -> None:
        if job.route.kind == "smarthost":
            await self._via_smarthosts(job.route, request, content, progress)
        else:
            domain = job.domain.lower() or request.recipients[0].rpartition("@")[2].lower()
            envelope = job.message.envelope
            # RFC 8689 5: "TLS-Required: No" sets the recipient's policies aside, unless
            # the same message also asked for REQUIRETLS.
            ignore = envelope.tls_optional and not envelope.requiretls
            await self._via_mx(job.route, domain, request, content, progress, ignore)

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
                route, smarthost, _only(request, progress.pending), content, progress)
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
                             content: bytes, progress: _Progress) -> tuple[HostOutcome, bool]:
        key: Hashable = ("smarthost", route.name, smarthost)
        lease = await self._pool.acquire(key, smarthost.max_connections)
        try:
            return await self._on_lease(lease, self._smarthost_endpoint(smarthost),
                                        request, content, progress, None)
        finally:
            self._pool.release(lease, smarthost.messages_per_connection)

    def _smarthost_endpoint(self, smarthost: Smarthost) -> Endpoint:
        endpoint = self._endpoints.get(smarthost)
        if endpoint is None:
            mode = _SMARTHOST_TLS[smarthost.tls]
            context = self._tls.verify if smarthost.verify_cert else self._tls.encrypt_only
            endpoint = self._endpoints[smarthost] = Endpoint(
                smarthost.host, smarthost.host, smarthost.port, mode,
                None if mode is TlsMode.NONE else context, smarthost.username, smarthost.password,
                authenticated=smarthost.verify_cert and mode is not TlsMode.NONE)
        return endpoint

    # -- MX ------------------------------------------------------------------------------

    async def _via_mx(self, route: Route, domain: str, request: MailRequest, content: bytes,
                      progress: _Progress, ignore_policies: bool) -> None:
        sts = None if ignore_policies else await self._sts_for(route, domain)
        # A session opened under another policy (or none) is never reused under this one.
        key: Hashable = ("mx", route.name, route.tls, self.config.mx_port, domain,
                         sts.key if sts else "", ignore_policies)
        lease = await self._pool.acquire(key, route.max_connections_per_destination)
        try:
            tried: set[str] = set()
            if lease.connection is not None:
                # A cached session to this domain skips DNS altogether.
                endpoint = lease.connection.endpoint
                tried.add(endpoint.address)
                outcome, reached = await self._on_lease(
                    lease, endpoint, request, content, progress,
                    self._policies.get(lease.connection))
                progress.absorb(outcome, endpoint.name if reached else "")
            if progress.pending:
                await self._walk_mx(route, domain, lease, request, content, progress, tried,
                                    None if ignore_policies else sts, ignore_policies)
        except DeliveryError as exc:  # from DNS: NXDOMAIN, null MX, SERVFAIL
            progress.settle(Reply(exc.code, exc.enhanced, exc.text))
        finally:
            self._pool.release(lease, route.messages_per_connection)

    async def _sts_for(self, route: Route, domain: str) -> ActiveSts | None:
        source = self.sts
        if source is None or route.mta_sts == "off" or domain.startswith("["):
            return None
        try:
            lookup = await source.lookup(domain)
        except Exception:
            # The source promises not to raise; if it does, deliver as without a policy.
            log.exception("MTA-STS lookup of %s failed", domain)
            return None
        sts = active_sts(route, lookup)
        if lookup.error:
            self._security.record_fetch_error(domain, sts, lookup.error)
        return sts

    async def _walk_mx(self, route: Route, domain: str, lease: Lease, request: MailRequest,
                       content: bytes, progress: _Progress, tried: set[str],
                       sts: ActiveSts | None, ignore_policies: bool) -> None:
        """Try MX hosts' addresses in order until one takes the message or limits are hit."""
        hosts = await self._resolver.mx_hosts(domain)
        mx_secure = self._resolver.is_secure(domain, "MX")
        sessions = 0
        fallback = Reply(550, "5.4.4", f"no MX host of {domain} has an address")
        for host in hosts:
            try:
                addresses = await self._resolver.addresses(host.name)
            except DeliveryError as exc:
                fallback = Reply(451, exc.enhanced if exc.code < 500 else "4.4.3", exc.text)
                continue
            if not addresses:
                continue
            policy = await self._host_policy(route, domain, host, mx_secure, sts,
                                             ignore_policies)
            if isinstance(policy, Reply):
                fallback = policy
                continue
            for address in addresses:
                if address in tried:
                    continue
                if len(tried) >= MX_ADDRESS_LIMIT or sessions >= MX_SESSION_LIMIT:
                    progress.give_up(fallback)
                    return
                tried.add(address)
                endpoint = policy.endpoint(host, address, self.config.mx_port)
                outcome, reached = await self._on_lease(
                    lease, endpoint, _only(request, progress.pending), content, progress, policy)
                sessions += reached
                progress.absorb(outcome, host.name if reached else "")
                if not progress.pending:
                    return
        progress.give_up(fallback)

    async def _host_policy(self, route: Route, domain: str, host: MxHost, mx_secure: bool,
                           sts: ActiveSts | None, ignore_policies: bool) -> HostPolicy | Reply:
        """The host's policy, or why it must not be used (a 4.7.5 deferral reason)."""
        if ignore_policies:
            return self._security.route_default(route, domain)
        try:
            policy = await self._security.for_host(route, domain, host, mx_secure, sts)
        except TempFail as exc:
            self._security.record_lookup_failure(host.name, exc.text)
            return Reply(exc.code, exc.enhanced, exc.text)
        if sts is not None and policy.type is PolicyType.STS and not sts.policy.matches(
                host.name):
            # RFC 8461 4.1: an MX host the policy does not list is a validation failure.
            if not policy.enforce:
                return replace(policy, mx_mismatch=True)  # testing: the session reports it
            self._security.record(policy, host.name, "", "validation-failure", "mx-mismatch")
            return refused(policy, f"MX host {host.name} does not match the policy's mx "
                           f"patterns ({', '.join(sts.policy.mx)})")
        return policy

    # -- one host, one transaction ---------------------------------------------------------

    async def _on_lease(self, lease: Lease, endpoint: Endpoint, request: MailRequest,
                        content: bytes, progress: _Progress,
                        policy: HostPolicy | None) -> tuple[HostOutcome, bool]:
        """Deliver over the lease's idle connection, or a new one to `endpoint`.

        Returns the outcome and whether the server answered at all. A host that
        failed loses its connection: the next message should not start there.
        """
        if lease.connection is not None:
            try:
                return await self._transaction(lease, lease.connection, request, content,
                                               progress, reset=True), True
            except StaleConnection:
                lease.discard()  # the server dropped it while idle: nothing was sent
            except SessionFailed as exc:
                lease.discard()
                return host_failed(request.recipients, exc.reply), True
        try:
            lease.connection = await SmtpConnection.open(endpoint, self._settings)
        except TlsFailed as exc:
            if policy is None:
                return host_failed(request.recipients, exc.reply), exc.answered
            self._security.record(policy, endpoint.name, endpoint.address, exc.result, exc.text)
            reply = refused(policy, exc.text) if policy.enforce else exc.reply
            return host_failed(request.recipients, reply), exc.answered
        except SessionFailed as exc:
            return host_failed(request.recipients, exc.reply), exc.answered
        if policy is not None:
            self._policies[lease.connection] = policy
            self._security.record_session(policy, lease.connection)
        try:
            return await self._transaction(lease, lease.connection, request, content,
                                           progress, reset=False), True
        except SessionFailed as exc:
            lease.discard()
            return host_failed(request.recipients, exc.reply), True

    async def _transaction(self, lease: Lease, conn: SmtpConnection, request: MailRequest,
                           content: bytes, progress: _Progress, *, reset: bool) -> HostOutcome:
        if request.requiretls:
            problem = _requiretls_problem(conn)
            if problem is not None:
                # Not this host's fault: the next host may qualify (RFC 8689 4.2.1).
                return HostOutcome(True, (), tuple(RecipientResult(r, problem)
                                                   for r in request.recipients))
        replies = await conn.send(request, content, reset=reset)
        outcome = self._settle(lease, classify(request.recipients, replies))
        if any(r.reply.is_success for r in outcome.done):
            progress.tls = self._describe(conn)
        return outcome

    def _describe(self, conn: SmtpConnection) -> str:
        """For events: which policy applied, and what TLS the session had."""
        policy = self._policies.get(conn)
        label = policy.label if policy is not None else "none"
        if not conn.tls:
            return f"policy={label} tls=none"
        return f"policy={label} tls={conn.tls_version} cipher={conn.cipher}"

    @staticmethod
    def _settle(lease: Lease, outcome: HostOutcome) -> HostOutcome:
        if not outcome.host_ok:
            lease.discard()
        return outcome


def _only(request: MailRequest, recipients: tuple[str, ...]) -> MailRequest:
    if recipients == request.recipients:
        return request
    return MailRequest(request.mail_from, recipients, request.smtputf8, request.eight_bit,
                       request.requiretls)


def _requiretls_problem(conn: SmtpConnection) -> Reply | None:
    """RFC 8689 4.2: a REQUIRETLS message goes only over TLS whose peer was validated (MTA-STS
    enforce, DANE; smarthosts: a verified certificate), to a server offering REQUIRETLS."""
    if not (conn.tls and conn.endpoint.authenticated):
        return Reply(550, "5.7.10", f"REQUIRETLS: {conn.endpoint} cannot be reached over "
                     "validated TLS (MTA-STS enforce or DANE)")
    if "REQUIRETLS" not in conn.extensions:
        return Reply(550, "5.7.30", f"REQUIRETLS: {conn.endpoint} does not offer REQUIRETLS")
    return None

