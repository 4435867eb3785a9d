"""Events found by recipient on both backends (the console's Trace): every event of
the newest messages with an event for the address, compared lower-cased, whatever
became of the message (delivered, bounced), and nothing of other recipients' mail."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.model import Client, Envelope, Event, EventType, QueuedMessage, Reply
from gateway.state.store import StateStore
from tests.fixtures.backends import pg_database, pg_dsn, sqlite_or_pg_state_config

__all__ = ["pg_database", "pg_dsn"]

T0 = 1_700_000_000.0


@pytest.fixture(params=["sqlite", "postgresql"])
async def state(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StateStore]:
    dsn = request.getfixturevalue("pg_dsn") if request.param == "postgresql" else None
    store = StateStore(tmp_path / "state.db", sqlite_or_pg_state_config(request.param, dsn))
    await store.open()
    yield store
    await store.close()


def message(queue_id: str, rcpts: tuple[str, ...], at: float) -> QueuedMessage:
    env = Envelope("app@example.com", rcpts, Client("relay", "127.0.0.1"), at)
    return QueuedMessage(queue_id, env, 100)


async def test_by_recipient_finds_delivered_and_bounced_mail(state: StateStore) -> None:
    events = state.events
    events.record_accepted(message("QA", ("Guest@Example.net", "other@example.net"), T0), T0)
    events.record_accepted(message("QB", ("guest@example.net",), T0 + 1), T0 + 1)
    events.record_accepted(message("QC", ("other@example.net",), T0 + 2), T0 + 2)
    events.record([
        Event(T0 + 10, "QA", EventType.DELIVERED, "Guest@Example.net", route="mx",
              reply=Reply(250, "2.0.0", "ok")),
        Event(T0 + 11, "QA", EventType.DELIVERED, "other@example.net", route="mx"),
        Event(T0 + 12, "QB", EventType.BOUNCED, "guest@example.net", route="mx",
              reply=Reply(550, "5.1.1", "no such user")),
        Event(T0 + 13, "QC", EventType.DELIVERED, "other@example.net", route="mx")])

    found = await events.by_recipient("GUEST@example.NET")
    assert {e.queue_id for e in found} == {"QA", "QB"}
    # The whole life of each message found, in order (other recipients' events too).
    assert [(e.queue_id, e.type.value) for e in found if e.queue_id == "QA"] == [
        ("QA", "accepted"), ("QA", "accepted"), ("QA", "delivered"), ("QA", "delivered")]
    bounced = [e for e in found if e.type == EventType.BOUNCED]
    assert len(bounced) == 1 and bounced[0].reply == Reply(550, "5.1.1", "no such user")
    newest = await events.by_recipient(" guest@example.net ", limit=1)
    assert {e.queue_id for e in newest} == {"QB"}  # the newest message first
    assert await events.by_recipient("nobody@example.net") == []
