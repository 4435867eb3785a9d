"""BounceActions on a real state store: what each kind of bounce does, the soft-bounce
window (injected clock), and which delivery replies count at all."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.bounces.actions import BounceActions, Finding, decide
from gateway.bounces.rules import BounceRules
from gateway.bounces.verdicts import Action
from gateway.clock import ManualClock
from gateway.model import (
    Client,
    Envelope,
    Event,
    EventType,
    QueuedMessage,
    Reply,
    SuppressionReason,
)
from gateway.policy.rules_file import PolicySet, load_policies
from gateway.state.bounces import SqliteBounceStore
from gateway.state.store import StateStore

DAY = 86400.0
QM = QueuedMessage("01HF7YAT00GHXCJX9Q", Envelope(
    "app@example.com", ("a@example.net",), Client("relay", "127.0.0.1"), 1.0,
    message_id="<m@example.com>"), 10)


def _policies(tmp_path: Path, text: str = "{}\n") -> PolicySet:
    directory = tmp_path / "policies"
    directory.mkdir(exist_ok=True)
    (directory / "bounces.yaml").write_text(text)
    policies = load_policies(directory)
    assert policies is not None
    return policies


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[tuple[BounceActions, ManualClock]]:
    state = StateStore(tmp_path / "state.db")
    await state.open()
    store = SqliteBounceStore(tmp_path / "bounces.db")
    clock = ManualClock()
    actions = BounceActions(state, store, clock, policies=_policies(tmp_path))
    yield actions, clock
    await store.close()
    await state.close()


_ACTION = {"hard": Action.ADDRESS, "soft": Action.MAILBOX, "complaint": Action.COMPLAINT}
_REASON = {"hard": "userunknown", "soft": "mailboxfull", "complaint": "feedback"}


def _finding(kind: str, queue_id: str = QM.id, recipient: str = "a@example.net") -> Finding:
    return Finding(queue_id=queue_id, recipient=recipient, kind=kind, status=None,
                   reason=_REASON[kind], source="test", action=_ACTION[kind])


def test_decide_without_rules_suppresses_nothing() -> None:
    for kind in ("hard", "soft", "complaint"):
        decision = decide(_finding(kind), None)
        assert decision.suppress_scope is None and not decision.count_soft
    assert decide(_finding("hard"), BounceRules()).suppress_scope == "all"
    assert decide(_finding("complaint"), BounceRules()).suppress_scope == "marketing"
    assert decide(_finding("complaint"), BounceRules(complaint_scope="all")
                  ).suppress_scope == "all"
    assert decide(_finding("hard"), BounceRules(hard_suppress=False)).suppress_scope is None


async def test_soft_bounces_suppress_after_three_in_window(
        parts: tuple[BounceActions, ManualClock]) -> None:
    actions, clock = parts
    sup = actions.state.suppressions
    await actions.act(_finding("soft", "01HF7YAT00GHXCJX9A"))
    await actions.act(_finding("soft", "01HF7YAT00GHXCJX9A"))  # same message: counts once
    clock.advance(3 * DAY)
    await actions.act(_finding("soft", "01HF7YAT00GHXCJX9B"))
    assert await sup.lookup(("a@example.net",), clock.now()) == []
    clock.advance(5 * DAY)  # the first one is now out of the 7-day window
    await actions.act(_finding("soft", "01HF7YAT00GHXCJX9C"))
    assert await sup.lookup(("a@example.net",), clock.now()) == []
    clock.advance(1 * DAY)
    await actions.act(_finding("soft", "01HF7YAT00GHXCJX9D"))  # B, C, D within 7 days
    (entry,) = await sup.lookup(("a@example.net",), clock.now())
    assert entry.reason is SuppressionReason.SOFT_BOUNCE and entry.scope == "all"
    assert entry.expires == clock.now() + 7 * DAY
    assert await sup.lookup(("a@example.net",), clock.now() + 7 * DAY) == []  # expired
    assert actions.counters.suppressed == 1


async def test_soft_rules_from_the_file(tmp_path: Path,
                                       parts: tuple[BounceActions, ManualClock]) -> None:
    actions, clock = parts
    actions.policies = _policies(tmp_path, "soft: {count: 1, suppress_for: 2h}\n")
    await actions.act(_finding("soft"))
    (entry,) = await actions.state.suppressions.lookup(("a@example.net",), clock.now())
    assert entry.expires == clock.now() + 7200


async def test_hard_and_complaint_events(parts: tuple[BounceActions, ManualClock]) -> None:
    actions, clock = parts
    await actions.act(_finding("hard", recipient="A@Example.NET"))
    await actions.act(_finding("complaint", recipient="c@example.net"))
    (hard,) = await actions.state.suppressions.lookup(("a@example.net",), clock.now())
    assert (hard.reason, hard.scope, hard.expires) == (
        SuppressionReason.HARD_BOUNCE, "all", None)
    (complaint,) = await actions.state.suppressions.lookup(("c@example.net",), clock.now())
    assert (complaint.reason, complaint.scope) == (SuppressionReason.COMPLAINT, "marketing")
    events = await actions.state.events.by_queue_id(QM.id)
    assert [(e.type, e.recipient) for e in events] == [
        (EventType.BOUNCED, "A@Example.NET"), (EventType.SUPPRESSED, "A@Example.NET"),
        (EventType.COMPLAINED, "c@example.net"), (EventType.SUPPRESSED, "c@example.net")]


def _event(kind: EventType, reply: Reply | None) -> Event:
    return Event(time=1.0, queue_id=QM.id, type=kind, recipient="a@example.net",
                 route="sink", reply=reply)


@pytest.mark.parametrize(("kind", "reply", "expected"), [
    (EventType.BOUNCED, Reply(550, "5.1.1", "no such user"), "suppressed"),
    (EventType.BOUNCED, Reply(554, "5.7.1", "client host blocked by zen.spamhaus.org"),
     "sender_fault"),
    (EventType.BOUNCED, Reply(552, "5.2.2", "mailbox full"), "soft"),
    (EventType.DEFERRED, Reply(452, "4.2.2", "mailbox full"), "soft"),
    (EventType.DEFERRED, Reply(451, "4.7.1", "greylisted, try again later"), None),
    (EventType.DEFERRED, Reply(421, "4.4.2", "connection timed out"), None),
    # expired: judged on the last reply, as final; a network failure is not the address's
    (EventType.EXPIRED, Reply(451, "4.4.1", "no connection"), "sender_fault"),
    (EventType.EXPIRED, Reply(452, "4.2.2", "mailbox full"), "soft"),
    (EventType.DELIVERED, Reply(250, "2.0.0", "ok"), None),
])
async def test_delivery_outcomes(parts: tuple[BounceActions, ManualClock], kind: EventType,
                                 reply: Reply, expected: str | None) -> None:
    actions, clock = parts
    actions.filed(QM, [_event(kind, reply)])
    await actions.drain()
    events = await actions.state.events.by_queue_id(QM.id)
    types = {e.type for e in events}
    if expected == "suppressed":
        assert types == {EventType.SUPPRESSED}  # the scheduler wrote `bounced` itself
        assert await actions.state.suppressions.lookup(("a@example.net",), clock.now())
    elif expected == "soft":
        assert types == {EventType.SOFT_BOUNCED}
        assert await actions.state.suppressions.all() == []
    elif expected == "sender_fault":
        (event,) = events
        assert event.type is EventType.SENDER_FAULT and "source=smtp-reply" in (event.detail
                                                                               or "")
        assert await actions.state.suppressions.all() == []
    else:
        assert events == []


async def test_store_purges_old_keys(tmp_path: Path) -> None:
    store = SqliteBounceStore(tmp_path / "b.db")
    try:
        await store.mark("old", "imap", "processed", 100.0)
        await store.mark("new", "imap", "processed", 200.0)
        await store.mark("new", "imap", "forged", 300.0)  # a key is marked once
        assert await store.purge(150.0) == 1
        assert await store.ingested() == [("new", "imap", "processed")]
        assert not await store.seen("old") and await store.seen("new")
    finally:
        await store.close()


async def test_without_bounces_yaml_delivery_replies_add_nothing(
        parts: tuple[BounceActions, ManualClock]) -> None:
    actions, _ = parts
    actions.policies = None
    actions.filed(QM, [_event(EventType.BOUNCED, Reply(550, "5.1.1", "no such user"))])
    await actions.drain()
    assert await actions.state.events.by_queue_id(QM.id) == []
    await actions.act(_finding("hard"))  # an asynchronous bounce: recorded, not acted on
    assert [e.type for e in await actions.state.events.by_queue_id(QM.id)] == [
        EventType.BOUNCED]
    assert await actions.state.suppressions.all() == []
    # a blocklisting is still recorded for the operator, bounces.yaml or not
    actions.filed(QM, [_event(EventType.BOUNCED, Reply(554, "5.7.1", "Client host blocked "
                                                       "using zen.spamhaus.org"))])
    await actions.drain()
    events = await actions.state.events.by_queue_id(QM.id)
    assert [e.type for e in events][-1] is EventType.SENDER_FAULT
    assert "reason=blocked" in (events[-1].detail or "")
    assert await actions.state.suppressions.all() == []


async def test_soft_never_shortens_a_permanent_suppression(
        tmp_path: Path, parts: tuple[BounceActions, ManualClock]) -> None:
    actions, clock = parts
    actions.policies = _policies(tmp_path, "soft: {count: 1}\n")
    await actions.act(_finding("hard"))
    await actions.act(_finding("soft", "01HF7YAT00GHXCJX9B"))
    (entry,) = await actions.state.suppressions.lookup(("a@example.net",), clock.now())
    assert (entry.reason, entry.expires) == (SuppressionReason.HARD_BOUNCE, None)
    assert actions.counters.suppressed == 1
    # The other way round, the hard bounce makes an expiring entry permanent.
    await actions.act(_finding("soft", recipient="b@example.net"))
    await actions.act(_finding("hard", recipient="b@example.net"))
    (entry,) = await actions.state.suppressions.lookup(("b@example.net",), clock.now())
    assert (entry.reason, entry.expires) == (SuppressionReason.HARD_BOUNCE, None)
