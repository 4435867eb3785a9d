"""A fixed-size table in a file that every process of the node maps into memory, each
step under a flock on the file (Postfix's anvil without the daemon): the layout,
locking and opening shared by the rate counters (gateway.state.ratelimits) and the
idempotency claims (gateway.state.idempotency_table).

The file is a 64-byte header (magic, slot count, probe length, an evictions counter)
and `slots` slots of `slot_size` bytes. Its blocks are all allocated when it is laid
out (posix_fallocate), never left as holes: a store through a shared mapping into a
hole must allocate a block, and on a full disk the kernel answers that with SIGBUS,
which kills the process. Allocating up front turns a full disk into an OSError at
open, which the callers answer with 451 like any state store that is unavailable.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["HEADER_SIZE", "SharedTable"]

HEADER_SIZE = 64
_HEADER = struct.Struct("<8sIIQ")  # magic, slots, probe, evictions


class SharedTable:
    """The table in `path`, opened (and laid out, if new or laid out otherwise) on
    first use. A table laid out otherwise is started empty: callers keep nothing
    there that cannot be lost (rate counters restart with a fresh burst; idempotency
    keys are also in idempotency.db)."""

    def __init__(self, path: Path, *, magic: bytes, slots: int, slot_size: int,
                 probe: int) -> None:
        if slots & (slots - 1):
            raise ValueError("slots must be a power of two")
        self.path = path
        self.magic = magic
        self.slots = slots
        self.slot_size = slot_size
        self.probe = probe
        self.fd = -1
        self._map: mmap.mmap | None = None

    @property
    def size(self) -> int:
        return HEADER_SIZE + self.slots * self.slot_size

    @contextmanager
    def locked(self) -> Iterator[mmap.mmap]:
        """The mapping, under the node-wide lock (held for microseconds)."""
        table = self.open()
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        try:
            yield table
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    @property
    def evictions(self) -> int:
        return int(_HEADER.unpack_from(self.open(), 0)[3])

    @staticmethod
    def count_eviction(table: mmap.mmap) -> None:
        """Under the lock: one more live entry was pushed out for lack of room."""
        magic, slots, probe, evictions = _HEADER.unpack_from(table, 0)
        _HEADER.pack_into(table, 0, magic, slots, probe, evictions + 1)

    def open(self) -> mmap.mmap:
        if self._map is not None:
            return self._map
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # the first process to get here lays it out
            try:
                self._prepare(fd)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
            self._map = mmap.mmap(fd, self.size)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        return self._map

    def _prepare(self, fd: int) -> None:
        header = os.pread(fd, _HEADER.size, 0)
        ours = (len(header) == _HEADER.size
                and _HEADER.unpack(header)[:3] == (self.magic, self.slots, self.probe)
                and os.fstat(fd).st_size == self.size)
        if not ours:
            os.ftruncate(fd, 0)
        # Also for a table of ours: one written before tables were allocated up front
        # may still have holes (allocating blocks that exist already costs nothing).
        os.posix_fallocate(fd, 0, self.size)
        if not ours:
            os.pwrite(fd, _HEADER.pack(self.magic, self.slots, self.probe, 0), 0)

    def close(self) -> None:
        if self._map is not None:
            self._map.flush()
            self._map.close()
            self._map = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    @property
    def is_open(self) -> bool:
        return self._map is not None
