"""The idempotency store's claims on a real SQLite file: first wins, pending vs stored,
release, expiry, abandoned claims, purge."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.state.db import StateDb
from gateway.state.idempotency import Claim, SqliteIdempotencyStore
from gateway.state.migrations.sqlite import IDEMPOTENCY

DAY = 86400.0


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteIdempotencyStore]:
    db = StateDb(tmp_path / "idempotency.db", IDEMPOTENCY)
    yield SqliteIdempotencyStore(db)
    await db.close()


async def test_first_claim_wins_and_later_ones_see_it(store: SqliteIdempotencyStore) -> None:
    assert await store.claim("ip:1", "k", "Q1", 100.0, DAY, 600) == Claim(True, "Q1", False)
    assert await store.claim("ip:1", "k", "Q2", 101.0, DAY, 600) == Claim(False, "Q1", False)
    await store.stored("ip:1", "k", "Q1")
    assert await store.claim("ip:1", "k", "Q3", 102.0, DAY, 600) == Claim(False, "Q1", True)
    # Another client's key space.
    assert (await store.claim("ip:2", "k", "Q4", 102.0, DAY, 600)).won


async def test_release_lets_the_retry_in_but_never_drops_a_stored_key(
        store: SqliteIdempotencyStore) -> None:
    await store.claim("u", "k", "Q1", 0.0, DAY, 600)
    await store.release("u", "k", "Q1")
    assert await store.claim("u", "k", "Q2", 1.0, DAY, 600) == Claim(True, "Q2", False)
    await store.stored("u", "k", "Q2")
    await store.release("u", "k", "Q2")  # too late: it is stored
    assert await store.lookup("u", "k", 2.0) == Claim(False, "Q2", True)


async def test_expired_and_abandoned_claims_are_taken_over(store: SqliteIdempotencyStore
                                                           ) -> None:
    await store.claim("u", "done", "Q1", 0.0, 3600, 600)
    await store.stored("u", "done", "Q1")
    assert (await store.claim("u", "done", "Q2", 3599.0, 3600, 600)).won is False
    assert (await store.claim("u", "done", "Q3", 3600.5, 3600, 600)).won is True
    await store.claim("u", "crashed", "Q4", 0.0, DAY, 600)  # never stored: its process died
    assert (await store.claim("u", "crashed", "Q5", 599.0, DAY, 600)).won is False
    assert await store.claim("u", "crashed", "Q6", 601.0, DAY, 600) == Claim(True, "Q6", False)


async def test_purge_forgets_expired_keys(store: SqliteIdempotencyStore) -> None:
    for i in range(5):
        await store.claim("u", f"k{i}", f"Q{i}", float(i), 10.0, 600)
    assert await store.purge(12.5) == 3  # expired at 10, 11, 12
    assert await store.lookup("u", "k0", 0.0) is None
    assert await store.lookup("u", "k4", 12.5) == Claim(False, "Q4", False)
