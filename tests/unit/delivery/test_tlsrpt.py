"""TLS outcome counting (gateway.delivery.tlsrpt) and the TLS store on both backends: counts
from several nodes add up, a day's report is claimed by one node, a failed flush keeps
its counters, and the report's TXT record is read strictly."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import dns.asyncresolver
import pytest

from gateway.clock import ManualClock
from gateway.delivery.settings import TlsReportsConfig
from gateway.delivery.tls_policy import PolicyType, TlsOutcome
from gateway.delivery.tlsrpt import TlsReporter, day_of
from gateway.delivery.tlsrpt_report import rua_uris
from gateway.errors import StateUnavailable
from gateway.state.store import StateStore
from gateway.state.tls import OutcomeCount, StoredPolicy
from tests.fixtures.backends import pg_database, pg_dsn, sqlite_or_pg_state_config
from tests.fixtures.net import free_port

__all__ = ["pg_database", "pg_dsn"]  # fixtures, imported for pytest

DAY1 = 1_796_515_200.0  # 2026-12-06 00:00 UTC


@pytest.fixture(params=["sqlite", "postgresql"])
async def nodes(request: pytest.FixtureRequest, tmp_path: Path
                ) -> AsyncIterator[tuple[StateStore, StateStore]]:
    """Two stores on one backend: two nodes (PostgreSQL) or two processes (SQLite)."""
    dsn = request.getfixturevalue("pg_dsn") if request.param == "postgresql" else None
    config = sqlite_or_pg_state_config(request.param, dsn)
    a, b = StateStore(tmp_path / "state.db", config), StateStore(tmp_path / "state.db", config)
    await a.open()
    await b.open()
    yield a, b
    await a.close()
    await b.close()


def reporter(state: StateStore, clock: ManualClock, node: str) -> TlsReporter:
    return TlsReporter(TlsReportsConfig(enabled=True), state.tls, clock, hostname="gw.test",
                       node=node, resolver=dns.asyncresolver.Resolver(configure=False))


def outcome(result: str = "success", domain: str = "a.example", detail: str = "") -> TlsOutcome:
    return TlsOutcome(PolicyType.STS, domain, ("version: STSv1", "mode: testing"),
                      "mx.a.example", "192.0.2.1", result, detail)


async def test_counts_from_two_nodes_add_up_per_day(
        nodes: tuple[StateStore, StateStore]) -> None:
    clock = ManualClock(DAY1 + 3600)
    a, b = reporter(nodes[0], clock, "a"), reporter(nodes[1], clock, "b")
    for _ in range(5):
        a.record(outcome())
        b.record(outcome())
    a.record(outcome("starttls-not-supported", detail="first"))
    b.record(outcome("starttls-not-supported", detail="second"))
    clock.advance(86400)  # the next day counts in rows of its own
    a.record(outcome())
    assert await a.flush() == 3 and await b.flush() == 2
    assert await a.flush() == 0  # nothing left
    rows = {(r.result, r.count) for r in await nodes[0].tls.counts("2026-12-06")}
    assert rows == {("success", 10), ("starttls-not-supported", 2)}
    (failure,) = [r for r in await nodes[1].tls.counts("2026-12-06") if r.result != "success"]
    assert failure.detail in ("first", "second")
    assert failure.policy_strings == "version: STSv1\nmode: testing"
    assert await nodes[1].tls.days() == ["2026-12-06", "2026-12-07"]


async def test_one_node_claims_a_days_report(nodes: tuple[StateStore, StateStore]) -> None:
    a, b = nodes
    won = await asyncio.gather(*(s.tls.claim_report("2026-12-06", "a.example", n, 1.0)
                                 for s, n in ((a, "a"), (b, "b"), (a, "a2"), (b, "b2"))))
    assert sorted(won) == [False, False, False, True]
    assert await b.tls.reports("2026-12-06") == {"a.example": "sending"}
    await a.tls.release_report("2026-12-06", "a.example")  # the send failed: free again
    assert await b.tls.claim_report("2026-12-06", "a.example", "b", 2.0)
    await b.tls.mark_report("2026-12-06", "a.example", "sent https://x")
    assert await a.tls.reports("2026-12-06") == {"a.example": "sent https://x"}
    await a.tls.add_counts([OutcomeCount("2026-12-06", "a.example", "sts", "", "success",
                                         "mx", "ip", 1)])
    assert await a.tls.purge("2026-12-07") == 1
    assert await b.tls.reports("2026-12-06") == {} and await b.tls.days() == []


async def test_policies_are_stored_replaced_and_forgotten(
        nodes: tuple[StateStore, StateStore]) -> None:
    a, b = nodes
    await a.tls.save_policy(StoredPolicy("a.example", "id1", "text1", 10.0, 100.0))
    await a.tls.save_policy(StoredPolicy("a.example", "id2", "text2", 20.0, 200.0))
    assert await b.tls.policy("a.example") == StoredPolicy("a.example", "id2", "text2",
                                                           20.0, 200.0)
    assert [p.domain for p in await b.tls.policies()] == ["a.example"]
    await b.tls.forget_policy("a.example")
    assert await a.tls.policy("a.example") is None


class AwayStore:
    """A TLS store whose backend is away (a PostgreSQL restart)."""

    async def add_counts(self, rows: object) -> None:
        raise StateUnavailable("state database away")


async def test_a_failed_flush_keeps_the_counters_for_the_next(tmp_path: Path) -> None:
    state = StateStore(tmp_path / "state.db")
    clock = ManualClock(DAY1)
    r = reporter(state, clock, "a")
    try:
        real = r.store
        r.store = AwayStore()  # type: ignore[assignment]
        r.record(outcome())
        with pytest.raises(StateUnavailable):
            await r.flush()
        r.record(outcome())
        r.store = real
        assert await r.flush() == 1
        (row,) = await state.tls.counts(day_of(DAY1))
        assert row.count == 2
    finally:
        await state.close()


def test_rua_uris_from_the_txt_record() -> None:
    assert rua_uris(["v=TLSRPTv1; rua=mailto:tls@example.com,https://r.example/v1"]) == (
        "mailto:tls@example.com", "https://r.example/v1")
    assert rua_uris(["v=spf1 -all", "v=TLSRPTv1;rua=mailto:tls%2Br@example.com"]) == (
        "mailto:tls%2Br@example.com",)
    assert rua_uris(["v=TLSRPTv1; rua=mailto:a@x.example", "v=TLSRPTv1; rua=mailto:b@x"]) == ()
    assert rua_uris(["v=TLSRPTv1; rua=http://insecure.example/,ftp://x/"]) == ()
    assert rua_uris(["v=TLSRPTv1; rua=mailto:not-an-address"]) == ()
    assert rua_uris(["v=TLSRPTv2; rua=mailto:a@x.example"]) == ()
    assert rua_uris([]) == ()


async def test_a_report_that_cannot_go_is_retried_then_given_up(tmp_path: Path) -> None:
    state = StateStore(tmp_path / "state.db")
    clock = ManualClock(DAY1 + 3600)
    # DNS that does not answer: the _smtp._tls lookup fails, so the report cannot go.
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers, resolver.port = ["127.0.0.1"], free_port()
    resolver.timeout = resolver.lifetime = 0.3
    r = TlsReporter(TlsReportsConfig(enabled=True), state.tls, clock, hostname="gw.test",
                    node="a", resolver=resolver)
    try:
        r.record(outcome())
        clock.set(DAY1 + 86400 + 7200)
        assert await r.send_due() == []
        assert await state.tls.reports("2026-12-06") == {}  # released: tried next hour
        clock.set(DAY1 + 3 * 86400 + 7200)  # past send_after, 3 days on: given up
        assert await r.send_due() == []
        (outcome_text,) = (await state.tls.reports("2026-12-06")).values()
        assert outcome_text.startswith("failed: _smtp._tls.a.example")
    finally:
        await state.close()
