#!/usr/bin/env python3
"""CPU cost per message of the transport-security lookups on a cache hit (issue 17).

    python3 bench/tls_policy_lookups.py [--messages 50000] [--runs 5]

Starts what the DANE tests use (tests/fixtures): a zone signed with ldns-signzone on
NSD and a validating Unbound, with `dane.bench.` → MX mx.dane.bench. → A + TLSA 3 1 1.
The first message's lookups go over the wire and fill the caches; then, per message,
what Delivery does before it connects: the MTA-STS lookup (a source answering from
memory, standing in for mta_sts.py's cache; its own dict lookup is not in the figure)
and the route's `mta_sts` rule, the MX lookup and its AD bit, the host's A/AAAA and
their AD bits, the TLSA lookup and its AD bit, the usable records, and the host's
HostPolicy (DANE, as it wins). Reports process CPU time (time.process_time) per message,
the median of `--runs`. Needs root (NSD), ldnsutils, unbound, nsd.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.clock import SystemClock
from gateway.delivery.mx import MxResolver
from gateway.delivery.security import TlsContexts, TransportSecurity, active_sts
from gateway.delivery.settings import DeliveryConfig, DnsConfig
from gateway.delivery.tls_policy import PolicyType, StsLookup, StsMode, StsPolicy
from gateway.model import Route
from tests.fixtures.dns import TEST_ZONE, running_nsd
from tests.fixtures.dnssec import running_unbound, sign_zone

ZONE = """$ORIGIN bench.
$TTL 3600
@ IN SOA ns.bench. h.bench. 1 3600 600 86400 3600
@ IN NS ns.bench.
ns IN A 127.0.0.1
dane IN MX 10 mx.dane.bench.
mx.dane IN A 127.0.0.7
_25._tcp.mx.dane IN TLSA 3 1 1 {digest}
"""
DOMAIN = "dane.bench"


class MemorySts:
    def __init__(self, lookup: StsLookup) -> None:
        self.answer = lookup

    async def lookup(self, domain: str) -> StsLookup:
        return self.answer


async def one_message(sts: MemorySts, security: TransportSecurity, resolver: MxResolver,
                      route: Route) -> PolicyType:
    active = active_sts(route, await sts.lookup(DOMAIN))
    hosts = await resolver.mx_hosts(DOMAIN)
    secure = resolver.is_secure(DOMAIN, "MX")
    await resolver.addresses(hosts[0].name)
    policy = await security.for_host(route, DOMAIN, hosts[0], secure, active)
    return policy.type


async def measure(port: int, messages: int, runs: int) -> list[float]:
    dns = DnsConfig(("127.0.0.1",), port, 3.0, dnssec="validating-resolver")
    config = DeliveryConfig("bench.test", dns=dns, dane=True)
    resolver = MxResolver(dns, SystemClock())
    security = TransportSecurity(config, resolver, TlsContexts(config), None)
    text = "version: STSv1\nmode: enforce\nmx: mx.dane.bench\nmax_age: 86400\n"
    sts = MemorySts(StsLookup(StsPolicy(DOMAIN, "id", StsMode.ENFORCE, ("mx.dane.bench",),
                                        86400, time.time(), text)))
    route = Route("default", "mx")
    first = await one_message(sts, security, resolver, route)  # fills the caches
    assert first is PolicyType.TLSA, f"expected a DANE policy, got {first}"
    per_message = []
    for _ in range(runs):
        start = time.process_time()
        for _ in range(messages):
            await one_message(sts, security, resolver, route)
        per_message.append((time.process_time() - start) / messages * 1e6)
    return per_message


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gw-bench-tls-") as tmp:
        base = Path(tmp)
        signed, ds = sign_zone(base, "bench.", ZONE.format(digest="ab" * 32))
        with running_nsd(base / "nsd", {"test.": TEST_ZONE, "bench.": signed}) as nsd, \
                running_unbound(base / "unbound", nsd.port, anchors=[ds], insecure=[],
                                stubs=["bench."]) as unbound:
            results = asyncio.run(measure(unbound.port, args.messages, args.runs))
    load = os.getloadavg()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"policy lookups on a cache hit (STS + MX + A/AAAA + TLSA, DANE decided): "
          f"median {statistics.median(results):.1f} µs CPU per message "
          f"(runs: {', '.join(f'{r:.1f}' for r in results)}; {args.messages} messages each)")


if __name__ == "__main__":
    main()
