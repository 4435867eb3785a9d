"""Which TLS an MX host gets: DANE if its TLSA records are DNSSEC-secure, else the
domain's MTA-STS policy, else the route's `tls` setting; and the TLS outcome of each
session for TLS reports (tls_policy.OutcomeSink) and the tls_outcomes metric.

Postfix counterpart: `smtp/smtp_tls_policy.c` (smtp_tls_security_level per destination,
"dane" and "secure" levels). The contract with MTA-STS and TLS reporting is
tls_policy.py; certificate matching for DANE is dane.py.

Security: decides how much of the path to the recipient's server is trusted. An
enforced policy never falls back to plaintext or to an unchecked certificate.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from functools import partial

from gateway import metrics
from gateway.delivery import dane
from gateway.delivery.mx import MxHost, MxResolver
from gateway.delivery.settings import DeliveryConfig
from gateway.delivery.smtp_client import Endpoint, PeerCheck, SmtpConnection, TlsMode
from gateway.delivery.tls_policy import (
    OutcomeSink,
    PolicyType,
    StsLookup,
    StsMode,
    StsPolicy,
    TlsOutcome,
)
from gateway.errors import TempFail
from gateway.model import Reply, Route

__all__ = ["ActiveSts", "HostPolicy", "TlsContexts", "TransportSecurity", "active_sts"]

log = logging.getLogger(__name__)

_ROUTE_TLS = {
    "none": TlsMode.NONE,
    "opportunistic": TlsMode.OPPORTUNISTIC,
    "required": TlsMode.REQUIRED,
    "verify": TlsMode.REQUIRED,
}
_LABELS = {PolicyType.STS: "sts", PolicyType.TLSA: "dane", PolicyType.NONE: "none"}


class TlsContexts:
    """Built once: creating an SSLContext and loading a trust store costs milliseconds."""

    def __init__(self, config: DeliveryConfig) -> None:
        self.ca_file = config.ca_file
        cafile = str(config.ca_file) if config.ca_file else None
        self.verify = ssl.create_default_context(cafile=cafile)
        # Opportunistic TLS encrypts against passive listening only; checking the
        # certificate would just turn a self-signed MX into plaintext (RFC 7435).
        # DANE uses it too: dane.py checks the chain after the handshake.
        self.encrypt_only = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.encrypt_only.check_hostname = False
        self.encrypt_only.verify_mode = ssl.CERT_NONE


@dataclass(frozen=True)
class ActiveSts:
    """A domain's MTA-STS policy as this route applies it."""

    policy: StsPolicy
    enforce: bool

    @property
    def key(self) -> str:
        """Part of the connection pool's key: a session opened under another policy (or
        none) is never reused under this one."""
        return f"{self.policy.id}:{'enforce' if self.enforce else 'testing'}"

    @property
    def strings(self) -> tuple[str, ...]:
        return tuple(line for line in self.policy.text.splitlines() if line.strip())


def active_sts(route: Route, lookup: StsLookup | None) -> ActiveSts | None:
    """The route's `mta_sts` setting applied to what the source knows."""
    if route.mta_sts == "off" or lookup is None or lookup.policy is None:
        return None
    policy = lookup.policy
    if policy.mode is StsMode.NONE:
        return None
    enforce = policy.mode is StsMode.ENFORCE and route.mta_sts == "enforce"
    return ActiveSts(policy, enforce)


@dataclass(frozen=True)
class HostPolicy:
    """How TLS must go with one MX host, and whose policy that is (for reports)."""

    type: PolicyType
    domain: str  # the policy domain: recipient domain (STS), MX host (TLSA), recipient
    strings: tuple[str, ...]
    enforce: bool  # a TLS failure means this host is not used
    tls: TlsMode
    context: ssl.SSLContext | None
    fallback: ssl.SSLContext | None = None
    check_peer: PeerCheck | None = None
    authenticated: bool = False
    mx_mismatch: bool = False  # MTA-STS testing: the host is not in the policy's mx list

    @property
    def label(self) -> str:
        return _LABELS[self.type]

    def endpoint(self, host: MxHost, address: str, port: int) -> Endpoint:
        context = None if self.tls is TlsMode.NONE else self.context
        return Endpoint(host.name, address, port, self.tls, context, check_peer=self.check_peer,
                        authenticated=self.authenticated and context is not None,
                        fallback_context=self.fallback)


class TransportSecurity:
    """Decides each MX host's HostPolicy and records TLS outcomes."""

    def __init__(self, config: DeliveryConfig, resolver: MxResolver, contexts: TlsContexts,
                 outcomes: OutcomeSink | None) -> None:
        self.dane = config.dane
        self.port = config.mx_port
        self.resolver = resolver
        self.contexts = contexts
        self.outcomes = outcomes

    async def for_host(self, route: Route, domain: str, host: MxHost, mx_secure: bool,
                       sts: ActiveSts | None) -> HostPolicy:
        """TempFail (4.7.5) when the host's TLSA records cannot be had (bogus, SERVFAIL):
        RFC 7672 2.2 says such a host is not used at all."""
        if self.dane and mx_secure and not host.name.startswith("["):
            found = await self._dane(host)
            if found is not None:
                return found
        if sts is not None:
            return self._sts(route, sts)
        return self.route_default(route, domain)

    def route_default(self, route: Route, domain: str) -> HostPolicy:
        # Not `authenticated` even with verify: the MX name came from DNS no one
        # vouched for, so REQUIRETLS (RFC 8689 4.2.1) does not count it.
        verify = route.tls == "verify"
        return HostPolicy(PolicyType.NONE, domain, (), False, _ROUTE_TLS[route.tls],
                          self.contexts.verify if verify else self.contexts.encrypt_only)

    def _sts(self, route: Route, sts: ActiveSts) -> HostPolicy:
        if sts.enforce:
            return HostPolicy(PolicyType.STS, sts.policy.domain, sts.strings, True,
                              TlsMode.REQUIRED, self.contexts.verify, authenticated=True)
        # Testing: try the verifying handshake to learn the outcome, deliver as before.
        mode = _ROUTE_TLS[route.tls]
        fallback = None if route.tls in ("required", "verify") else self.contexts.encrypt_only
        return HostPolicy(PolicyType.STS, sts.policy.domain, sts.strings, False, mode,
                          self.contexts.verify, fallback=fallback)

    async def _dane(self, host: MxHost) -> HostPolicy | None:
        """DANE's policy for the host, None when its records are insecure or absent."""
        await self.resolver.addresses(host.name)
        if not (self.resolver.is_secure(host.name, "A")
                and self.resolver.is_secure(host.name, "AAAA")):
            return None  # RFC 7672 2.2.2: insecure addresses, no TLSA lookup
        name = f"_{self.port}._tcp.{host.name}"
        try:
            records = await self.resolver.tlsa(host.name, self.port)
        except TempFail as exc:
            raise TempFail(451, "4.7.5", f"DANE: TLSA lookup of {name} failed ({exc.text}); "
                           f"{host.name} is not used until it works") from None
        if not records or not self.resolver.is_secure(name, "TLSA"):
            return None
        found = dane.usable(records)
        # No usable record still means the server said it does TLS: mandatory, unchecked.
        check = partial(_check, found, host.name) if found else None
        return HostPolicy(PolicyType.TLSA, host.name, records, True, TlsMode.REQUIRED,
                          self.contexts.encrypt_only, check_peer=check,
                          authenticated=bool(found))

    # -- outcomes ----------------------------------------------------------------------------

    def record(self, policy: HostPolicy, host: str, address: str, result: str,
               detail: str = "", conn: SmtpConnection | None = None) -> None:
        if policy.mx_mismatch and result == "success":
            # The session went well, but under the policy it should not have happened.
            result, detail = "validation-failure", "mx-mismatch"
        metrics.record_tls_outcome(policy.label, result)
        if self.outcomes is None:
            return
        outcome = TlsOutcome(policy.type, policy.domain, policy.strings, host, address, result,
                             detail, conn.tls_version if conn else "", conn.cipher if conn else "")
        try:
            self.outcomes.record(outcome)
        except Exception:
            log.exception("the TLS outcome sink failed")  # reporting never stops delivery

    def record_fetch_error(self, domain: str, sts: ActiveSts | None, error: str) -> None:
        """The MTA-STS policy could not be fetched (a cached one may still be in use)."""
        policy = HostPolicy(PolicyType.STS, domain, sts.strings if sts else (), False,
                            TlsMode.NONE, None)
        self.record(policy, "", "", error)

    def record_lookup_failure(self, host: str, text: str) -> None:
        """The host's TLSA lookup failed: a bogus answer from the validating resolver."""
        policy = HostPolicy(PolicyType.TLSA, host, (), True, TlsMode.REQUIRED, None)
        self.record(policy, host, "", "dnssec-invalid", text)

    def record_session(self, policy: HostPolicy, conn: SmtpConnection) -> None:
        """A session that was opened: success, or why it is not (what it would have been)."""
        endpoint = conn.endpoint
        if conn.tls_problem is not None:
            self.record(policy, endpoint.name, endpoint.address, conn.tls_problem.result,
                        conn.tls_problem.text, conn)
        elif conn.tls:
            self.record(policy, endpoint.name, endpoint.address, "success", conn=conn)
        elif endpoint.tls is not TlsMode.NONE:
            self.record(policy, endpoint.name, endpoint.address, "starttls-not-supported")


def _check(records: tuple[dane.Tlsa, ...], host: str, chain: list[bytes]
           ) -> tuple[str, str] | None:
    return dane.check_chain(records, chain, host)


def refused(policy: HostPolicy, text: str) -> Reply:
    """The deferral for a host an enforced policy ruled out (4.7.5, naming the policy)."""
    name = {PolicyType.STS: "MTA-STS", PolicyType.TLSA: "DANE"}.get(policy.type, "TLS policy")
    return Reply(451, "4.7.5", f"{name} ({policy.domain}): {text}")
