"""One suite, both backends: the state store interfaces on SQLite and on PostgreSQL
(a real server on 127.0.0.1:5432, tests/fixtures/backends.py)."""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from gateway.errors import ConfigError
from gateway.model import ConsentRecord, Event, EventType, Reply, Suppression, SuppressionReason
from gateway.state import StateStore
from gateway.state.breakers import BreakerRow
from gateway.state.migrations import MIGRATIONS_TABLE, check_numbering, latest
from gateway.state.migrations import sqlite as sqlite_migrations
from gateway.state.migrations.postgresql import POSTGRESQL
from tests.fixtures.backends import (
    PG_ADMIN_DSN,
    pg_database,
    pg_dsn,
    sqlite_or_pg_state_config,
)

__all__ = ["pg_database", "pg_dsn"]  # fixtures, imported for pytest


BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
async def state(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StateStore]:
    dsn = request.getfixturevalue("pg_dsn") if request.param == "postgresql" else None
    store = StateStore(tmp_path / "state.db", sqlite_or_pg_state_config(request.param, dsn))
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


async def test_every_migration_list_is_numbered_in_order() -> None:
    for migrations in (sqlite_migrations.EVENTS, sqlite_migrations.POLICY, POSTGRESQL):
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
