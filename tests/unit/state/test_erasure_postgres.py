"""Erasure on the shared PostgreSQL state database (a real server on 127.0.0.1:5432): the
address leaves events, message tags, suppressions, consent and the audit log — no
tuple of those tables, live or dead, holds it after the erase — its suppression
still holds under the hash, and every node must hash with the same key."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from gateway.errors import ConfigError
from gateway.model import ConsentRecord, Event, EventType, Reply, Suppression, SuppressionReason
from gateway.state.bounces import SqliteBounceStore
from gateway.state.retention import erase_address
from gateway.state.store import StateStore
from tests.fixtures.backends import pg_database, pg_dsn, sqlite_or_pg_state_config

__all__ = ["pg_database", "pg_dsn"]  # fixtures, imported for pytest

NOW = 1_800_000_000.0
ADDRESS = "guest@example.net"
TABLES = ("events", "message_tags", "suppressions", "consent", "audit", "soft_bounces")


def node(directory: Path, dsn: str) -> StateStore:
    """One node's state store: the shared database, and its own data directory (its
    erasure key; a bounces.db left from before it used PostgreSQL)."""
    directory.mkdir(exist_ok=True)
    return StateStore(directory / "state.db", sqlite_or_pg_state_config("postgresql", dsn))


@pytest.fixture
async def state(tmp_path: Path, pg_dsn: str) -> AsyncIterator[StateStore]:
    store = node(tmp_path / "a", pg_dsn)
    await store.open()
    yield store
    await store.close()


async def tuples_holding(dsn: str, text: bytes) -> dict[str, int]:
    """Heap tuples, live or dead, whose bytes contain `text`, per table (pageinspect);
    myguest@example.net, another person, does not count."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pageinspect")
        out = {}
        for table in TABLES:
            pages = await conn.fetchval(
                "SELECT pg_relation_size($1::regclass) / current_setting('block_size')::int",
                table)
            found = 0
            for page in range(int(pages)):
                rows = await conn.fetch("SELECT t_data FROM heap_page_items(get_raw_page($1, $2))"
                                        " WHERE t_data IS NOT NULL", table, page)
                found += sum(text in bytes(r[0]).lower().replace(b"myguest@example.net", b"")
                             for r in rows)
            out[table] = found
        return out
    finally:
        await conn.close()


async def seed(state: StateStore) -> None:
    await state.suppressions.add([Suppression(ADDRESS, SuppressionReason.COMPLAINT, "all", 1.0,
                                              "bounces", note=f"ARF about {ADDRESS}")],
                                 "cli", 1.0)
    await state.consent.record([ConsentRecord(ADDRESS, "marketing", True, 2.0, "explicit",
                                              f"form filled by {ADDRESS}")], ADDRESS, 2.0)
    state.events.record([
        Event(NOW, "Q1", EventType.ACCEPTED, "Guest@Example.NET",
              detail=f"from <{ADDRESS}> via relay [127.0.0.1] size=10"),
        Event(NOW, "Q1", EventType.BOUNCED, "guest+booking@example.net",
              reply=Reply(550, "5.1.1", "<guest+booking@example.net>: unknown")),
        Event(NOW, "Q2", EventType.DELIVERED, "myguest@example.net"),
    ])
    await state.events.flush()
    assert state.postgres is not None
    await state.postgres.run(lambda c: c.execute(
        "INSERT INTO message_tags (queue_id, name, value) VALUES ('Q1', 'x-guest', $1)",
        ADDRESS))


async def test_erasure_hashes_the_address_in_every_table_and_keeps_its_suppression(
        state: StateStore, pg_dsn: str) -> None:
    await seed(state)
    bounces = SqliteBounceStore(state.path.with_name("bounces.db"))
    await bounces.add_soft(ADDRESS, "Q0", NOW, 86400)
    await bounces.close()
    await state.bounces.add_soft(ADDRESS, "Q1", NOW, 86400)  # counted in the shared one
    await state.bounces.add_soft("myguest@example.net", "Q1", NOW, 86400)
    held = await tuples_holding(pg_dsn, ADDRESS.encode())
    assert (held["suppressions"], held["soft_bounces"]) == (1, 1)

    report = await erase_address(state, "GUEST@example.net", "cli:alice", now=NOW)
    token = report.token
    assert report.changed == {"events": 2, "message_tags": 1, "suppressions": 1,
                              "consent": 1, "audit": 2, "rate_counters": 0,
                              "soft_bounces": 2}
    assert report.checkpointed  # the changed tables were vacuumed
    found = await state.suppressions.lookup((ADDRESS, "@example.net"), NOW)
    assert [(s.target, s.reason) for s in found] == [(token, SuppressionReason.COMPLAINT)]
    assert found[0].note == f"ARF about {token}"
    assert await state.consent.current((ADDRESS,), "marketing") == {}
    plus = state.hasher.token("guest+booking@example.net")
    assert [(e.recipient, e.detail, e.reply and e.reply.text)
            for e in await state.events.by_queue_id("Q1")] == [
        (token, f"from <{token}> via relay [127.0.0.1] size=10", None),
        (plus, None, f"<{plus}>: unknown")]
    assert [e.recipient for e in await state.events.by_queue_id("Q2")] == [
        "myguest@example.net"]
    assert await state.events.tags(["Q1"]) == {"Q1": {"x-guest": token}}
    (last, *_) = await state.audit.entries()
    assert (last.actor, last.action) == ("cli:alice", "erase") and token in last.detail
    # No tuple, live or dead (VACUUM took the old versions), names the person any more.
    held = await tuples_holding(pg_dsn, ADDRESS.encode())
    assert held == dict.fromkeys(TABLES, 0)
    assert (await tuples_holding(pg_dsn, b"guest+booking")) == dict.fromkeys(TABLES, 0)
    assert b"guest@example.net" not in state.path.with_name("bounces.db").read_bytes()
    # The person may ask to hear from us again: removing the address lifts the entry.
    assert await state.suppressions.remove(ADDRESS, None, "cli:alice", NOW) == 1
    assert await state.suppressions.lookup((ADDRESS, "@example.net"), NOW) == []
    # Its soft-bounce count starts again; another person's was left alone.
    assert await state.bounces.add_soft(ADDRESS, "Q2", NOW, 86400) == (1, True)
    assert await state.bounces.add_soft("myguest@example.net", "Q2", NOW, 86400) == (2, True)


async def test_the_suppression_holds_on_another_node_with_the_same_key(
        state: StateStore, tmp_path: Path, pg_dsn: str) -> None:
    await seed(state)
    await erase_address(state, ADDRESS, "cli", now=NOW)
    other = node(tmp_path / "b", pg_dsn)
    (tmp_path / "b" / "erasure.key").write_bytes(state.hasher.path.read_bytes())
    (tmp_path / "b" / "erasure.key").chmod(0o600)
    await other.open()
    try:
        found = await other.suppressions.lookup((ADDRESS, "@example.net"), NOW)
        assert [s.reason for s in found] == [SuppressionReason.COMPLAINT]
    finally:
        await other.close()


async def test_a_node_with_another_erasure_key_is_refused(
        state: StateStore, tmp_path: Path, pg_dsn: str) -> None:
    await seed(state)
    await erase_address(state, ADDRESS, "cli", now=NOW)  # stores the key's fingerprint
    other = node(tmp_path / "b", pg_dsn)  # a key of its own, made at first use
    await other.open()
    bounces = SqliteBounceStore(other.path.with_name("bounces.db"))
    await bounces.add_soft("someone@example.org", "Q0", NOW, 86400)
    try:
        with pytest.raises(ConfigError, match="not the one the other nodes"):
            await erase_address(other, "someone@example.org", "cli", now=NOW)
        # Nothing was changed by the refused erase, not even the node's own bounces.db.
        assert [s.target for s in await state.suppressions.all()] == [
            state.hasher.token(ADDRESS)]
        assert (await bounces.add_soft("someone@example.org", "Q1", NOW, 86400))[0] == 2
    finally:
        await bounces.close()
        await other.close()
