"""Rate counters (GCRA) for one node: a hash table in a file that every intake
process of the node maps into memory (Postfix's anvil, without the daemon).

One 16-byte slot per limit key: a 64-bit hash of the key and its theoretical
arrival time (TAT). A request at `now` is allowed if
max(tat, now) + interval - now <= window (window = burst * interval); an
allowed request moves tat on by one interval. A slot whose tat has passed is
a full bucket — the same as no slot — so it is free for any key: the table
needs no purge.

Why not a database row per key (the first version, ratelimits.db): every RCPT
was a SQLite write transaction on rows the other intake processes had just
written — file locks, a WAL frame, lock waits — and that was most of what the
policies cost intake (BENCHMARKS.md). Here an RCPT costs a flock/unlock pair
(~1 µs) and a few struct reads on a shared mapping; the lock keeps each update
atomic across the node's processes, so the limit holds for the node, not per
process. The other ways weighed: the master owning the counters (a pipe round
trip per RCPT, tens of µs, and the master's loop in every RCPT's path);
workers leasing batches of tokens from a shared counter (one write per lease,
but leased tokens a worker does not use are unavailable to the others until
the lease ends, so a burst of 4 could refuse a guest's second message — a
change of semantics — and it saves nothing when every RCPT has a new key,
as per-recipient limits mostly do). The shared table keeps exact GCRA
semantics at the lowest cost; it serves one machine, which is what Redis is
for beyond that.

What survives a restart: the file is a shared mapping, so every update is in
the page cache at once and the next process (a restarted worker or gateway)
sees it; the kernel writes it to disk in batches (within ~30 s by default)
and `close()` syncs it. A power loss may forget the latest updates — at worst
a fresh burst per key — and delay schedules are also kept in the queue files
(Envelope.not_before), so no held message goes out early.

Limits of the design, stated: two different keys with the same 64-bit hash
share a counter (probability ~n²/2⁶⁵); and when all PROBE slots a key may use
hold live counters of other keys, the one nearest to full is overwritten
(`evictions`), which lets that key start over. With SLOTS = 262,144 that
needs tens of thousands of keys active at once in one neighbourhood.

For several nodes, gateway.state.redis_limits keeps the same counters in Redis.
"""

from __future__ import annotations

import hashlib
import mmap
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from gateway.core.shared_table import HEADER_SIZE, SharedTable

__all__ = ["PROBE", "SLOTS", "RateCounters", "SharedRateCounters"]

SLOTS = 1 << 18  # 4 MiB of slots, allocated when laid out (core/shared_table.py says why)
PROBE = 16  # slots a key may live in (linear probing)
_MAGIC = b"GWRATE01"
_HEADER_SIZE = HEADER_SIZE
_SLOT = struct.Struct("<Qd")  # key hash (0 = never used), tat


class RateCounters(Protocol):
    async def acquire(self, key: str, interval: float, burst: int, now: float
                      ) -> tuple[bool, float]:
        """Take one token: (allowed, tat); when refused, a token is free at tat - window."""
    async def acquire_many(self, requests: list[tuple[str, float, int]], now: float
                           ) -> list[tuple[bool, float]]:
        """acquire() for several (key, interval, burst), in one round trip."""
    async def reserve(self, key: str, interval: float, burst: int, now: float) -> float:
        """Take one token whatever the wait; return when it may be used (≥ now)."""
    async def close(self) -> None: ...


def key_hash(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little") or 1


class SharedRateCounters:
    """The table in `path`, opened on first use (a gateway without rate limits never
    creates it)."""

    def __init__(self, path: Path, slots: int = SLOTS) -> None:
        self.path = path
        self._file = SharedTable(path, magic=_MAGIC, slots=slots, slot_size=_SLOT.size,
                                 probe=PROBE)
        self._slots = slots

    # -- the RateCounters interface (async for the callers; nothing here waits) -----------------
    async def acquire(self, key: str, interval: float, burst: int, now: float
                      ) -> tuple[bool, float]:
        return self.acquire_now([(key, interval, burst)], now)[0]

    async def acquire_many(self, requests: list[tuple[str, float, int]], now: float
                           ) -> list[tuple[bool, float]]:
        return self.acquire_now(requests, now) if requests else []

    async def reserve(self, key: str, interval: float, burst: int, now: float) -> float:
        with self._locked() as table:
            slot, tat = table.find(key_hash(key), now)
            tat = max(tat, now) + interval
            table.store(slot, key_hash(key), tat)
        return max(now, tat - interval * burst)

    # -- synchronous core --------------------------------------------------------------------
    def acquire_now(self, requests: list[tuple[str, float, int]], now: float
                    ) -> list[tuple[bool, float]]:
        out = []
        with self._locked() as table:
            for key, interval, burst in requests:
                h = key_hash(key)
                slot, tat = table.find(h, now)
                new_tat = max(tat, now) + interval
                allowed = new_tat - now <= interval * burst
                if allowed:
                    table.store(slot, h, new_tat)
                    tat = new_tat
                out.append((allowed, tat))
        return out

    @property
    def evictions(self) -> int:
        return self._file.evictions

    @contextmanager
    def _locked(self) -> Iterator[_Locked]:
        with self._file.locked() as table:
            yield _Locked(table, self._slots)

    async def close(self) -> None:
        self._file.close()

    def __repr__(self) -> str:
        state = "open" if self._file.is_open else "closed"
        return f"<SharedRateCounters {self.path} {state} slots={self._slots}>"


class _Locked:
    """The table's slots, while the caller holds the node-wide lock."""

    def __init__(self, table: mmap.mmap, slots: int) -> None:
        self._table = table
        self._mask = slots - 1

    def find(self, h: int, now: float) -> tuple[int, float]:
        """(slot, tat) for hash `h`: its own slot, else a free one (tat 0 = full bucket)."""
        table, unpack = self._table, _SLOT.unpack_from
        free = -1
        oldest, oldest_tat = -1, 0.0
        for i in range(PROBE):
            slot = (h + i) & self._mask
            stored, tat = unpack(table, _HEADER_SIZE + slot * _SLOT.size)
            if stored == h:
                return slot, tat
            if stored == 0:
                # Never used: the key is nowhere further on either.
                return (slot if free < 0 else free), 0.0
            if tat <= now and free < 0:
                free = slot  # expired: the key may still be further on, so keep looking
            if oldest < 0 or tat < oldest_tat:
                oldest, oldest_tat = slot, tat
        if free >= 0:
            return free, 0.0
        SharedTable.count_eviction(table)
        return oldest, 0.0

    def store(self, slot: int, h: int, tat: float) -> None:
        _SLOT.pack_into(self._table, _HEADER_SIZE + slot * _SLOT.size, h, tat)
