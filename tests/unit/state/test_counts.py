"""Event counts rolled up from real rows of state.db: what each event is counted under,
incremental roll-ups that never count an event twice, and the overview's sums."""

from __future__ import annotations

from pathlib import Path

from gateway.model import Client, Envelope, Event, EventType, QueuedMessage, Reply
from gateway.state.counts import BUCKET, EventCounts, reason_of
from gateway.state.db import StateDb
from gateway.state.events import SqliteEventStore
from gateway.state.migrations.sqlite import EVENTS

T0 = 1_700_000_000.0 // BUCKET * BUCKET


def accepted(queue_id: str, rcpt: str, category: str, at: float) -> QueuedMessage:
    env = Envelope("app@example.com", (rcpt,), Client("relay", "127.0.0.1"), at,
                   category=category)
    return QueuedMessage(queue_id, env, 100)


def test_reasons() -> None:
    assert reason_of("bounced", "source=smtp-reply kind=hard status=5.1.1 reason=user_unknown",
                     550, "5.1.1") == "user_unknown"
    assert reason_of("bounced", None, 550, "5.7.1") == "5.7.1"
    assert reason_of("bounced", None, 550, "") == "550"
    assert reason_of("opened", "machine=yes why=head ip=-", None, None) == "machine"
    assert reason_of("clicked", "machine=no ip=-", None, None) == "human"
    assert reason_of("delivered", None, 250, "2.0.0") == ""


async def test_rollup_counts_each_event_once_by_category_route_domain_reason(
        tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    events = SqliteEventStore(path)
    await events.open()
    counts = EventCounts(StateDb(path, EVENTS))
    try:
        for i in range(5):
            events.record_accepted(accepted(f"Q{i}", f"u{i}@Gmail.com", "marketing", T0 + i),
                                   T0 + i)
        events.record([Event(T0 + 40, "Q0", EventType.DELIVERED, "u0@Gmail.com", route="mx"),
                       Event(T0 + 400, "Q1", EventType.DELIVERED, "u1@Gmail.com", route="mx"),
                       Event(T0 + 50, "Q2", EventType.BOUNCED, "u2@Gmail.com", route="mx",
                             reply=Reply(550, "5.1.1", "no such user"))])
        await events.flush()
        assert await counts.rollup(limit=3) == 8  # in batches of 3: 3 + 3 + 2
        assert await counts.rollup() == 0  # nothing new: nothing counted twice
        events.record([Event(T0 + 60, "Q3", EventType.OPENED, "u3@gmail.com",
                             detail="machine=yes why=proxy:google ip=1.2.3.0/24")])
        await events.flush()
        assert await counts.rollup() == 1

        day = await counts.overview(T0 - 3600)
        assert day.total("accepted") == 5
        assert day.by("delivered", "route") == {"mx": 2}
        assert day.by("accepted", "category") == {"marketing": 5}
        assert day.total("bounced", reason="5.1.1") == 1
        assert day.total("opened", reason="machine") == 1
        assert day.domains["gmail.com"] == {"accepted": 5, "delivered": 2, "bounced": 1,
                                            "opened": 1}
        assert day.latency == {60.0: 1, 900.0: 1}  # 40 s and 399 s
        assert day.percentile(0.5) == 60.0 and day.percentile(0.99) == 900.0
        assert sum(day.series["accepted"].values()) == 5
        later = await counts.overview(T0 + BUCKET)  # the first bucket is left out
        assert later.total("accepted") == 0 and later.total("delivered") == 1
    finally:
        await counts.db.close()
        await events.close()
