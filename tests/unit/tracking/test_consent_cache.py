"""The tracking listener's consent answers, kept a few seconds (gateway.tracking
.consent_cache) over a real policy.db: a change made in this process (a record, an
erasure) is seen at the next hit; one made by another process (the CLI: here a
second StateStore on the same files) once TTL has passed on the injected clock;
and a database that cannot answer means "not recorded", never a kept "yes"."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.clock import ManualClock
from gateway.model import ConsentRecord
from gateway.state.retention import erase_address
from gateway.state.store import StateStore
from gateway.tracking.consent_cache import TTL, ConsentCache

FAN = "fan@example.net"


@pytest.fixture
async def state(tmp_path: Path) -> AsyncIterator[StateStore]:
    store = StateStore(tmp_path / "state.db")
    await store.open()
    yield store
    await store.close()


async def grant(state: StateStore, purposes: tuple[str, ...], at: float) -> None:
    await state.consent.record([ConsentRecord(FAN, "marketing", True, at, purposes=purposes)],
                               "test", at)


async def test_a_change_made_in_this_process_is_seen_at_once(state: StateStore) -> None:
    clock = ManualClock()
    cache = ConsentCache(state.consent, clock)
    assert not await cache.allows(FAN, "marketing")  # no record at all
    await grant(state, ("tracking",), 1.0)
    assert await cache.allows(FAN, "marketing")
    assert not await cache.allows(FAN, "transactional")  # per category
    await grant(state, (), 2.0)  # the tracking purpose withdrawn
    assert not await cache.allows(FAN, "marketing")
    await grant(state, ("tracking",), 3.0)
    assert await cache.allows(FAN, "marketing")
    await erase_address(state, FAN, "test", now=clock.now())
    assert not await cache.allows(FAN, "marketing")


async def test_a_change_made_elsewhere_is_seen_within_ttl(state: StateStore,
                                                         tmp_path: Path) -> None:
    clock = ManualClock()
    cache = ConsentCache(state.consent, clock)
    await grant(state, ("tracking",), 1.0)
    assert await cache.allows(FAN, "marketing")
    other = StateStore(tmp_path / "state.db")  # another process's view of the same files
    await other.open()
    try:
        await grant(other, (), 2.0)
    finally:
        await other.close()
    assert await cache.allows(FAN, "marketing")  # the kept answer, for now
    clock.advance(TTL - 0.1)
    assert await cache.allows(FAN, "marketing")
    clock.advance(0.2)
    assert not await cache.allows(FAN, "marketing")


async def test_no_answer_is_no_and_is_not_kept(state: StateStore, tmp_path: Path) -> None:
    clock = ManualClock()
    cache = ConsentCache(state.consent, clock)
    await grant(state, ("tracking",), 1.0)
    await state.close()
    policy = tmp_path / "policy.db"
    policy.rename(tmp_path / "away.db")
    policy.mkdir()  # not a database: every read fails
    assert not await cache.allows(FAN, "marketing")
    policy.rmdir()
    (tmp_path / "away.db").rename(policy)
    assert await cache.allows(FAN, "marketing")  # asked again at once: "no" was not kept
