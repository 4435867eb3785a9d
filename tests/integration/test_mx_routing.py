"""Direct (MX) delivery against a real NSD and real SMTP servers on 127.0.0.x.

The zone (tests/fixtures/dns.py) points MX hosts at 127.0.0.2, .3, ...; every
"host" listens on the same port, which the config gives as mx_port.
"""

from __future__ import annotations

import asyncio
import random
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gateway.clock import ManualClock
from gateway.delivery.deliver import Delivery, MxResolver
from gateway.delivery.settings import DeliveryConfig, DnsConfig
from gateway.errors import TempFail
from gateway.model import Attempt, Client, DeliveryJob, Envelope, QueuedMessage, Route
from tests.fixtures import tls
from tests.fixtures.dns import TEST_ZONE, NsdServer, nsd_server, running_nsd
from tests.fixtures.sink import Sink
from tests.fixtures.tls import make_certs

__all__ = ["nsd_server"]  # the fixture, imported for pytest

CONTENT = b"From: a@src.test\r\nTo: u@dest\r\nSubject: mx\r\n\r\nhello\r\n"


def common_port(hosts: tuple[str, ...]) -> int:
    """A port free on every one of `hosts` at once."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind((hosts[0], 0))
            port = int(probe.getsockname()[1])
        sockets: list[socket.socket] = []
        try:
            for host in hosts:
                s = socket.socket()
                sockets.append(s)
                s.bind((host, port))
            return port
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise AssertionError("no common free port")


MX_ADDRESSES = tuple(f"127.0.0.{i}" for i in range(2, 10))


@pytest.fixture(scope="module")
def mx_port() -> int:
    return common_port(MX_ADDRESSES)


@pytest.fixture
def sinks(mx_port: int) -> Iterator[dict[str, Sink]]:
    """Started lazily: `sinks["127.0.0.2"]` is an MX host listening on mx_port."""
    started: dict[str, Sink] = {}

    class Lazy(dict[str, Sink]):
        def __missing__(self, address: str) -> Sink:
            sink = started[address] = Sink(address, mx_port).start()
            self[address] = sink
            return sink

    yield Lazy()
    for sink in started.values():
        sink.stop()


def config(nsd: NsdServer, mx_port: int, **changes: object) -> DeliveryConfig:
    base: dict[str, object] = dict(
        helo_name="gw.test", mx_port=mx_port,
        dns=DnsConfig(("127.0.0.1",), nsd.port, 2.0),
        connect_timeout=1.0, command_timeout=2.0, data_timeout=2.0,
    )
    base.update(changes)
    return DeliveryConfig(**base)  # type: ignore[arg-type]


@pytest.fixture
async def delivery(nsd_server: NsdServer, mx_port: int) -> AsyncIterator[Delivery]:
    clock = ManualClock()
    cfg = config(nsd_server, mx_port)
    d = Delivery(cfg, clock, resolver=MxResolver(cfg.dns, clock, rng=random.Random(1)))
    yield d
    await d.close()


def job(*recipients: str, route: Route | None = None, sender: str = "a@src.test") -> DeliveryJob:
    env = Envelope(sender, recipients, Client("relay", "127.0.0.1"), 0.0)
    domain = recipients[0].rpartition("@")[2]
    return DeliveryJob(QueuedMessage("Q1", env, len(CONTENT)), recipients,
                       route or Route("direct", "mx"), domain, 1)


def codes(attempt: Attempt) -> list[tuple[int, str]]:
    return [(r.reply.code, r.reply.enhanced) for r in attempt.results]


async def test_lowest_preference_mx_gets_the_message(
        delivery: Delivery, sinks: dict[str, Sink]) -> None:
    mx1, mx2 = sinks["127.0.0.2"], sinks["127.0.0.3"]
    attempt = await delivery.deliver(job("u@pref.test", "v@pref.test"), CONTENT)
    assert codes(attempt) == [(250, "2.0.0"), (250, "2.0.0")]
    assert attempt.host == "mx1.test"
    assert mx1.recipients() == ["u@pref.test", "v@pref.test"]
    assert mx1.messages[0].data == CONTENT
    assert mx2.count() == 0


async def test_falls_back_to_the_second_mx_when_the_first_refuses_connections(
        delivery: Delivery, sinks: dict[str, Sink]) -> None:
    mx2 = sinks["127.0.0.3"]  # nothing listens on 127.0.0.9, the preference-10 host
    attempt = await delivery.deliver(job("u@fallback.test"), CONTENT)
    assert codes(attempt) == [(250, "2.0.0")]
    assert attempt.host == "mx2.test"
    assert mx2.recipients() == ["u@fallback.test"]


async def test_falls_back_when_the_first_mx_answers_421(
        delivery: Delivery, sinks: dict[str, Sink], mx_port: int) -> None:
    async def busy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"421 4.3.2 mx1 is overloaded\r\n")
        await writer.drain()
        writer.close()

    mx2 = sinks["127.0.0.3"]
    server = await asyncio.start_server(busy, "127.0.0.2", mx_port)
    try:
        attempt = await delivery.deliver(job("u@pref.test"), CONTENT)
    finally:
        server.close()
        await server.wait_closed()
    assert codes(attempt) == [(250, "2.0.0")]
    assert attempt.host == "mx2.test"
    assert mx2.count() == 1


async def test_all_mx_hosts_down_defers(delivery: Delivery) -> None:
    attempt = await delivery.deliver(job("u@pref.test"), CONTENT)
    assert codes(attempt) == [(451, "4.4.1")]
    assert "Connection refused" in attempt.results[0].reply.text
    assert attempt.host == ""


async def test_implicit_mx_uses_the_domains_own_address(
        delivery: Delivery, sinks: dict[str, Sink]) -> None:
    host = sinks["127.0.0.6"]
    attempt = await delivery.deliver(job("u@implicit.test"), CONTENT)
    assert codes(attempt) == [(250, "2.0.0")]
    assert attempt.host == "implicit.test"
    assert host.recipients() == ["u@implicit.test"]


async def test_null_mx_bounces(delivery: Delivery) -> None:
    attempt = await delivery.deliver(job("u@nullmx.test", "v@nullmx.test"), CONTENT)
    assert codes(attempt) == [(556, "5.1.10"), (556, "5.1.10")]
    assert attempt.results[0].state == "bounced"
    assert attempt.host == ""


async def test_nxdomain_bounces(delivery: Delivery) -> None:
    attempt = await delivery.deliver(job("u@no-such-domain.test"), CONTENT)
    assert codes(attempt) == [(550, "5.1.2")]
    assert "NXDOMAIN" in attempt.results[0].reply.text


async def test_mx_host_without_address_bounces(delivery: Delivery) -> None:
    attempt = await delivery.deliver(job("u@noaddr.test"), CONTENT)
    assert codes(attempt) == [(550, "5.4.4")]


async def test_servfail_defers(delivery: Delivery) -> None:
    attempt = await delivery.deliver(job("u@x.broken"), CONTENT)
    assert codes(attempt) == [(451, "4.4.3")]
    assert attempt.results[0].state == "deferred"


async def test_dns_timeout_defers(mx_port: int) -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # takes queries, never answers
    silent.bind(("127.0.0.1", 0))
    try:
        dns = DnsConfig(("127.0.0.1",), silent.getsockname()[1], 0.3)
        d = Delivery(DeliveryConfig("gw.test", mx_port=mx_port, dns=dns), ManualClock())
        attempt = await d.deliver(job("u@pref.test"), CONTENT)
        await d.close()
    finally:
        silent.close()
    assert codes(attempt) == [(451, "4.4.3")]
    assert "timed out" in attempt.results[0].reply.text


async def test_equal_preferences_are_tried_in_random_order(nsd_server: NsdServer) -> None:
    dns = DnsConfig(("127.0.0.1",), nsd_server.port, 2.0)
    firsts = []
    resolver = MxResolver(dns, ManualClock(), rng=random.Random(3))
    for _ in range(20):
        firsts.append((await resolver.mx_hosts("equal.test"))[0].name)
    assert set(firsts) == {"eq-a.test", "eq-b.test"}
    # The same seed gives the same order: tests can rely on it.
    again = MxResolver(dns, ManualClock(), rng=random.Random(3))
    assert [(await again.mx_hosts("equal.test"))[0].name for _ in range(20)] == firsts


async def test_answers_are_cached_for_their_ttl(tmp_path: Path) -> None:
    clock = ManualClock()
    with running_nsd(tmp_path, {"test.": TEST_ZONE}) as nsd:
        resolver = MxResolver(DnsConfig(("127.0.0.1",), nsd.port, 0.5), clock)
        hosts = await resolver.mx_hosts("pref.test")
        assert await resolver.addresses("mx1.test") == ("127.0.0.2",)
    # The server is gone: answers within their TTL come from the cache. Records
    # have TTL 300; "no AAAA" has the SOA minimum, 60 (RFC 2308).
    clock.advance(59)
    assert await resolver.mx_hosts("pref.test") == hosts
    assert await resolver.addresses("mx1.test") == ("127.0.0.2",)
    clock.advance(2)
    # The AAAA query now times out, but the cached A answer still serves.
    assert await resolver.addresses("mx1.test") == ("127.0.0.2",)
    clock.advance(240)
    with pytest.raises(TempFail):
        await resolver.mx_hosts("pref.test")
    with pytest.raises(TempFail):
        await resolver.addresses("mx1.test")


async def test_connection_is_reused_without_a_new_lookup(
        delivery: Delivery, sinks: dict[str, Sink]) -> None:
    mx1 = sinks["127.0.0.2"]
    for i in range(4):
        attempt = await delivery.deliver(job(f"u{i}@pref.test"), CONTENT)
        assert codes(attempt) == [(250, "2.0.0")]
        assert attempt.host == "mx1.test"
    assert mx1.count() == 4
    assert mx1.connections == 1


async def test_opportunistic_starttls_without_certificate_check(
        delivery: Delivery, mx_port: int, tmp_path: Path) -> None:
    certs = make_certs(tmp_path, ("someone-else.test",))  # a name that does not match
    sink = Sink("127.0.0.2", mx_port, tls_context=certs.server_context()).start()
    try:
        attempt = await delivery.deliver(job("u@pref.test"), CONTENT)
    finally:
        sink.stop()
    assert codes(attempt) == [(250, "2.0.0")]
    assert sink.messages[0].tls


async def test_opportunistic_tls_falls_back_to_plaintext_when_the_handshake_fails(
        delivery: Delivery, mx_port: int, tmp_path: Path) -> None:
    certs = make_certs(tmp_path)
    context = certs.server_context()
    # Demanding a client certificate under TLS 1.2 fails inside the handshake.
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(certs.ca_file)
    sink = Sink("127.0.0.2", mx_port, tls_context=context).start()
    try:
        attempt = await delivery.deliver(job("u@pref.test"), CONTENT)
    finally:
        await delivery.close()
        sink.stop()
    assert codes(attempt) == [(250, "2.0.0")]
    assert not sink.messages[0].tls
    assert sink.connections == 2  # the failed handshake, then plaintext


async def test_tls_required_but_not_offered_defers(
        nsd_server: NsdServer, mx_port: int, sinks: dict[str, Sink]) -> None:
    sinks["127.0.0.7"]  # plaintext only
    d = Delivery(config(nsd_server, mx_port), ManualClock())
    attempt = await d.deliver(job("u@verify.test", route=Route("strict", "mx", tls="required")),
                              CONTENT)
    await d.close()
    assert codes(attempt) == [(451, "4.7.5")]
    assert "TLS is required" in attempt.results[0].reply.text
    assert sinks["127.0.0.7"].count() == 0


@pytest.fixture
def mx_certs(tmp_path: Path) -> tls.TestCerts:
    return make_certs(tmp_path / "good", ("mx-tls.test",))


async def test_tls_verify_checks_the_certificate_against_the_mx_name(
        nsd_server: NsdServer, mx_port: int, mx_certs: tls.TestCerts) -> None:
    sink = Sink("127.0.0.7", mx_port, tls_context=mx_certs.server_context()).start()
    d = Delivery(config(nsd_server, mx_port, ca_file=mx_certs.ca_file), ManualClock())
    try:
        attempt = await d.deliver(job("u@verify.test", route=Route("v", "mx", tls="verify")),
                                  CONTENT)
    finally:
        await d.close()
        sink.stop()
    assert codes(attempt) == [(250, "2.0.0")]
    assert sink.messages[0].tls


async def test_tls_verify_defers_on_a_certificate_for_another_name(
        nsd_server: NsdServer, mx_port: int, mx_certs: tls.TestCerts, tmp_path: Path) -> None:
    wrong = make_certs(tmp_path / "wrong", ("not-the-mx.test",))
    sink = Sink("127.0.0.7", mx_port, tls_context=wrong.server_context()).start()
    d = Delivery(config(nsd_server, mx_port, ca_file=wrong.ca_file), ManualClock())
    try:
        attempt = await d.deliver(job("u@verify.test", route=Route("v", "mx", tls="verify")),
                                  CONTENT)
    finally:
        await d.close()
        sink.stop()
    assert codes(attempt) == [(451, "4.7.5")]
    assert sink.count() == 0
