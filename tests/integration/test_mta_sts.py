"""MTA-STS policies fetched for real: TXT records from NSD, policy files from an HTTPS
server on 127.0.0.1 whose certificates come from a test CA that the gateway trusts
through `delivery.ca_file`; cached in the state store (SQLite, and PostgreSQL shared
by two nodes)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gateway.clock import ManualClock
from gateway.delivery.mta_sts import MtaSts
from gateway.delivery.settings import DnsConfig, MtaStsConfig
from gateway.delivery.tls_policy import StsMode
from gateway.state.store import StateStore
from tests.fixtures.backends import pg_database, pg_dsn, sqlite_or_pg_state_config
from tests.fixtures.dns import NsdServer, running_nsd
from tests.fixtures.mta_sts import ExampleZone, PolicyServer, Served, policy_text
from tests.fixtures.tls import TestCerts as Certs
from tests.fixtures.tls import make_certs

__all__ = ["pg_database", "pg_dsn"]  # fixtures, imported for pytest

DOMAINS = ("enforce", "testing", "chunked", "none", "two", "badcert", "redirect", "html", "big",
           "invalid", "change", "fail", "gone", "shared", "refresh", "noaddr", "sqlite")
HOUR = 3600.0


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    # Every policy host but mta-sts.badcert.example: that one's certificate is wrong.
    names = tuple(f"mta-sts.{d}.example" for d in DOMAINS if d != "badcert")
    return make_certs(tmp_path_factory.mktemp("sts-certs"), (*names, "127.0.0.1"))


@pytest.fixture(scope="module")
def zone() -> ExampleZone:
    z = ExampleZone()
    for d in DOMAINS:
        if d != "noaddr":
            z.add(f"mta-sts.{d}.example", "A 127.0.0.1")
        z.add(f"{d}.example", f"MX 10 mx.{d}.example.")
        if d not in ("none", "two"):
            z.set_txt(f"_mta-sts.{d}.example", f"v=STSv1; id={d}1")
    z.set_txt("_mta-sts.two.example", "v=STSv1; id=a1", "v=STSv1; id=a2")
    z.set_txt("_mta-sts.none.example", "v=spf1 -all")  # not an MTA-STS record
    return z


@pytest.fixture(scope="module")
def nsd(tmp_path_factory: pytest.TempPathFactory, zone: ExampleZone) -> Iterator[NsdServer]:
    with running_nsd(tmp_path_factory.mktemp("sts-nsd"), zone.zones()) as server:
        yield server


@pytest.fixture(scope="module")
def web(certs: Certs) -> Iterator[PolicyServer]:
    with PolicyServer(certs) as server:
        for d in DOMAINS:
            server.serve(f"mta-sts.{d}.example", policy_text("enforce", [f"mx.{d}.example"]))
        server.serve("mta-sts.testing.example",
                     policy_text("testing", ["mx.testing.example", "*.backup.example"]))
        server.serve("mta-sts.chunked.example", Served(
            policy_text("enforce", ["mx.chunked.example"], eol="\n").encode(), chunked=True))
        server.serve("mta-sts.redirect.example", Served(
            b"", status=302, location="https://mta-sts.enforce.example/.well-known/mta-sts.txt"))
        server.serve("mta-sts.html.example", Served(
            policy_text("enforce", ["mx.html.example"]).encode(), content_type="text/html"))
        server.serve("mta-sts.big.example", Served(
            (policy_text("enforce", ["mx.big.example"]) + "x: y\r\n" * 12000).encode()))
        server.serve("mta-sts.invalid.example",
                     policy_text("enforce", ["mx.invalid.example"], max_age=31557601))
        yield server


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def make_sts(nsd: NsdServer, certs: Certs, web: PolicyServer, clock: ManualClock,
             state: StateStore | None) -> MtaSts:
    # A generous DNS timeout: a lookup that times out keeps the cached answer (as it
    # should), which on a loaded machine would look like a missed id change.
    dns_config = DnsConfig(nameservers=("127.0.0.1",), port=nsd.port, timeout=10.0)
    config = MtaStsConfig(port=web.port, fetch_timeout=5.0, recheck=HOUR)
    return MtaSts(config, dns_config, certs.ca_file, state.tls if state else None, clock)


@pytest.fixture
async def state(tmp_path: Path) -> AsyncIterator[StateStore]:
    store = StateStore(tmp_path / "state.db")
    await store.open()
    yield store
    await store.close()


async def test_a_policy_is_fetched_over_https_then_served_from_memory(
        nsd: NsdServer, certs: Certs, web: PolicyServer, clock: ManualClock,
        state: StateStore) -> None:
    sts = make_sts(nsd, certs, web, clock, state)
    found = await sts.lookup("enforce.example")
    assert found.error is None and found.policy is not None
    policy = found.policy
    assert (policy.id, policy.mode, policy.mx, policy.max_age) == (
        "enforce1", StsMode.ENFORCE, ("mx.enforce.example",), 86400)
    assert policy.matches("MX.enforce.example.") and not policy.matches("mx.other.example")
    assert policy.text == policy_text("enforce", ["mx.enforce.example"])
    requests = web.requests["mta-sts.enforce.example"]
    for _ in range(100):
        assert (await sts.lookup("enforce.example")).policy == policy
    assert web.requests["mta-sts.enforce.example"] == requests and sts.fetches == 1
    stored = await state.tls.policy("enforce.example")
    assert stored is not None and stored.policy_id == "enforce1"
    assert stored.expires == clock.now() + 86400
    # Testing mode and a wildcard pattern; LF lines and a chunked body.
    testing = (await sts.lookup("testing.example")).policy
    assert testing is not None and testing.mode is StsMode.TESTING
    assert testing.matches("a.backup.example") and not testing.matches("a.b.backup.example")
    chunked = (await sts.lookup("chunked.example")).policy
    assert chunked is not None and chunked.mx == ("mx.chunked.example",)


@pytest.mark.parametrize(("domain", "error", "detail"), [
    ("badcert", "sts-webpki-invalid", "certificate not valid"),
    ("redirect", "sts-policy-fetch-error", "HTTP status 302, not 200"),
    ("html", "sts-policy-fetch-error", "media type 'text/html', not text/plain"),
    ("big", "sts-policy-fetch-error", "larger than 65536 bytes"),
    ("invalid", "sts-policy-invalid", "max_age 31557601 is more than 31557600"),
    ("noaddr", "sts-policy-fetch-error", "mta-sts.noaddr.example has no address"),
])
async def test_a_policy_that_cannot_be_fetched_is_an_error_and_no_policy(
        nsd: NsdServer, certs: Certs, web: PolicyServer, clock: ManualClock,
        domain: str, error: str, detail: str) -> None:
    sts = make_sts(nsd, certs, web, clock, None)
    target = web.requests["mta-sts.enforce.example"]  # where the redirect points
    found = await sts.lookup(f"{domain}.example")
    assert found.policy is None and found.error == error
    assert detail in found.detail
    assert web.requests["mta-sts.enforce.example"] == target  # a redirect is not followed


async def test_no_record_or_two_records_mean_no_policy_and_no_fetch(
        nsd: NsdServer, certs: Certs, web: PolicyServer, clock: ManualClock) -> None:
    sts = make_sts(nsd, certs, web, clock, None)
    for domain in ("none.example", "two.example", "nothing.example", "[192.0.2.1]"):
        found = await sts.lookup(domain)
        assert found.policy is None and found.error is None, domain
    assert sts.fetches == 0
    assert web.requests["mta-sts.none.example"] == web.requests["mta-sts.two.example"] == 0


async def test_a_new_id_fetches_the_new_policy_after_the_recheck(
        nsd: NsdServer, certs: Certs, web: PolicyServer, clock: ManualClock,
        zone: ExampleZone, state: StateStore) -> None:
    sts = make_sts(nsd, certs, web, clock, state)
    first = (await sts.lookup("change.example")).policy
    assert first is not None and first.id == "change1"
    web.serve("mta-sts.change.example", policy_text("testing", ["mx2.change.example"]))
    zone.set_txt("_mta-sts.change.example", "v=STSv1; id=change2")
    zone.reload(nsd, "_mta-sts.change.example")
    # Within `recheck` the id is not asked again.
    clock.advance(HOUR - 1)
    assert (await sts.lookup("change.example")).policy == first
    # After it: the stale entry is served at once while the check runs behind it.
    clock.advance(2)
    assert (await sts.lookup("change.example")).policy == first
    await sts.settle()
    second = (await sts.lookup("change.example")).policy
    assert second is not None and (second.id, second.mode, second.mx) == (
        "change2", StsMode.TESTING, ("mx2.change.example",))
    assert sts.fetches == 2
    stored = await state.tls.policy("change.example")
    assert stored is not None and stored.policy_id == "change2"


async def test_a_failed_fetch_keeps_the_cached_policy_until_it_expires(
        nsd: NsdServer, certs: Certs, web: PolicyServer, clock: ManualClock,
        zone: ExampleZone, state: StateStore) -> None:
    sts = make_sts(nsd, certs, web, clock, state)
    cached = (await sts.lookup("fail.example")).policy
    assert cached is not None
    # The id changes, but the policy host is blocked (an attacker, or an outage).
    web.serve("mta-sts.fail.example", Served(b"down\n", status=503))
    zone.set_txt("_mta-sts.fail.example", "v=STSv1; id=fail2")
    zone.reload(nsd, "_mta-sts.fail.example")
    clock.advance(HOUR + 1)
    await sts.lookup("fail.example")
    await sts.settle()
    found = await sts.lookup("fail.example")
    assert found.policy == cached and found.error == "sts-policy-fetch-error"
    assert "HTTP status 503" in found.detail
    # The TXT record removed altogether: still the cached policy (RFC 8461 section 5.1).
    zone.set_txt("_mta-sts.fail.example")
    zone.reload(nsd, "_mta-sts.fail.example")
    clock.advance(HOUR + 1)
    await sts.lookup("fail.example")
    await sts.settle()
    assert (await sts.lookup("fail.example")).policy == cached
    # A restarted gateway (a new MtaSts, the same store) keeps it too, without a fetch.
    again = make_sts(nsd, certs, web, clock, state)
    assert (await again.lookup("fail.example")).policy == cached and again.fetches == 0
    # Past max_age it is gone.
    clock.advance(86400)
    assert (await again.lookup("fail.example")).policy is None


async def test_mode_none_forgets_the_policy(
        nsd: NsdServer, certs: Certs, web: PolicyServer, clock: ManualClock,
        zone: ExampleZone, state: StateStore) -> None:
    sts = make_sts(nsd, certs, web, clock, state)
    assert (await sts.lookup("gone.example")).policy is not None
    web.serve("mta-sts.gone.example", policy_text("none", [], max_age=300))
    zone.set_txt("_mta-sts.gone.example", "v=STSv1; id=gone2")
    zone.reload(nsd, "_mta-sts.gone.example")
    clock.advance(HOUR + 1)
    await sts.lookup("gone.example")
    await sts.settle()
    assert await sts.lookup("gone.example") == (await sts.lookup("none.example"))
    assert (await sts.lookup("gone.example")).policy is None
    assert await state.tls.policy("gone.example") is None


async def test_policies_are_refetched_before_they_expire(
        nsd: NsdServer, certs: Certs, web: PolicyServer, clock: ManualClock,
        state: StateStore) -> None:
    sts = make_sts(nsd, certs, web, clock, state)
    first = (await sts.lookup("refresh.example")).policy
    assert first is not None
    clock.advance(12 * HOUR - 10)  # refresh_after(86400) is half of it
    assert await sts.refresh_due() == 0
    clock.advance(20)
    assert await sts.refresh_due() == 1  # the same id: fetched anyway, to extend it
    stored = await state.tls.policy("refresh.example")
    assert stored is not None and stored.fetched_at == clock.now()
    assert stored.expires == clock.now() + 86400
    assert sts.fetches == 2


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_nodes_share_policies_through_the_state_store(
        nsd: NsdServer, certs: Certs, web: PolicyServer, clock: ManualClock,
        tmp_path: Path, request: pytest.FixtureRequest, backend: str) -> None:
    # PostgreSQL: two nodes; SQLite: two processes of one node (or a restart).
    dsn = request.getfixturevalue("pg_dsn") if backend == "postgresql" else None
    domain = "shared.example" if backend == "postgresql" else "sqlite.example"
    node_a = StateStore(tmp_path / "a" / "state.db", sqlite_or_pg_state_config(backend, dsn))
    node_b = StateStore(tmp_path / ("b" if dsn else "a") / "state.db",
                        sqlite_or_pg_state_config(backend, dsn))
    await node_a.open()
    await node_b.open()
    try:
        before = web.requests[f"mta-sts.{domain}"]
        a = make_sts(nsd, certs, web, clock, node_a)
        b = make_sts(nsd, certs, web, clock, node_b)
        policy = (await a.lookup(domain)).policy
        assert policy is not None
        assert (await b.lookup(domain)).policy == policy
        assert (a.fetches, b.fetches) == (1, 0)
        assert web.requests[f"mta-sts.{domain}"] == before + 1
    finally:
        await node_a.close()
        await node_b.close()


async def test_concurrent_lookups_of_a_new_domain_fetch_once(
        nsd: NsdServer, certs: Certs, web: PolicyServer, clock: ManualClock) -> None:
    sts = make_sts(nsd, certs, web, clock, None)
    before = web.requests["mta-sts.testing.example"]
    found = await asyncio.gather(*(sts.lookup("testing.example") for _ in range(20)))
    assert len({f.policy for f in found}) == 1 and found[0].policy is not None
    assert sts.fetches == 1 and web.requests["mta-sts.testing.example"] == before + 1
