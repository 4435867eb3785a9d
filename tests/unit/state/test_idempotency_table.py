"""The shared claim table in front of idempotency.db (gateway/state/idempotency_table.py):
atomic across the processes that map it, small because idempotency.db keeps the whole
window, and never forgetting a key that is not in idempotency.db yet."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

from gateway.state.db import StateDb
from gateway.state.idempotency import Claim, SqliteIdempotencyStore
from gateway.state.idempotency_table import ClaimTable, SlotState, key_digest
from gateway.state.migrations import sqlite as sqlite_migrations

DAY = 86400.0


def _claim_many(path: str, name: str, out: multiprocessing.Queue[tuple[str, int]]) -> None:
    table = ClaimTable(Path(path), slots=1024)
    won = sum(table.claim(key_digest("ip:1", f"k{i}"), f"{name}{i:04d}", 10.0, DAY, 600)
              is None for i in range(300))
    table.close()
    out.put((name, won))


def test_two_processes_claiming_the_same_keys_win_each_key_once(tmp_path: Path) -> None:
    out: multiprocessing.Queue[tuple[str, int]] = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=_claim_many, args=(str(tmp_path / "t"), n, out))
             for n in ("A", "B")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    wins = dict(out.get(timeout=10) for _ in procs)
    assert wins["A"] + wins["B"] == 300
    table = ClaimTable(tmp_path / "t", slots=1024)
    holders = {table.lookup(key_digest("ip:1", f"k{i}"), 11.0) for i in range(300)}
    assert None not in holders and len(holders) == 300
    table.close()


def test_a_claim_survives_the_process_that_made_it(tmp_path: Path) -> None:
    table = ClaimTable(tmp_path / "t")
    digest = key_digest("user:app", "key:order-7")
    assert table.claim(digest, "Q1", 10.0, DAY, 600) is None
    table.mark(digest, "Q1", SlotState.STORED)
    table.close()  # as if killed: the shared mapping is the file
    again = ClaimTable(tmp_path / "t")
    held = again.claim(digest, "Q2", 20.0, DAY, 600)
    assert held is not None and (held.queue_id, held.stored) == ("Q1", True)
    again.close()


def test_a_written_behind_batch_is_marked_persisted_in_one_go(tmp_path: Path) -> None:
    table = ClaimTable(tmp_path / "t")
    digests = [key_digest("ip:1", f"k{i}") for i in range(3)]
    for i, digest in enumerate(digests):
        assert table.claim(digest, f"Q{i}", 1.0, DAY, 600) is None
        table.mark(digest, f"Q{i}", SlotState.STORED)
    # The last one is named with a queue id that does not hold it: left alone.
    table.mark_many([(digests[0], "Q0"), (digests[1], "Q1"), (digests[2], "QX")],
                    SlotState.PERSISTED)
    assert table.mark(digests[0], "Q0", SlotState.STORED, only_from=SlotState.PERSISTED)
    assert table.mark(digests[1], "Q1", SlotState.STORED, only_from=SlotState.PERSISTED)
    assert table.mark(digests[2], "Q2", SlotState.STORED, only_from=SlotState.PERSISTED) is None
    table.close()


def test_only_persisted_slots_are_reused_while_there_are_any(tmp_path: Path) -> None:
    table = ClaimTable(tmp_path / "t", slots=32)  # one neighbourhood: every key competes
    digests = [key_digest("u", f"k{i}") for i in range(40)]
    for i, digest in enumerate(digests[:32]):
        assert table.claim(digest, f"Q{i:02d}", 1.0, DAY, 600) is None
        table.mark(digest, f"Q{i:02d}", SlotState.PERSISTED if i % 2 else SlotState.STORED)
    for i, digest in enumerate(digests[32:], 32):
        assert table.claim(digest, f"Q{i:02d}", 2.0, DAY, 600) is None
    # The 8 new claims took persisted slots; every stored one is still known.
    for i, digest in enumerate(digests[:32]):
        if i % 2 == 0:
            held = table.lookup(digest, 3.0)
            assert held is not None and held.queue_id == f"Q{i:02d}"
    assert table.evictions == 0
    table.close()


async def test_a_key_the_table_forgot_is_answered_from_idempotency_db(tmp_path: Path) -> None:
    db = StateDb(tmp_path / "idempotency.db", sqlite_migrations.IDEMPOTENCY)
    table = ClaimTable(tmp_path / "idempotency.table", slots=32)
    store = SqliteIdempotencyStore(db, table)
    try:
        assert await store.claim("ip:1", "first", "Q0", 1.0, DAY, 600) == Claim(True, "Q0", False)
        await store.stored("ip:1", "first", "Q0")
        await store.flush()  # written behind: now in idempotency.db, its slot reusable
        for i in range(1, 40):  # enough new keys to push it out of the small table
            await store.claim("ip:1", f"k{i}", f"Q{i}", 2.0, DAY, 600)
            await store.stored("ip:1", f"k{i}", f"Q{i}")
            await store.flush()
        assert table.lookup(key_digest("ip:1", "first"), 3.0) is None  # forgotten here
        assert await store.claim("ip:1", "first", "QX", 3.0, DAY, 600) == Claim(False, "Q0", True)
        assert await store.lookup("ip:1", "first", 3.0) == Claim(False, "Q0", True)
    finally:
        await store.close()
        await db.close()


class _Questions:
    """Counts the questions a store asks idempotency.db (the real file answers them)."""

    def __init__(self, db: StateDb) -> None:
        self.asked = 0
        self._fetchone = db.fetchone
        db.fetchone = self._count  # type: ignore[method-assign]

    async def _count(self, *args: Any, **kwargs: Any) -> Any:
        self.asked += 1
        return await self._fetchone(*args, **kwargs)


async def test_a_new_key_asks_idempotency_db_only_when_the_table_forgot_something(
        tmp_path: Path) -> None:
    db = StateDb(tmp_path / "idempotency.db", sqlite_migrations.IDEMPOTENCY)
    table = ClaimTable(tmp_path / "idempotency.table", slots=32)
    store = SqliteIdempotencyStore(db, table)
    questions = _Questions(db)
    try:
        await store.claim("ip:1", "warm-up", "Q0", 1.0, DAY, 600)
        assert questions.asked == 1  # a new layout: what does idempotency.db hold?
        assert not table.may_have_forgotten(1.0)
        # The table holds every live key: a new one is new without asking the file.
        assert await store.claim("ip:1", "new", "Q1", 2.0, DAY, 600) == \
            Claim(True, "Q1", False)
        assert questions.asked == 1
        for i in range(2, 40):  # push persisted keys out of the small table
            await store.claim("ip:1", f"k{i}", f"Q{i}", 3.0, DAY, 600)
            await store.stored("ip:1", f"k{i}", f"Q{i}")
            await store.flush()
        assert table.may_have_forgotten(4.0)  # until the forgotten keys expire
        assert not table.may_have_forgotten(3.0 + DAY)
        before = questions.asked
        assert await store.claim("ip:1", "another", "QY", 4.0, DAY, 600) == \
            Claim(True, "QY", False)
        assert questions.asked == before + 1
    finally:
        await store.close()
        await db.close()


async def test_a_table_laid_out_anew_asks_idempotency_db_for_what_it_holds(
        tmp_path: Path) -> None:
    db = StateDb(tmp_path / "idempotency.db", sqlite_migrations.IDEMPOTENCY)
    store = SqliteIdempotencyStore(db, ClaimTable(tmp_path / "idempotency.table"))
    await store.claim("ip:1", "booking-1", "Q1", 1.0, DAY, 600)
    await store.stored("ip:1", "booking-1", "Q1")
    await store.close()
    (tmp_path / "idempotency.table").unlink()  # lost: a new layout knows nothing
    table = ClaimTable(tmp_path / "idempotency.table")
    store = SqliteIdempotencyStore(db, table)
    try:
        assert await store.claim("ip:1", "booking-1", "Q2", 2.0, DAY, 600) == \
            Claim(False, "Q1", True)
        assert table.may_have_forgotten(2.0) and not table.may_have_forgotten(1.0 + DAY)
    finally:
        await store.close()
        await db.close()
