"""CPU cost per message of the transport-security bookkeeping on the hot path (issue 17):
an MTA-STS lookup that the in-memory cache answers, and the TLS outcome that delivery
hands to the TLS reporter.

    python3 bench/sts_lookup_cost.py [N=200000] [DOMAINS=10000]

The cache is filled the way the gateway fills it (MtaSts._remember, after a fetch),
with DOMAINS domains, half with an enforce policy and half without one; lookups then
cycle over them. CPU time (time.process_time) over N awaited lookups in one event
loop, so the figure includes the coroutine call. The issue's bound: 50 µs per hit.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import dns.asyncresolver

from gateway.clock import ManualClock
from gateway.delivery.mta_sts import MtaSts
from gateway.delivery.settings import DnsConfig, MtaStsConfig, TlsReportsConfig
from gateway.delivery.tls_policy import PolicyType, StsLookup, StsMode, StsPolicy, TlsOutcome
from gateway.delivery.tlsrpt import TlsReporter
from gateway.state.store import StateStore


def fill(sts: MtaSts, domains: list[str], now: float) -> None:
    for i, domain in enumerate(domains):
        if i % 2:
            sts._remember(domain, StsLookup(None), now + 3600, 0.0)
            continue
        policy = StsPolicy(domain, "id1", StsMode.ENFORCE, (f"mx.{domain}",), 86400, now,
                           f"version: STSv1\nmode: enforce\nmx: mx.{domain}\nmax_age: 86400\n")
        sts._remember(domain, StsLookup(policy), now + 3600, now + 86400)


async def lookups(sts: MtaSts, domains: list[str], n: int) -> float:
    count = len(domains)
    start = time.process_time()
    for i in range(n):
        await sts.lookup(domains[i % count])
    return (time.process_time() - start) / n * 1e6


def records(reporter: TlsReporter, domains: list[str], n: int) -> float:
    outcomes = [TlsOutcome(PolicyType.STS, d, ("version: STSv1", "mode: enforce"),
                           f"mx.{d}", "192.0.2.1", "success") for d in domains[:1000]]
    start = time.process_time()
    for i in range(n):
        reporter.record(outcomes[i % len(outcomes)])
    return (time.process_time() - start) / n * 1e6


async def main(n: int, count: int) -> None:
    clock = ManualClock()
    sts = MtaSts(MtaStsConfig(cache_size=count * 2), DnsConfig(), None, None, clock)
    domains = [f"d{i}.example" for i in range(count)]
    fill(sts, domains, clock.now())
    await lookups(sts, domains, n // 10)  # warm up
    hit = await lookups(sts, domains, n)
    assert sts.fetches == 0  # every lookup was a cache hit
    state = StateStore(Path("/nonexistent/state.db"))  # never opened: record() does no I/O
    reporter = TlsReporter(TlsReportsConfig(enabled=True), state.tls, clock, hostname="gw",
                           node="bench", resolver=dns.asyncresolver.Resolver(configure=False))
    record = records(reporter, domains, n)
    print(f"MTA-STS lookup, cache hit: {hit:.2f} µs CPU ({count} domains, {n} lookups)")
    print(f"TLS outcome recorded:      {record:.2f} µs CPU ({n} outcomes)")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000,
                     int(sys.argv[2]) if len(sys.argv) > 2 else 10_000))
