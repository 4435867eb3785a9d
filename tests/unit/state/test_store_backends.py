"""One suite, both backends: the state store interfaces on SQLite and on PostgreSQL
(a real server on 127.0.0.1:5432, tests/fixtures/backends.py)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from gateway.clock import ManualClock
from gateway.errors import ConfigError
from gateway.intake.idempotency import MAX_KEY, IdempotencyGuard, settle_claims
from gateway.intake.settings import IdempotencyConfig
from gateway.model import (
    Client,
    ConsentRecord,
    Envelope,
    Event,
    EventType,
    Reply,
    Suppression,
    SuppressionReason,
)
from gateway.state.bounces import Ledger
from gateway.state.breakers import BreakerRow
from gateway.state.idempotency import Claim
from gateway.state.migrations import MIGRATIONS_TABLE, check_numbering, latest
from gateway.state.migrations import sqlite as sqlite_migrations
from gateway.state.migrations.postgresql import POSTGRESQL
from gateway.state.store import StateStore
from tests.fixtures.backends import (
    PG_ADMIN_DSN,
    pg_database,
    pg_dsn,
    sqlite_or_pg_state_config,
)

__all__ = ["pg_database", "pg_dsn"]  # fixtures, imported for pytest


BACKENDS = ["sqlite", "postgresql"]
DAY = 86400.0


@pytest.fixture(params=BACKENDS)
async def state(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StateStore]:
    dsn = request.getfixturevalue("pg_dsn") if request.param == "postgresql" else None
    store = StateStore(tmp_path / "state.db", sqlite_or_pg_state_config(request.param, dsn))
    await store.open()
    yield store
    await store.close()


@pytest.fixture
async def other_node(state: StateStore, request: pytest.FixtureRequest
                     ) -> AsyncIterator[StateStore]:
    """A second StateStore on the same backend: another node on PostgreSQL (a pool of
    its own), another process of the node on SQLite (connections of its own)."""
    dsn = request.getfixturevalue("pg_dsn") if state.backend == "postgresql" else None
    store = StateStore(state.path, sqlite_or_pg_state_config(state.backend, dsn))
    await store.open()
    yield store
    await store.close()


async def test_suppression_lookup_expiry_remove_and_audit(state: StateStore) -> None:
    sup = state.suppressions
    await sup.add([
        Suppression("guest@example.net", SuppressionReason.UNSUBSCRIBE, "marketing", 1.0, "t"),
        Suppression("@example.org", SuppressionReason.COMPLAINT, "all", 1.0, "t"),
        Suppression("soft@example.com", SuppressionReason.SOFT_BOUNCE, "all", 1.0, "t",
                    expires=100.0, note="4.2.2 mailbox full"),
    ], "cli:test", 1.0)
    found = await sup.lookup(("guest@example.net", "@example.net"), 50.0)
    assert found == [Suppression("guest@example.net", SuppressionReason.UNSUBSCRIBE,
                                 "marketing", 1.0, "t")]
    assert [s.target for s in await sup.lookup(("x@example.org", "@example.org"), 50.0)] == [
        "@example.org"]
    soft = await sup.lookup(("soft@example.com", "@example.com"), 50.0)
    assert [(s.expires, s.note) for s in soft] == [(100.0, "4.2.2 mailbox full")]
    assert await sup.lookup(("soft@example.com", "@example.com"), 100.0) == []
    assert await sup.purge_expired(100.0) == 1
    assert await sup.remove("@example.org", None, "cli:test", 2.0) == 1
    assert await sup.remove("nobody@example.org", "all", "cli:test", 2.0) == 0
    assert await sup.count() == 1
    assert [s.target for s in await sup.all()] == ["guest@example.net"]
    entries = await state.audit.entries()
    assert [(e.actor, e.action) for e in entries[:2]] == [
        ("cli:test", "suppress.remove"), ("cli:test", "suppress.remove")]
    assert sum(e.action == "suppress.add" for e in entries) == 3


async def test_suppression_add_replaces_the_same_target_and_scope(state: StateStore) -> None:
    sup = state.suppressions
    await sup.add([Suppression("a@example.net", SuppressionReason.SOFT_BOUNCE, "all", 1.0, "x",
                               expires=10.0)], "t", 1.0)
    await sup.add([Suppression("a@example.net", SuppressionReason.HARD_BOUNCE, "all", 2.0, "y")],
                  "t", 2.0)
    (entry,) = await sup.lookup(("a@example.net",), 50.0)
    assert (entry.reason, entry.expires, entry.added_by) == (
        SuppressionReason.HARD_BOUNCE, None, "y")


async def test_a_large_import_is_one_audit_entry(state: StateStore) -> None:
    rows = [Suppression(f"u{i}@example.net", SuppressionReason.MANUAL, "all", 1.0, "import")
            for i in range(500)]
    assert await state.suppressions.add(rows, "cli:ops", 5.0) == 500
    assert await state.suppressions.count() == 500
    (entry,) = await state.audit.entries()
    assert (entry.action, entry.detail) == ("suppress.import", '{"count": 500}')


async def test_consent_latest_record_wins(state: StateStore) -> None:
    c = state.consent
    await c.record([ConsentRecord("g@example.net", "marketing", True, 10.0, "explicit", "form"),
                    ConsentRecord("g@example.net", "marketing", False, 20.0, "explicit", "link"),
                    ConsentRecord("h@example.net", "marketing", True, 5.0, "imported")],
                   "cli:test", 30.0)
    current = await c.current(("g@example.net", "h@example.net", "x@example.net"), "marketing")
    assert not current["g@example.net"].granted
    assert current["h@example.net"] == ConsentRecord("h@example.net", "marketing", True, 5.0,
                                                     "imported", "")
    assert "x@example.net" not in current
    assert await c.current(("g@example.net",), "newsletter") == {}
    await c.record([ConsentRecord("g@example.net", "marketing", True, 40.0)], "cli:test", 40.0)
    assert (await c.current(("g@example.net",), "marketing"))["g@example.net"].granted
    assert [r.time for r in await c.history("g@example.net")] == [10.0, 20.0, 40.0]
    actions = [e.action for e in await state.audit.entries()]
    assert actions.count("consent.grant") == 3 and actions.count("consent.withdraw") == 1


async def test_consent_purposes_are_kept(state: StateStore) -> None:
    record = ConsentRecord("t@example.net", "marketing", True, 10.0, purposes=("tracking",))
    await state.consent.record([record], "cli:test", 10.0)
    assert (await state.consent.current(("t@example.net",), "marketing"))["t@example.net"] \
        == record
    assert (await state.consent.history("t@example.net"))[0].purposes == ("tracking",)


async def test_events_by_queue_id_and_message_id(state: StateStore) -> None:
    reply = Reply(550, "5.1.1", "no such user")
    state.events.record([
        Event(1.0, "Q1", EventType.ACCEPTED, "a@example.net", "<m1@x>", detail="from <s>"),
        Event(2.0, "Q1", EventType.BOUNCED, "a@example.net", "<m1@x>", "mx", "mx.example",
              reply),
        Event(3.0, "Q2", EventType.ACCEPTED, "b@example.net", "<m1@x>"),
        Event(4.0, "Q3", EventType.ACCEPTED, "c@example.net", "<other@x>"),
        Event(5.0, "", EventType.REJECTED, "d@example.net", reply=reply, detail="rule=x"),
    ])
    q1 = await state.events.by_queue_id("Q1")  # reads what this process recorded, at once
    assert [e.type for e in q1] == [EventType.ACCEPTED, EventType.BOUNCED]
    assert q1[1] == Event(2.0, "Q1", EventType.BOUNCED, "a@example.net", "<m1@x>", "mx",
                          "mx.example", reply)
    trace = await state.events.by_message_id("<m1@x>")
    assert [(e.queue_id, e.time) for e in trace] == [("Q1", 1.0), ("Q1", 2.0), ("Q2", 3.0)]
    assert await state.events.by_message_id("<none@x>") == []


async def test_an_event_with_a_nul_is_stored_and_does_not_block_the_next(
        state: StateStore) -> None:
    # A client's Message-ID may hold a NUL; PostgreSQL text cannot (stored as U+FFFD).
    state.events.record([Event(1.0, "Q1", EventType.ACCEPTED, "a@example.net", "<a\0b@x>",
                               detail="from <s> \0")])
    with contextlib.suppress(Exception):
        await state.events.flush()
    state.events.record([Event(2.0, "Q2", EventType.ACCEPTED, "b@example.net", "<ok@x>")])
    assert [e.queue_id for e in await state.events.by_message_id("<ok@x>")] == ["Q2"]
    (bad,) = await state.events.by_queue_id("Q1")
    assert (bad.message_id or "").replace("\0", "\ufffd") == "<a\ufffdb@x>"


async def test_every_migration_list_is_numbered_in_order() -> None:
    for migrations in (sqlite_migrations.EVENTS, sqlite_migrations.POLICY,
                       sqlite_migrations.BOUNCES, sqlite_migrations.IDEMPOTENCY,
                       sqlite_migrations.TLS, POSTGRESQL):
        check_numbering(migrations)


async def test_migrate_is_idempotent(state: StateStore) -> None:
    await state.migrate()  # SQLite's policy.db is made on first use: maybe now
    for _, found, applied in await state.migrate():
        assert found >= 1 and applied == []  # each file and PostgreSQL at its own version


async def test_a_newer_schema_stops_the_start(tmp_path: Path,
                                              request: pytest.FixtureRequest) -> None:
    # SQLite: a newer gateway migrated state.db.
    path = tmp_path / "state.db"
    store = StateStore(path)
    await store.open()
    await store.close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"INSERT INTO {MIGRATIONS_TABLE} VALUES (99, 'future', 0)")
    with pytest.raises(ConfigError, match=r"schema version 99 is newer than this gateway knows"):
        await StateStore(path).open()
    # PostgreSQL: the same, on the shared database.
    dsn = request.getfixturevalue("pg_dsn")
    conn2 = await asyncpg.connect(dsn)
    await conn2.execute(f"INSERT INTO {MIGRATIONS_TABLE} VALUES (99, 'future', 0)")
    try:
        pg = StateStore(tmp_path / "pg.db", sqlite_or_pg_state_config("postgresql", dsn))
        with pytest.raises(ConfigError, match="schema version 99 is newer"):
            await pg.open()
        await pg.close()
    finally:
        await conn2.execute(f"DELETE FROM {MIGRATIONS_TABLE} WHERE version = 99")
        await conn2.close()


async def test_postgresql_without_migrations_asks_for_db_migrate(tmp_path: Path) -> None:
    # A node never migrates the shared database by itself (rolling upgrades).
    name = f"gwtest_empty_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    await admin.execute(f"CREATE DATABASE {name}")
    try:
        dsn = PG_ADMIN_DSN.rsplit("/", 1)[0] + "/" + name
        pg = StateStore(tmp_path / "x.db", sqlite_or_pg_state_config("postgresql", dsn))
        needs = latest(POSTGRESQL)
        with pytest.raises(ConfigError, match=rf"schema version 0, this gateway needs {needs}: "
                                              r"run `smtp-gateway db migrate`"):
            await pg.open()
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


# -- idempotency keys ---------------------------------------------------------------------------


async def test_idempotency_first_claim_wins_and_later_ones_see_it(state: StateStore) -> None:
    keys = state.idempotency
    assert await keys.claim("ip:1", "k", "Q1", 100.0, DAY, 600) == Claim(True, "Q1", False)
    assert await keys.claim("ip:1", "k", "Q2", 101.0, DAY, 600) == Claim(False, "Q1", False)
    await keys.stored("ip:1", "k", "Q1")
    assert await keys.claim("ip:1", "k", "Q3", 102.0, DAY, 600) == Claim(False, "Q1", True)
    assert await keys.lookup("ip:1", "k", 103.0) == Claim(False, "Q1", True)
    # Another client's key space.
    assert (await keys.claim("ip:2", "k", "Q4", 102.0, DAY, 600)).won


async def test_idempotency_release_lets_the_retry_in_but_never_drops_a_stored_key(
        state: StateStore) -> None:
    keys = state.idempotency
    await keys.claim("u", "k", "Q1", 0.0, DAY, 600)
    await keys.release("u", "k", "Q1")
    assert await keys.lookup("u", "k", 1.0) is None
    assert await keys.claim("u", "k", "Q2", 1.0, DAY, 600) == Claim(True, "Q2", False)
    await keys.stored("u", "k", "Q2")
    await keys.release("u", "k", "Q2")  # too late: it is stored
    assert await keys.lookup("u", "k", 2.0) == Claim(False, "Q2", True)


async def test_idempotency_expired_and_abandoned_claims_are_taken_over(state: StateStore
                                                                       ) -> None:
    keys = state.idempotency
    await keys.claim("u", "done", "Q1", 0.0, 3600, 600)
    await keys.stored("u", "done", "Q1")
    assert (await keys.claim("u", "done", "Q2", 3599.0, 3600, 600)).won is False
    assert await keys.claim("u", "done", "Q3", 3600.5, 3600, 600) == Claim(True, "Q3", False)
    assert await keys.lookup("u", "done", 3601.0) == Claim(False, "Q3", False)  # not stored
    await keys.claim("u", "crashed", "Q4", 0.0, DAY, 600)  # never stored: its process died
    assert await keys.claim("u", "crashed", "Q5", 599.0, DAY, 600) == Claim(False, "Q4", False)
    assert await keys.claim("u", "crashed", "Q6", 601.0, DAY, 600) == Claim(True, "Q6", False)


async def test_claims_a_killed_process_left_are_settled_by_the_spool(state: StateStore
                                                                     ) -> None:
    """In the spool: it was stored, whatever became of the reply; the resend gets its id.
    Not in the spool: released on this node's own SQLite file (every claimer is dead at
    start), left to STALE_AFTER on the shared database (another node may be storing it)."""
    keys = state.idempotency
    await keys.claim("u", "in-spool", "Q1", 0.0, DAY, 600)
    await keys.claim("u", "lost", "Q2", 0.0, DAY, 600)
    await keys.claim("u", "done", "Q3", 0.0, DAY, 600)
    await keys.stored("u", "done", "Q3")
    local = state.postgres is None
    assert await settle_claims(keys, {"Q1", "Q3"}, 1.0, release_others=local) == (
        1, 1 if local else 0)
    assert await keys.claim("u", "in-spool", "Q9", 2.0, DAY, 600) == Claim(False, "Q1", True)
    retry = await keys.claim("u", "lost", "Q8", 2.0, DAY, 600)
    assert retry == (Claim(True, "Q8", False) if local else Claim(False, "Q2", False))
    # Settled once: a second settling finds only the retry's own claim (SQLite) or
    # the claim it left to STALE_AFTER (PostgreSQL), and stores neither.
    assert await settle_claims(keys, set(), 3.0, release_others=local) == (
        0, 1 if local else 0)


async def test_idempotency_purge_forgets_expired_keys(state: StateStore) -> None:
    keys = state.idempotency
    for i in range(5):
        await keys.claim("u", f"k{i}", f"Q{i}", float(i), 10.0, 600)
        await keys.stored("u", f"k{i}", f"Q{i}")
    await keys.flush()
    assert await keys.purge(12.5) == 3  # expired at 10, 11, 12
    assert await keys.lookup("u", "k0", 12.5) is None
    assert await keys.lookup("u", "k4", 12.5) == Claim(False, "Q4", True)


async def test_idempotency_keys_up_to_the_cap_in_any_script(state: StateStore) -> None:
    # The longest key the guard makes, in 2-, 3- and 4-octet characters and with a NUL:
    # PostgreSQL's text and its index take it.
    value = "\0" + "\u00e9\u4e2d\U0001f600" * 400
    content = f"Idempotency-Key: {value}\r\n\r\nbody\r\n".encode()
    envelope = Envelope("app@example.com", ("a@example.net",),
                        Client("submission", "192.0.2.1", auth_user="u" * 200), 0.0)
    guard = IdempotencyGuard(state.idempotency, state.events, IdempotencyConfig(),
                             ManualClock())
    found = guard.key_of(envelope, content, None)
    assert found is not None and len(found[1].encode()) > MAX_KEY - 4
    scope, key = found
    assert (await state.idempotency.claim(scope, key, "Q1", 0.0, DAY, 600)).won
    assert await state.idempotency.lookup(scope, key, 1.0) == Claim(False, "Q1", False)


async def test_idempotency_racing_claims_from_two_nodes_one_wins(
        state: StateStore, other_node: StateStore) -> None:
    # Twenty submissions of one message, half through each node, all at once.
    stores = [state.idempotency, other_node.idempotency]
    claims = await asyncio.gather(*(
        stores[i % 2].claim("user:app", "key:order-7", f"Q{i:02d}", 50.0, DAY, 600)
        for i in range(20)))
    winners = [c for c in claims if c.won]
    assert len(winners) == 1
    assert {c.queue_id for c in claims} == {winners[0].queue_id}
    await stores[1].stored("user:app", "key:order-7", winners[0].queue_id)
    assert await stores[0].lookup("user:app", "key:order-7", 51.0) == Claim(
        False, winners[0].queue_id, True)


# -- the bounce ledger and soft-bounce counts ------------------------------------------------


async def test_bounce_ledger_claim_mark_and_what_another_node_sees(
        state: StateStore, other_node: StateStore) -> None:
    a, b = state.bounces, other_node.bounces
    assert await a.claim("imap:box:7:1", "imap", 100.0, 300) is Ledger.CLAIMED
    assert await b.claim("imap:box:7:1", "imap", 101.0, 300) is Ledger.BUSY
    assert not await b.seen("imap:box:7:1")
    await a.mark("imap:box:7:1", "imap", "processed", 102.0)
    assert await b.claim("imap:box:7:1", "imap", 103.0, 300) is Ledger.DONE
    assert await b.seen("imap:box:7:1")
    await b.mark("imap:box:7:1", "imap", "forged", 104.0)  # a key keeps its first outcome
    assert await a.ingested() == [("imap:box:7:1", "imap", "processed")]


async def test_bounce_ledger_release_and_a_stale_claim_are_taken_over(
        state: StateStore, other_node: StateStore) -> None:
    a, b = state.bounces, other_node.bounces
    assert await a.claim("k1", "maildir", 100.0, 300) is Ledger.CLAIMED
    await a.release("k1")  # processing failed: the next poll, on any node, retries
    assert await b.claim("k1", "maildir", 101.0, 300) is Ledger.CLAIMED
    # b dies without marking; a takes over once the claim is older than stale_after.
    assert await a.claim("k1", "maildir", 400.0, 300) is Ledger.BUSY
    assert await a.claim("k1", "maildir", 401.5, 300) is Ledger.CLAIMED
    await a.mark("k1", "maildir", "unmatched", 402.0)
    await a.release("k1")  # a marked key is never released
    assert await b.claim("k1", "maildir", 10_000.0, 300) is Ledger.DONE
    assert await a.ingested() == [("k1", "maildir", "unmatched")]


async def test_bounce_ledger_racing_claims_from_two_nodes_one_wins(
        state: StateStore, other_node: StateStore) -> None:
    stores = [state.bounces, other_node.bounces]
    found = await asyncio.gather(*(stores[i % 2].claim("imap:box:9:3", "imap", 10.0, 300)
                                   for i in range(20)))
    assert found.count(Ledger.CLAIMED) == 1 and found.count(Ledger.BUSY) == 19


async def test_bounce_ledger_purge_and_keys_marked_without_a_claim(state: StateStore) -> None:
    store = state.bounces
    await store.mark("old", "imap", "processed", 100.0)
    await store.mark("new", "imap", "processed", 200.0)
    assert await store.purge(150.0) == 1
    assert await store.ingested() == [("new", "imap", "processed")]
    assert not await store.seen("old") and await store.seen("new")


async def test_soft_bounces_count_once_per_message_within_the_window(
        state: StateStore, other_node: StateStore) -> None:
    a, b = state.bounces, other_node.bounces
    assert await a.add_soft("g@example.net", "Q1", 100.0, 3600) == (1, True)
    assert await b.add_soft("g@example.net", "Q1", 101.0, 3600) == (1, False)  # same message
    assert await b.add_soft("g@example.net", "Q2", 102.0, 3600) == (2, True)
    assert await a.add_soft("h@example.net", "Q2", 102.0, 3600) == (1, True)
    assert await a.add_soft("g@example.net", "Q3", 3701.0, 3600) == (2, True)  # Q1 is out
    await b.clear_soft("g@example.net")
    assert await a.add_soft("g@example.net", "Q4", 3702.0, 3600) == (1, True)


# -- circuit breakers: PostgreSQL only (SQLite keeps them in memory: gateway.state.breakers)


async def test_breaker_transitions_and_one_probe_for_the_cluster(pg_dsn: str,
                                                                 tmp_path: Path) -> None:
    nodes = [StateStore(tmp_path / n / "state.db", sqlite_or_pg_state_config("postgresql", pg_dsn))
             for n in ("a", "b")]
    for node in nodes:
        await node.open()
    try:
        a, b = (node.breakers for node in nodes)
        assert a is not None and b is not None
        assert await a.all() == []
        assert await a.publish("r", "primary", "OPEN", 400.0, "node-a", 100.0) == 1
        (row,) = await b.all()
        assert row == BreakerRow("r", "primary", "OPEN", 400.0, 1, "node-a")
        # Not yet due: nobody gets the probe.
        early = await b.claim_probe("r", "primary", "node-b", 399.0, 699.0)
        assert not early.taken and early.row == row
        # Due: both nodes ask at once, on their own connections, four times each.
        claims = await asyncio.gather(*(
            store.claim_probe("r", "primary", name, 400.0, 700.0)
            for _ in range(4) for store, name in ((a, "node-a"), (b, "node-b"))))
        taken = [c for c in claims if c.taken]
        assert len(taken) == 1
        winner = taken[0].row
        assert (winner.state, winner.retry_at, winner.generation) == ("HALF_OPEN", 700.0, 2)
        assert all(c.row == winner for c in claims if not c.taken)
        # A CLOSED breaker has no probe to take; a smarthost nobody published yet does.
        assert await b.publish("r", "primary", "CLOSED", 0.0, winner.node, 401.0) == 3
        closed = await a.claim_probe("r", "primary", "node-a", 900.0, 1200.0)
        assert not closed.taken and closed.row.state == "CLOSED"
        fresh = await a.claim_probe("r", "backup", "node-a", 900.0, 1200.0)
        assert fresh.taken and fresh.row.generation == 1
    finally:
        for node in nodes:
            await node.close()
