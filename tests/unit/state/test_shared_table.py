"""The memory-mapped tables' common file (gateway/core/shared_table.py): laid out once,
every block allocated up front, so a full disk is an error at open and never a SIGBUS
in the middle of a store through the map."""

from __future__ import annotations

import multiprocessing
import os
import resource
import signal
import struct
from pathlib import Path

from gateway.core.shared_table import HEADER_SIZE, SharedTable
from gateway.state.idempotency_table import ClaimTable, key_digest
from gateway.state.ratelimits import SharedRateCounters

DAY = 86400.0


def _table(path: Path) -> SharedTable:
    return SharedTable(path, magic=b"GWTEST01", slots=1024, slot_size=64, probe=8)


def test_a_new_table_has_every_block_allocated(tmp_path: Path) -> None:
    table = _table(tmp_path / "t")
    table.open()
    st = os.stat(tmp_path / "t")
    assert st.st_size == HEADER_SIZE + 1024 * 64
    assert st.st_blocks * 512 >= st.st_size  # no hole left for a store to fill
    assert oct(st.st_mode & 0o777) == oct(0o600)
    table.close()


def test_a_sparse_table_of_ours_is_allocated_and_keeps_its_slots(tmp_path: Path) -> None:
    path = tmp_path / "claims"
    old = ClaimTable(path, slots=1024)
    assert old.claim(key_digest("ip:1", "k"), "Q1", 10.0, DAY, 600) is None
    old.close()
    # What a release before up-front allocation left: the same slots, holes between.
    data = path.read_bytes()
    path.unlink()
    with open(path, "wb") as f:
        f.truncate(len(data))
        for offset in range(0, len(data), 4096):
            page = data[offset:offset + 4096]
            if page.strip(b"\0"):
                f.seek(offset)
                f.write(page)
    assert os.stat(path).st_blocks * 512 < len(data)
    table = ClaimTable(path, slots=1024)
    held = table.lookup(key_digest("ip:1", "k"), 11.0)
    assert held is not None and held.queue_id == "Q1"
    assert os.stat(path).st_blocks * 512 >= len(data)
    table.close()


def test_a_table_laid_out_otherwise_starts_empty(tmp_path: Path) -> None:
    path = tmp_path / "t"
    path.write_bytes(struct.pack("<8sIIQ", b"GWOTHER1", 1024, 8, 0) + b"x" * 5000)
    table = _table(path)
    with table.locked() as mapped:
        assert mapped[:8] == b"GWTEST01"
        assert mapped[HEADER_SIZE:].count(0) == 1024 * 64
    assert table.evictions == 0
    table.close()


def _open_past_the_limit(path: str, out: multiprocessing.Queue[str]) -> None:
    # A file size limit stands in for a full disk: the allocation fails the same way
    # (an OSError at open), and the signal the limit would raise is ignored.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))
    counters = SharedRateCounters(Path(path))  # 4 MiB
    try:
        counters.acquire_now([("k", 1.0, 10)], 1.0)
    except OSError as exc:
        out.put(f"OSError {exc.errno}")
    else:
        out.put("opened")


def test_no_room_for_the_table_is_an_oserror_at_open(tmp_path: Path) -> None:
    out: multiprocessing.Queue[str] = multiprocessing.Queue()
    proc = multiprocessing.Process(target=_open_past_the_limit,
                                   args=(str(tmp_path / "rates"), out))
    proc.start()
    proc.join(timeout=30)
    assert proc.exitcode == 0  # not killed by a signal
    assert out.get(timeout=5).startswith("OSError")
