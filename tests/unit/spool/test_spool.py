from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from gateway.clock import ManualClock
from gateway.model import Client, Envelope, QueueState
from gateway.spool import Spool
from gateway.spool.store import decode_header

CONTENT = b"Subject: hi\r\n\r\nbody\r\n"


def envelope(*rcpts: str) -> Envelope:
    return Envelope("app@example.com", rcpts or ("guest@example.net",),
                    Client("relay", "127.0.0.1", 40000, "app.local"), 1_700_000_000.0,
                    message_id="<m1@example.com>")


async def open_spool(root: Path) -> Spool:
    spool = Spool(root, ManualClock())
    await spool.open()
    return spool


async def test_put_stores_a_durable_file_in_incoming(tmp_path: Path) -> None:
    spool = await open_spool(tmp_path)
    qm = await spool.put(envelope("a@x.test", "b@y.test"), CONTENT)
    path = tmp_path / "incoming" / qm.id
    raw = path.read_bytes()
    parsed, offset = decode_header(raw)
    assert parsed == qm
    assert raw[offset:] == CONTENT
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert list((tmp_path / "tmp").iterdir()) == []
    await spool.close()


async def test_concurrent_puts_are_grouped_and_all_land(tmp_path: Path) -> None:
    spool = await open_spool(tmp_path)
    qms = await asyncio.gather(*(spool.put(envelope(), CONTENT) for _ in range(200)))
    assert len({q.id for q in qms}) == 200
    # Group commit: 200 concurrent puts share directory fsyncs instead of one each.
    assert spool.files.commits <= 20, spool.files.commits
    assert sorted(spool.files.ids(QueueState.INCOMING)) == sorted(q.id for q in qms)
    await spool.close()


async def test_reconcile_after_a_crash(tmp_path: Path) -> None:
    from gateway.model import QueuedMessage
    from gateway.spool.store import encode_header

    spool = await open_spool(tmp_path)
    waiting, retrying, gone = [await spool.put(envelope(), CONTENT) for _ in range(3)]
    fresh = await spool.put(envelope(), CONTENT)
    for qm in (waiting, retrying, gone):  # these had failed once: deferred and indexed
        spool.files.move(qm.id, QueueState.INCOMING, QueueState.DEFERRED)
        spool.index.add(qm, QueueState.DEFERRED)
    await spool.index.flush()
    # The crash: one retry was mid-delivery, one was delivered but its row survived.
    spool.files.move(retrying.id, QueueState.DEFERRED, QueueState.ACTIVE)
    spool.files.remove(gone.id, QueueState.DEFERRED)
    await spool.close()
    # ...and a deferred file whose row was never written, a half-written tmp file,
    # and a deferred file that is garbage.
    orphan = QueuedMessage("01JD5Q8W3K7H2M9XQ4RT", envelope("new@z.test"), len(CONTENT))
    (tmp_path / "deferred" / orphan.id).write_bytes(encode_header(orphan) + CONTENT)
    (tmp_path / "tmp" / "01JD5Q8W3K7H2M9XQ4RV").write_bytes(b"SGW1\n{half")
    (tmp_path / "deferred" / "01JD5Q8W3K7H2M9XQ4RW").write_bytes(b"garbage")

    spool = await open_spool(tmp_path)
    assert await spool.index.states() == {
        waiting.id: QueueState.DEFERRED, retrying.id: QueueState.INCOMING,
        orphan.id: QueueState.DEFERRED,
    }
    assert spool.files.find(retrying.id) is QueueState.INCOMING  # active/ → incoming/
    assert spool.files.find(fresh.id) is QueueState.INCOMING  # new mail stays unindexed
    assert list((tmp_path / "tmp").iterdir()) == []
    assert spool.files.find("01JD5Q8W3K7H2M9XQ4RW") is QueueState.CORRUPT
    recipients = await spool.index.recipients(orphan.id)
    assert [r.address for r in recipients] == ["new@z.test"]
    await spool.close()


async def test_start_up_with_many_queued_messages_is_fast(tmp_path: Path) -> None:
    spool = await open_spool(tmp_path)
    await asyncio.gather(*(spool.put(envelope(), CONTENT) for _ in range(2000)))
    await spool.close()
    spool = Spool(tmp_path, ManualClock())
    recovery = await spool.open()
    assert recovery.queued == {QueueState.INCOMING: 2000}
    assert recovery.reindexed == 0  # the index was intact: nothing re-read
    await spool.close()


@pytest.mark.parametrize("state", [QueueState.DEFERRED, QueueState.HOLD])
async def test_move_reports_a_file_that_is_gone(tmp_path: Path, state: QueueState) -> None:
    spool = await open_spool(tmp_path)
    qm = await spool.put(envelope(), CONTENT)
    assert spool.files.move(qm.id, QueueState.INCOMING, state)
    assert not spool.files.move(qm.id, QueueState.INCOMING, state)
    assert spool.files.find(qm.id) is state
    await spool.close()
