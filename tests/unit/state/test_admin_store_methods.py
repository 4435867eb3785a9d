"""The store methods the admin API added, on both backends (SQLite and a real
PostgreSQL on 127.0.0.1:5432): paging suppressions and consent, audit rows for
queue actions, message tags, traces by tag and the summary."""

from __future__ import annotations

import json

from gateway.model import (
    Client,
    ConsentRecord,
    Envelope,
    Event,
    EventType,
    QueuedMessage,
    Reply,
    Suppression,
    SuppressionReason,
)
from gateway.state.events import CATEGORY_TAG
from gateway.state.store import StateStore
from tests.unit.state.test_store_backends import pg_database, pg_dsn, state

__all__ = ["pg_database", "pg_dsn", "state"]  # fixtures, imported for pytest


async def test_suppression_and_consent_pages(state: StateStore) -> None:
    await state.suppressions.add([
        Suppression(t, SuppressionReason.MANUAL, scope, 1.0, "test")
        for t, scope in (("b@x.net", "all"), ("a@x.net", "marketing"), ("a@x.net", "all"))],
        "test", 1.0)
    first = await state.suppressions.page(("", ""), 2)
    assert [(s.target, s.scope) for s in first] == [("a@x.net", "all"), ("a@x.net", "marketing")]
    rest = await state.suppressions.page(("a@x.net", "marketing"), 2)
    assert [(s.target, s.scope) for s in rest] == [("b@x.net", "all")]
    await state.consent.record([ConsentRecord("a@x.net", "marketing", g, float(t))
                                for t, g in ((1, True), (2, False))], "test", 2.0)
    (one,) = await state.consent.page(0, 1)
    (two,) = await state.consent.page(one[0], 5)
    assert (one[1].granted, two[1].granted) == (True, False)
    assert await state.consent.page(two[0], 5) == []


async def test_audit_record(state: StateStore) -> None:
    await state.audit.record("api:ops", "queue.hold", {"queue_id": "Q1"}, 5.0)
    (entry,) = await state.audit.entries(1)
    assert (entry.actor, entry.action, json.loads(entry.detail)) == (
        "api:ops", "queue.hold", {"queue_id": "Q1"})


async def test_tags_trace_and_summary(state: StateStore) -> None:
    client = Client("relay", "127.0.0.1")
    for qid, booking, category in (("Q1", "B-1", "transactional"), ("Q2", "B-1", "marketing"),
                                   ("Q3", "B-2", "transactional")):
        env = Envelope("app@x.com", (f"{qid}@x.net",), client, 100.0,
                       category=category, tags=(("x-booking-id", booking),))
        state.events.record_accepted(QueuedMessage(qid, env, 10), 100.0)
    state.events.record([Event(101.0, "Q1", EventType.DELIVERED, "Q1@x.net", route="r1",
                               reply=Reply(250, "2.0.0", "ok")),
                         Event(102.0, "Q2", EventType.BOUNCED, "Q2@x.net", route="r2",
                               reply=Reply(550, "5.1.1", "no")),
                         Event(50.0, "Q0", EventType.DELIVERED, "old@x.net", route="r1")])
    found = await state.events.by_tag("x-booking-id", "B-1")
    assert sorted({e.queue_id for e in found}) == ["Q1", "Q2"]
    assert await state.events.by_tag("x-booking-id", "B-9") == []
    tags = await state.events.tags(["Q1", "Q3", "Q9"])
    assert tags == {"Q1": {CATEGORY_TAG: "transactional", "x-booking-id": "B-1"},
                    "Q3": {CATEGORY_TAG: "transactional", "x-booking-id": "B-2"}}
    summary = await state.events.summary(99.0)
    assert summary.totals == {"accepted": 3, "delivered": 1, "bounced": 1}
    assert summary.by_category == {"transactional": {"accepted": 2, "delivered": 1},
                                   "marketing": {"accepted": 1, "bounced": 1}}
    assert summary.by_route == {"r1": {"delivered": 1}, "r2": {"bounced": 1}}
