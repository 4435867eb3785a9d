"""Recent idempotency claims: a hash table in a file that every intake process of the
node maps into memory, like the rate counters (gateway.state.ratelimits; Postfix's
anvil without the daemon).

Why: a claim and its "stored" mark were two SQLite write transactions per
message on a file both intake workers write, and a write that meets the other
process's lock waits in SQLite's busy handler, which sleeps in steps of
milliseconds: idempotency cost more throughput than an RSA signature (issue
15). Here a claim, a lookup and a mark are each a flock/unlock pair
(microseconds, and a waiter wakes the moment the lock is free) and a few
struct reads on a shared mapping; the lock makes each step atomic across the
node's processes, so two sessions racing with one message still store it once.

The table holds what is recent; idempotency.db keeps every stored key for the
whole window (gateway.state.idempotency writes it behind, in batches, and asks
it when the table does not know a key). So the table can stay small: a slot
whose key is in idempotency.db (`PERSISTED`) may be reused; a `PENDING` claim
is never evicted until it is stale (its process died: `stale_after`), and a
`STORED` one only when every slot a key may use holds a live one (counted in
`evictions`; that needs tens of thousands of messages within the moments it
takes to write them behind).

One 64-byte slot per key: a 128-bit hash of (scope, key) — two keys sharing it
would be taken for one (probability ~n²/2¹²⁹) —, the queue id, the state, when
it was claimed and when it expires. An expired or released slot is free. The
file survives a restart (a shared mapping, synced by the kernel and at close),
as the SQLite file with synchronous=NORMAL survives a killed process but may
lose its newest rows to a power loss.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import struct
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

from gateway.core.shared_table import HEADER_SIZE, SharedTable

__all__ = ["SLOTS", "ClaimTable", "Held", "SlotState", "key_digest"]

SLOTS = 1 << 16  # 4 MiB, allocated when laid out (core/shared_table.py says why)
PROBE = 32  # slots a key may live in (linear probing)
_MAGIC = b"GWIDEM01"
_HEADER_SIZE = HEADER_SIZE
_SLOT = struct.Struct("<16s20sB3xdd")  # key digest, queue id, state, created, expires
_SLOT_SIZE = 64
# After the shared header (core/shared_table.py): whether the table knows what
# idempotency.db may hold beyond it (0 on a new layout), and until when a key it
# pushed out may still be live there (a miss before that asks idempotency.db).
_KNOWN = struct.Struct("<Q d")
_KNOWN_AT = 24
_EMPTY = bytes(16)


class SlotState(IntEnum):
    FREE = 0  # released (or never used, when the digest is zero)
    PENDING = 1  # claimed, the message not stored yet
    STORED = 2  # stored; not yet in idempotency.db
    PERSISTED = 3  # stored and in idempotency.db: the slot may be reused


@dataclass(frozen=True)
class Held:
    """The current holder of a key."""

    queue_id: str
    stored: bool
    created: float
    expires: float


def key_digest(scope: str, key: str) -> bytes:
    return hashlib.blake2b(f"{scope}\0{key}".encode(), digest_size=16).digest()


class ClaimTable:
    """The table in `path`, opened on first use."""

    def __init__(self, path: Path, slots: int = SLOTS) -> None:
        self.path = path
        self._file = SharedTable(path, magic=_MAGIC, slots=slots, slot_size=_SLOT_SIZE,
                                 probe=PROBE)
        self._slots = slots

    def claim(self, digest: bytes, queue_id: str, now: float, window: float,
              stale_after: float) -> Held | None:
        """None: the key is ours now (pending under `queue_id`); else its live holder."""
        with self._locked() as table:
            slot, found = table.find(digest, now)
            if found is not None:
                _, _, state, created, _ = found
                abandoned = state == SlotState.PENDING and now - created > stale_after
                if not abandoned:
                    return _held(found)
            else:
                slot = table.free_slot(digest, now)
            table.store(slot, digest, queue_id, SlotState.PENDING, now, now + window)
        return None

    def lookup(self, digest: bytes, now: float) -> Held | None:
        with self._locked() as table:
            _, found = table.find(digest, now)
        return None if found is None else _held(found)

    def hold(self, digest: bytes, queue_id: str, state: SlotState, created: float,
             expires: float, *, replacing: str) -> bool:
        """Set the key's slot — only while `replacing` holds it — to this holder and
        state (stored, persisted; or a holder found in idempotency.db). False if
        someone else holds it now."""
        with self._locked() as table:
            slot, found = table.find(digest, 0.0)
            if found is None or found[1].rstrip(b"\0").decode() != replacing:
                return False
            table.store(slot, digest, queue_id, state, created, expires)
        return True

    def mark(self, digest: bytes, queue_id: str, state: SlotState,
             only_from: SlotState | None = None) -> Held | None:
        """Move `queue_id`'s slot for this key to `state` (FREE releases it), if it is
        in state `only_from` (when given). Returns the holder as it was, or None when
        `queue_id` does not hold the key (or not in `only_from`): nothing changed."""
        with self._locked() as table:
            return _mark(table, digest, queue_id, state, only_from)

    def mark_many(self, keys: Iterable[tuple[bytes, str]], state: SlotState) -> None:
        """`mark` for each (digest, queue id), under one lock (a written-behind batch)."""
        with self._locked() as table:
            for digest, queue_id in keys:
                _mark(table, digest, queue_id, state, None)

    def may_have_forgotten(self, now: float) -> bool:
        """Whether a key this table does not hold may still be live in idempotency.db:
        true while a live key pushed out of the table could still be asked for
        (until its expiry), and on a table laid out anew until learn_forgotten() said
        what idempotency.db holds. Read without the lock: the value only grows while
        the table lives, so a read older than a claim is still a bound for it."""
        known, until = _KNOWN.unpack_from(self._file.open(), _KNOWN_AT)
        return not known or now < until

    def learn_forgotten(self, until: float) -> None:
        """After a new layout: the keys in idempotency.db are live until `until`."""
        with self._file.locked() as table:
            _, current = _KNOWN.unpack_from(table, _KNOWN_AT)
            _KNOWN.pack_into(table, _KNOWN_AT, 1, max(current, until))

    @property
    def layout_known(self) -> bool:
        return bool(_KNOWN.unpack_from(self._file.open(), _KNOWN_AT)[0])

    def settle(self, in_spool: set[str], now: float, *, release_others: bool
               ) -> tuple[int, int]:
        """At start, the claims killed processes left pending: those whose message is in
        the spool become stored (kept here for their window: the table knows a key only
        by its digest, so it cannot be written to idempotency.db by name); the others are
        freed when `release_others`. Returns (stored, released)."""
        stored = released = 0
        with self._locked() as table:
            # One read of the whole table (4 MiB) instead of 65,536 small ones.
            slots = os.pread(self._file.fd, self._slots * _SLOT_SIZE, _HEADER_SIZE)
            for index in range(self._slots):
                digest, holder, state, created, expires = _SLOT.unpack_from(
                    slots, index * _SLOT_SIZE)
                if state != SlotState.PENDING or expires <= now or digest == _EMPTY:
                    continue
                queue_id = holder.rstrip(b"\0").decode()
                if queue_id in in_spool:
                    table.store(index, digest, queue_id, SlotState.STORED, created, expires)
                    stored += 1
                elif release_others:
                    table.store(index, digest, queue_id, SlotState.FREE, created, expires)
                    released += 1
        return stored, released

    @property
    def evictions(self) -> int:
        return self._file.evictions

    @contextmanager
    def _locked(self) -> Iterator[_Locked]:
        with self._file.locked() as table:
            yield _Locked(table, self._slots)

    def close(self) -> None:
        self._file.close()

    def __repr__(self) -> str:
        state = "open" if self._file.is_open else "closed"
        return f"<ClaimTable {self.path} {state} slots={self._slots}>"


_Slot = tuple[bytes, bytes, int, float, float]


def _mark(table: _Locked, digest: bytes, queue_id: str, state: SlotState,
          only_from: SlotState | None) -> Held | None:
    slot, found = table.find(digest, 0.0)
    if found is None or found[1].rstrip(b"\0").decode() != queue_id:
        return None
    if only_from is not None and found[2] != only_from:
        return None
    table.store(slot, digest, queue_id, state, found[3], found[4])
    return _held(found)


def _held(slot: _Slot) -> Held:
    _, holder, state, created, expires = slot
    return Held(holder.rstrip(b"\0").decode(), state != SlotState.PENDING, created, expires)


class _Locked:
    """The table's slots, while the caller holds the node-wide lock."""

    def __init__(self, table: mmap.mmap, slots: int) -> None:
        self._table = table
        self._mask = slots - 1

    def slot(self, index: int) -> _Slot:
        return _SLOT.unpack_from(self._table, _HEADER_SIZE + index * _SLOT_SIZE)

    def find(self, digest: bytes, now: float) -> tuple[int, _Slot | None]:
        """The key's live slot (not free, not expired at `now`), or (-1, None)."""
        first = int.from_bytes(digest[:8], "little")
        for i in range(PROBE):
            index = (first + i) & self._mask
            slot = self.slot(index)
            if slot[0] == digest and slot[2] != SlotState.FREE and slot[4] > now:
                return index, slot
            if slot[0] == _EMPTY:
                break  # never used: the key is nowhere further on either
        return -1, None

    def free_slot(self, digest: bytes, now: float) -> int:
        """Where a new claim goes: a never-used, free or expired slot, else the oldest
        persisted one, else (evicted, counted) the oldest stored one."""
        first = int.from_bytes(digest[:8], "little")
        persisted = stored = -1
        persisted_at = stored_at = 0.0
        for i in range(PROBE):
            index = (first + i) & self._mask
            key, _, state, created, expires = self.slot(index)
            if key == _EMPTY or state == SlotState.FREE or expires <= now:
                return index
            if state == SlotState.PERSISTED and (persisted < 0 or created < persisted_at):
                persisted, persisted_at = index, created
            if state == SlotState.STORED and (stored < 0 or created < stored_at):
                stored, stored_at = index, created
        if persisted >= 0:
            self._forget(persisted)
            return persisted
        if stored < 0:
            raise OSError("idempotency table: every slot holds a claim in progress")
        SharedTable.count_eviction(self._table)
        self._forget(stored)
        return stored

    def _forget(self, index: int) -> None:
        """The live key in this slot leaves the table: until it expires, a miss must
        ask idempotency.db (a stored key not written there yet will be, behind)."""
        expires = self.slot(index)[4]
        known, until = _KNOWN.unpack_from(self._table, _KNOWN_AT)
        if expires > until:
            _KNOWN.pack_into(self._table, _KNOWN_AT, known, expires)

    def store(self, index: int, digest: bytes, queue_id: str, state: SlotState,
              created: float, expires: float) -> None:
        _SLOT.pack_into(self._table, _HEADER_SIZE + index * _SLOT_SIZE, digest,
                        queue_id.encode("ascii"), state, created, expires)
