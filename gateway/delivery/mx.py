"""MX lookups for direct delivery: preference order, implicit MX, null MX.

Postfix counterpart: `smtp/smtp_addr.c` (MX and address lookup, random
order among equal preferences); KumoMTA's `mailexchanger` crate. Uses
dnspython's async resolver, pointed at `delivery.dns.nameservers` when set.

- MX records are tried by preference; hosts of equal preference in random
  order (an injected random.Random, so tests are deterministic).
- No MX records: the domain itself is the one host (RFC 5321 5.1, implicit MX).
- A single "MX 0 ." is a null MX (RFC 7505): the domain takes no mail, so
  its recipients bounce with 556 5.1.10.
- NXDOMAIN bounces (550 5.1.2); SERVFAIL and timeouts defer (451 4.4.3).

Answers are cached for their TTL (from the injected Clock), so steady
traffic to one domain costs no DNS queries. TLSA answers (DANE, dane.py) go
through the same cache.

With `dns.dnssec: validating-resolver` queries ask for the AD bit (RFC 6840
5.7) and each cached answer remembers whether the resolver vouched for it
(`is_secure()`); a bogus answer is a SERVFAIL from such a resolver, so it
defers like any SERVFAIL.

Security: reads DNS answers from the network. Only MX exchange names and
A/AAAA addresses are used; names go through dnspython's parser, and an
address is only ever something to connect to.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
from dataclasses import dataclass
from itertools import groupby

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rdatatype
import dns.resolver

from gateway.clock import Clock
from gateway.delivery.settings import DnsConfig
from gateway.errors import PermFail, TempFail

__all__ = ["MxHost", "MxResolver", "make_resolver", "order_hosts"]

NEGATIVE_TTL_CAP = 300.0  # how long "no such records" is believed at most
_Key = tuple[str, dns.rdatatype.RdataType]  # (name, record type) of a cached answer
# (expires at, records as text, the validating resolver set AD)
_Cached = tuple[float, tuple[str, ...], bool]
_TYPES = {t: dns.rdatatype.from_text(t) for t in ("MX", "A", "AAAA", "TLSA")}


@dataclass(frozen=True)
class MxHost:
    name: str  # exchange name without the trailing dot, or "[192.0.2.1]" for an address literal
    preference: int


def order_hosts(hosts: list[MxHost], rng: random.Random) -> tuple[MxHost, ...]:
    """By preference, shuffling each group of equal preference (RFC 5321 5.1)."""
    ordered: list[MxHost] = []
    for _, group in groupby(sorted(hosts, key=lambda h: h.preference), key=lambda h: h.preference):
        same = list(group)
        rng.shuffle(same)
        ordered.extend(same)
    return tuple(ordered)


class MxResolver:
    def __init__(self, dns_config: DnsConfig, clock: Clock, *,
                 rng: random.Random | None = None, cache_size: int = 10_000) -> None:
        self.config = dns_config
        self._clock = clock
        self._rng = rng or random.Random()
        self._cache_size = cache_size
        self._cache: dict[_Key, _Cached] = {}
        self._resolver: dns.asyncresolver.Resolver | None = None

    async def mx_hosts(self, domain: str) -> tuple[MxHost, ...]:
        """The hosts to try for `domain`, in order; PermFail/TempFail as in the docstring."""
        if domain.startswith("[") and domain.endswith("]"):
            return (MxHost(domain, 0),)
        records = await self._lookup(domain, dns.rdatatype.MX)
        if not records:
            return (MxHost(domain, 0),)  # implicit MX; its A/AAAA are looked up when tried
        hosts = [_mx_host(text) for text in records]
        if len(hosts) == 1 and hosts[0].name == "":
            raise PermFail(556, "5.1.10", f"domain {domain} accepts no mail (null MX, RFC 7505)")
        return order_hosts([h for h in hosts if h.name], self._rng)

    async def addresses(self, host: str) -> tuple[str, ...]:
        """IPv4 then IPv6 addresses of an MX host; () if it has none."""
        if host.startswith("[") and host.endswith("]"):
            return (_literal(host),)
        cached = self._cached(host, dns.rdatatype.A), self._cached(host, dns.rdatatype.AAAA)
        if cached[0] is not None and cached[1] is not None:
            return cached[0] + cached[1]  # no tasks for gather() on the common path
        v4, v6 = await asyncio.gather(
            self._lookup(host, dns.rdatatype.A, missing_ok=True),
            self._lookup(host, dns.rdatatype.AAAA, missing_ok=True),
            return_exceptions=True,
        )
        # A broken AAAA answer (common enough) must not hide a good A answer.
        found = [a for a in (v4, v6) if isinstance(a, tuple)]
        if any(found):
            return sum(found, ())
        for failure in (v4, v6):
            if isinstance(failure, BaseException):
                raise failure
        return ()

    async def tlsa(self, host: str, port: int) -> tuple[str, ...]:
        """TLSA records of `_port._tcp.host` as text ("3 1 1 ab12…"); () if none."""
        return await self._lookup(f"_{port}._tcp.{host}", dns.rdatatype.TLSA, missing_ok=True)

    def is_secure(self, name: str, rdtype: str) -> bool:
        """Whether the cached answer for (name, type) came with the AD bit; call after the
        lookup (an answer no longer cached counts as insecure)."""
        cached = self._cache.get((name, _TYPES[rdtype]))
        return cached is not None and cached[2] and cached[0] > self._clock.now()

    def _cached(self, name: str, rdtype: dns.rdatatype.RdataType) -> tuple[str, ...] | None:
        cached = self._cache.get((name, rdtype))
        if cached is not None and cached[0] > self._clock.now():
            return cached[1]
        return None

    def clear(self) -> None:
        self._cache.clear()

    async def _lookup(
        self, name: str, rdtype: dns.rdatatype.RdataType, *, missing_ok: bool = False
    ) -> tuple[str, ...]:
        """Records of one type as text, cached; () when the name has none of that type."""
        key = (name, rdtype)
        now = self._clock.now()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        kind = dns.rdatatype.to_text(rdtype)
        answer = await self._query(name, rdtype, kind, missing_ok)
        if answer is None:
            return ()
        ttl, records, secure = answer
        self._remember(key, (now + ttl, records, secure))
        return records

    async def _query(
        self, name: str, rdtype: dns.rdatatype.RdataType, kind: str, missing_ok: bool
    ) -> _Cached | None:
        try:
            answer = await self._get_resolver().resolve(
                name, rdtype, search=False, raise_on_no_answer=False
            )
        except dns.resolver.NXDOMAIN as exc:
            if missing_ok:
                # Cached too: most MX hosts have no TLSA name, asked for on every message.
                responses = list(exc.responses().values())  # type: ignore[no-untyped-call]
                if not responses:
                    return None
                secure = self.config.dnssec == "validating-resolver" and bool(
                    responses[0].flags & dns.flags.AD)
                return _negative_ttl(responses[0]), (), secure
            raise PermFail(550, "5.1.2", f"domain {name} does not exist (NXDOMAIN)") from None
        except (dns.resolver.NoNameservers, dns.exception.Timeout) as exc:
            why = "timed out" if isinstance(exc, dns.exception.Timeout) else "server failure"
            raise TempFail(451, "4.4.3", f"DNS {kind} lookup of {name}: {why}") from None
        except (dns.name.NameTooLong, dns.name.LabelTooLong, dns.name.EmptyLabel) as exc:
            raise PermFail(550, "5.1.2", f"bad domain name {name!r}: {exc}") from None
        except dns.exception.DNSException as exc:
            raise TempFail(451, "4.4.3", f"DNS {kind} lookup of {name}: {exc}") from None
        secure = self.config.dnssec == "validating-resolver" and bool(
            answer.response.flags & dns.flags.AD)
        if answer.rrset is None:
            return _negative_ttl(answer.response), (), secure
        return (float(answer.rrset.ttl), tuple(rdata.to_text() for rdata in answer.rrset),
                secure)

    def _get_resolver(self) -> dns.asyncresolver.Resolver:
        # Built on first use, so a host without /etc/resolv.conf fails lookups
        # (a deferral), not the start of the gateway.
        if self._resolver is None:
            self._resolver = make_resolver(self.config)
        return self._resolver

    def _remember(self, key: _Key, entry: _Cached) -> None:
        if len(self._cache) >= self._cache_size:
            # Drop the oldest tenth (dicts keep insertion order): cheap, and
            # an evicted name costs one query.
            for old in list(self._cache)[: max(1, self._cache_size // 10)]:
                del self._cache[old]
        self._cache[key] = entry

    def __repr__(self) -> str:
        servers = ",".join(self.config.nameservers) or "system"
        return f"<MxResolver {servers}:{self.config.port} cached={len(self._cache)}>"


def make_resolver(config: DnsConfig) -> dns.asyncresolver.Resolver:
    """dnspython's async resolver on `delivery.dns`, for MX, TLSA, MTA-STS and TLS-RPT
    lookups alike."""
    if config.nameservers:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = list(config.nameservers)
        resolver.port = config.port
    else:
        resolver = dns.asyncresolver.Resolver()
    resolver.timeout = config.timeout
    resolver.lifetime = config.timeout
    if config.dnssec == "validating-resolver":
        # AD in the query asks the resolver to say whether it validated the answer.
        resolver.flags = dns.flags.RD | dns.flags.AD
    return resolver


def _mx_host(text: str) -> MxHost:
    """ "10 mx1.example.com." → MxHost; the null MX's "." gives the name ""."""
    preference, _, exchange = text.partition(" ")
    return MxHost(exchange.rstrip(".").lower(), int(preference))


def _negative_ttl(response: dns.message.Message) -> float:
    """RFC 2308: min(SOA TTL, SOA MINIMUM) from the authority section."""
    ttls: list[float] = []
    for rrset in response.authority:
        if rrset.rdtype == dns.rdatatype.SOA:
            ttls.extend(min(rrset.ttl, rdata.minimum) for rdata in rrset)
    return min([*ttls, NEGATIVE_TTL_CAP])


def _literal(host: str) -> str:
    text = host[1:-1]
    if text.lower().startswith("ipv6:"):
        text = text[5:]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise PermFail(550, "5.1.2", f"bad address literal {host}") from None

