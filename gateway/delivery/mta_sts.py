"""MTA-STS (RFC 8461): which recipient domains ask for authenticated TLS, cached.

KumoMTA counterpart: its `mta-sts` crate; Postfix needs an outside policy server
(postfix-mta-sts-resolver) for this.

`MtaSts.lookup(domain)` answers delivery (an `StsSource`, gateway.delivery.tls_policy):

- Hot path: a dict lookup in memory and one clock read. An entry is trusted for
  `recheck` (default 1 h); after that, an entry whose policy has not expired is still
  served at once while its TXT record is checked again in the background.
- Otherwise (first use, or nothing valid cached): the policy stored by this or
  another node (gateway.state.tls; shared on PostgreSQL) is loaded, the
  `_mta-sts.<domain>` TXT record is asked, and the policy is fetched over HTTPS
  (sts_fetch.py) when there is none yet or its id changed; then parsed strictly
  (sts_text.py), stored and kept in memory.
- Anti-downgrade (section 5.1): a cached policy that has not expired is kept when the
  TXT record disappears or the fetch fails — an attacker who can block those must
  not be able to switch the policy off. A failed fetch is reported in
  `StsLookup.error` (sts-policy-fetch-error, sts-webpki-invalid, sts-policy-invalid)
  for TLS reports, with the cached policy, if any, still applied.
- `mode: none` forgets the policy (section 8.3, how a domain withdraws one).
- `run()` (a task the supervisor starts) refetches stored policies before they
  expire: after half their max_age, at most a day, whether or not the id changed, so
  a busy domain's policy never lapses.

Applying enforce/testing to MX hosts is delivery's job (deliver.py).

Security: reads DNS answers and an HTTPS response from the network; both are
bounded and parsed strictly (sts_text.py, sts_fetch.py). The HTTPS server must
present a certificate valid for mta-sts.<domain> from the trust store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path

import dns.asyncresolver
import dns.exception
import dns.rdatatype
import dns.resolver

from gateway.clock import Clock
from gateway.delivery.mx import make_resolver
from gateway.delivery.settings import DnsConfig, MtaStsConfig
from gateway.delivery.sts_fetch import FetchError, fetch_policy
from gateway.delivery.sts_text import PolicyError, parse_policy, sts_record_id
from gateway.delivery.tls_policy import StsLookup, StsMode, StsPolicy
from gateway.state.tls import StoredPolicy, TlsStore

__all__ = ["MtaSts", "refresh_after", "txt_records"]

log = logging.getLogger(__name__)

RETRY_AFTER_TROUBLE = 300.0  # a DNS or fetch failure is tried again this soon at most
_NONE = StsLookup(None)


class DnsTrouble(Exception):
    """A lookup that got no answer (timeout, SERVFAIL): neither yes nor no."""


@dataclass(slots=True)
class _Entry:
    answer: StsLookup
    fresh_until: float  # trusted without asking DNS again until then
    expires: float  # the policy's end (fetched_at + max_age); 0 without a policy


def refresh_after(max_age: int) -> float:
    """Seconds after a fetch when a policy is fetched again anyway (before it expires)."""
    return min(max_age / 2, 86400.0)


class MtaSts:
    def __init__(self, config: MtaStsConfig, dns_config: DnsConfig, ca_file: Path | None,
                 store: TlsStore | None, clock: Clock, *,
                 resolver: dns.asyncresolver.Resolver | None = None) -> None:
        self.config = config
        self._dns = dns_config
        self._ca_file = ca_file
        self._store = store
        self._clock = clock
        self._resolver = resolver
        self._context: ssl.SSLContext | None = None
        self._memory: dict[str, _Entry] = {}
        self._inflight: dict[str, asyncio.Task[StsLookup]] = {}
        self._background: set[asyncio.Task[StsLookup]] = set()
        self.fetches = 0  # HTTPS fetches tried (for tests and the bench)

    def __repr__(self) -> str:
        policies = sum(1 for e in self._memory.values() if e.answer.policy is not None)
        return (f"<MtaSts domains={len(self._memory)} policies={policies}"
                f" fetches={self.fetches} checking={len(self._inflight)}>")

    async def lookup(self, domain: str) -> StsLookup:
        entry = self._memory.get(domain)
        if entry is not None:
            now = self._clock.now()
            if now < entry.fresh_until:
                return entry.answer
            if now < entry.expires:  # stale, but the policy still holds: serve, recheck
                self._recheck_behind(domain)
                return entry.answer
        return await self._single(domain, force=False)

    async def refresh_due(self) -> int:
        """Fetch again every stored policy past refresh_after(); drop expired ones.
        Returns how many were refreshed."""
        now = self._clock.now()
        stored = await self._stored_policies()
        done = 0
        for p in stored:
            if p.expires <= now:
                await self._forget(p.domain)
            elif now >= p.fetched_at + refresh_after(int(p.expires - p.fetched_at)):
                await self._single(p.domain, force=True)
                done += 1
        return done

    async def run(self) -> None:
        """The background refresh, until cancelled."""
        interval = min(self.config.recheck, 3600.0)
        while True:
            await self._clock.sleep(interval)
            try:
                await self.refresh_due()
            except Exception:  # a store away now: the next round tries again
                log.exception("MTA-STS background refresh failed")

    async def settle(self) -> None:
        """Wait for the checks running behind lookups (tests; before a stop)."""
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    async def close(self) -> None:
        tasks = [*self._inflight.values(), *self._background]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # -- the slow path ------------------------------------------------------------------------
    def _recheck_behind(self, domain: str) -> None:
        if domain not in self._inflight:
            task = self._start(domain, force=False)
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _single(self, domain: str, *, force: bool) -> StsLookup:
        """One check per domain at a time: callers that come meanwhile share its answer."""
        running = self._inflight.get(domain) or self._start(domain, force=force)
        return await asyncio.shield(running)

    def _start(self, domain: str, *, force: bool) -> asyncio.Task[StsLookup]:
        task = asyncio.get_running_loop().create_task(self._check(domain, force))
        self._inflight[domain] = task  # at once: the next lookup in this loop turn sees it
        task.add_done_callback(lambda _: self._inflight.pop(domain, None))
        return task

    async def _check(self, domain: str, force: bool) -> StsLookup:
        name = domain.rstrip(".").lower()
        now = self._clock.now()
        if name.startswith("[") or "." not in name:
            return self._remember(domain, _NONE, now + self.config.recheck, 0.0)
        cached = await self._cached(domain, name, now)
        try:
            policy_id = sts_record_id(await txt_records(self._get_resolver(),
                                                        f"_mta-sts.{name}"))
        except DnsTrouble as exc:
            log.info("MTA-STS: TXT lookup for %s failed (%s); keeping what is cached",
                     name, exc)
            return self._keep(domain, cached, now, RETRY_AFTER_TROUBLE)
        if policy_id is None:
            # No record (any more): a cached policy holds until it expires (section 5.1).
            return self._keep(domain, cached, now, self.config.recheck)
        if cached is not None and cached.id == policy_id and not force:
            return self._keep(domain, cached, now, self.config.recheck)
        return await self._fetch(domain, name, policy_id, cached, now)

    async def _fetch(self, domain: str, name: str, policy_id: str, cached: StsPolicy | None,
                     now: float) -> StsLookup:
        self.fetches += 1
        try:
            text = await self._fetch_text(name)
            parsed = parse_policy(text)
        except FetchError as exc:
            return self._failed(domain, cached, now, exc.result_type, exc.detail)
        except PolicyError as exc:
            return self._failed(domain, cached, now, "sts-policy-invalid",
                                f"mta-sts.{name}: {exc}")
        if parsed.mode is StsMode.NONE:
            log.info("MTA-STS: %s publishes mode none: policy forgotten", name)
            await self._forget(name)
            return self._remember(domain, _NONE, now + self.config.recheck, 0.0)
        policy = StsPolicy(domain=name, id=policy_id, mode=parsed.mode, mx=parsed.mx,
                           max_age=parsed.max_age, fetched_at=now, text=text)
        await self._save(policy)
        log.info("MTA-STS: %s policy %s: mode %s, mx %s, max_age %d", name, policy_id,
                 policy.mode.value, " ".join(policy.mx), policy.max_age)
        return self._keep(domain, policy, now, self.config.recheck)

    async def _fetch_text(self, name: str) -> str:
        host = f"mta-sts.{name}"
        resolver = self._get_resolver()
        try:
            addresses = await addresses_of(resolver, host)
        except DnsTrouble as exc:
            raise FetchError("sts-policy-fetch-error", f"{host}: {exc}") from None
        return await fetch_policy(name, addresses, self.config.port, self._get_context(),
                                  self.config.fetch_timeout)

    def _failed(self, domain: str, cached: StsPolicy | None, now: float, result: str,
                detail: str) -> StsLookup:
        kept = f"; cached policy {cached.id} still applies" if cached is not None else ""
        log.warning("MTA-STS: policy fetch for %s failed: %s%s", domain, detail, kept)
        answer = StsLookup(cached, error=result, detail=detail)
        fresh = now + min(self.config.recheck, RETRY_AFTER_TROUBLE)
        return self._remember(domain, answer, fresh, _expiry(cached))

    def _keep(self, domain: str, policy: StsPolicy | None, now: float, trust: float
              ) -> StsLookup:
        answer = _NONE if policy is None else StsLookup(policy)
        return self._remember(domain, answer, now + trust, _expiry(policy))

    def _remember(self, domain: str, answer: StsLookup, fresh_until: float,
                  expires: float) -> StsLookup:
        if answer.policy is not None:
            fresh_until = min(fresh_until, expires)
        if domain not in self._memory and len(self._memory) >= self.config.cache_size:
            # Drop the oldest tenth (dicts keep insertion order); a dropped domain's
            # policy is still in the store.
            for old in list(self._memory)[: max(1, self.config.cache_size // 10)]:
                del self._memory[old]
        self._memory[domain] = _Entry(answer, fresh_until, expires)
        return answer

    async def _cached(self, domain: str, name: str, now: float) -> StsPolicy | None:
        """The unexpired policy in memory, else the stored one (another node's, or
        from before a restart)."""
        entry = self._memory.get(domain)
        if entry is not None and entry.answer.policy is not None and now < entry.expires:
            return entry.answer.policy
        if self._store is None:
            return None
        try:
            stored = await self._store.policy(name)
        except Exception as exc:  # the state store away: go on without it
            log.warning("MTA-STS: stored policy of %s not readable: %s", name, exc)
            return None
        if stored is None or stored.expires <= now:
            return None
        return _policy_of(stored)

    async def _stored_policies(self) -> list[StoredPolicy]:
        if self._store is not None:
            return await self._store.policies()
        return [_stored(e.answer.policy) for e in self._memory.values()
                if e.answer.policy is not None]

    async def _save(self, policy: StsPolicy) -> None:
        if self._store is None:
            return
        try:
            await self._store.save_policy(_stored(policy))
        except Exception as exc:  # kept in memory; stored at the next fetch
            log.warning("MTA-STS: policy of %s not stored: %s", policy.domain, exc)

    async def _forget(self, name: str) -> None:
        for key in [k for k, e in self._memory.items()
                    if e.answer.policy is not None and e.answer.policy.domain == name]:
            del self._memory[key]
        if self._store is not None:
            try:
                await self._store.forget_policy(name)
            except Exception as exc:
                log.warning("MTA-STS: policy of %s not removed from the store: %s", name, exc)

    def _get_resolver(self) -> dns.asyncresolver.Resolver:
        if self._resolver is None:
            self._resolver = make_resolver(self._dns)
        return self._resolver

    def _get_context(self) -> ssl.SSLContext:
        if self._context is None:
            cafile = str(self._ca_file) if self._ca_file is not None else None
            self._context = ssl.create_default_context(cafile=cafile)
        return self._context


def _expiry(policy: StsPolicy | None) -> float:
    return 0.0 if policy is None else policy.fetched_at + policy.max_age


def _stored(policy: StsPolicy) -> StoredPolicy:
    return StoredPolicy(policy.domain, policy.id, policy.text, policy.fetched_at,
                        _expiry(policy))


def _policy_of(stored: StoredPolicy) -> StsPolicy | None:
    try:
        parsed = parse_policy(stored.text)
    except PolicyError:  # stored by a gateway that parsed differently: fetch it again
        return None
    return StsPolicy(domain=stored.domain, id=stored.policy_id, mode=parsed.mode,
                     mx=parsed.mx, max_age=parsed.max_age, fetched_at=stored.fetched_at,
                     text=stored.text)




async def txt_records(resolver: dns.asyncresolver.Resolver, name: str) -> list[str]:
    """A name's TXT records, each with its strings joined; [] if it has none."""
    answer = await _resolve(resolver, name, dns.rdatatype.TXT)
    if answer is None:
        return []
    return [b"".join(rdata.strings).decode("utf-8", errors="replace") for rdata in answer]


async def addresses_of(resolver: dns.asyncresolver.Resolver, host: str) -> tuple[str, ...]:
    found: list[str] = []
    for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
        answer = await _resolve(resolver, host, rdtype)
        found.extend(rdata.to_text() for rdata in answer or ())
    return tuple(found)


async def _resolve(resolver: dns.asyncresolver.Resolver, name: str,
                   rdtype: dns.rdatatype.RdataType) -> dns.resolver.Answer | None:
    try:
        answer = await resolver.resolve(name, rdtype, search=False, raise_on_no_answer=False)
    except dns.resolver.NXDOMAIN:
        return None
    except dns.exception.Timeout:
        raise DnsTrouble(f"{dns.rdatatype.to_text(rdtype)} lookup of {name} timed out"
                         ) from None
    except dns.exception.DNSException as exc:
        raise DnsTrouble(f"{dns.rdatatype.to_text(rdtype)} lookup of {name}: {exc}") from None
    return answer if answer.rrset is not None else None
