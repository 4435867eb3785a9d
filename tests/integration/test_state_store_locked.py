"""The state store locked by another process or unreadable: a clear error, 451 4.3.0,
no crash, and recovery once the lock is gone; everything answered 250 is delivered.

The lock is real: a separate `python -c` process opens the database file and holds
its write lock (BEGIN IMMEDIATE), as an operator's forgotten sqlite3 shell would.
Each refused command waits out the store's 10 s busy timeout first.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.supervisor import Gateway
from tests.fixtures.gateway import running_gateway, write_config
from tests.fixtures.sink import Sink
from tests.integration.test_idempotency import asubmit

_LOCKER = """
import sqlite3, sys
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.read()  # hold it until the test closes our stdin
"""


@contextmanager
def locked(path: Path) -> Iterator[None]:
    proc = subprocess.Popen([sys.executable, "-c", _LOCKER, str(path)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        assert proc.stdout.readline() == b"locked\n"
        yield
    finally:
        proc.stdin.close()
        proc.wait(10)
        proc.stdout.close()


@pytest.mark.slow
async def test_a_locked_idempotency_db_holds_no_message(tmp_path: Path) -> None:
    """Claims live in the node's shared table (gateway.state.idempotency_table);
    idempotency.db is written behind. So another process holding its write lock
    delays only that write: DATA is answered, a resend meanwhile is recognised, and
    the key reaches idempotency.db once the lock goes."""
    sink = Sink().start()
    try:
        async with running_gateway(write_config(tmp_path, sink.port)) as gw:
            port = gw.ports["relay"]
            code, before = await asubmit(port)  # opens idempotency.db
            assert code == 250
            with locked(tmp_path / "var" / "idempotency.db"):
                code, after = await asubmit(port, rcpts=("third@example.net",))
                assert code == 250
                assert await asubmit(port, rcpts=("third@example.net",)) == (250, after)
            got = await sink.await_for(2)
            assert sorted(r for m in got for r in m.rcpt_tos) == [
                "guest@example.net", "third@example.net"]
            queue_id = after.rsplit(" ", 1)[-1]
            for _ in range(300):  # the write behind, retried once the lock is gone
                with sqlite3.connect(tmp_path / "var" / "idempotency.db") as db:
                    rows = db.execute("SELECT stored FROM idempotency_keys WHERE queue_id = ?",
                                      (queue_id,)).fetchall()
                if rows:
                    break
                await asyncio.sleep(0.02)
            assert rows == [(1,)]
            await asyncio.sleep(0.2)
            assert sink.count() == 2 and before != after
    finally:
        sink.stop()


async def test_unreadable_state_file_gives_451_then_recovers(tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture
                                                            ) -> None:
    sink = Sink().start()
    data = tmp_path / "var"
    data.mkdir()
    # e.g. overwritten by a bad restore (opened on first use, so the gateway starts)
    (data / "idempotency.db").write_bytes(b"this is not a database\n" * 100)
    try:
        async with running_gateway(write_config(tmp_path, sink.port)) as gw:
            port = gw.ports["relay"]
            code, text = await asubmit(port)  # DATA: the idempotency claim fails
            assert (code, text.split(" ")[0]) == (451, "4.3.0")
            assert "idempotency.db unavailable (file is not a database)" in caplog.text
            (data / "idempotency.db").unlink()
            code, queue_id = await asubmit(port)
            assert code == 250
            (got,) = await sink.await_for(1)
            assert queue_id.encode() in got.data
            errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
            assert all(r.exc_info is None for r in errors), "a clear line, not a traceback"
    finally:
        sink.stop()


@pytest.mark.slow
async def test_state_db_locked_at_start_the_gateway_waits_instead_of_exiting(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    sink = Sink().start()
    config = write_config(tmp_path, sink.port)
    data = tmp_path / "var"
    data.mkdir()
    gw = Gateway(load_config(config))
    try:
        with locked(data / "state.db"):
            start = asyncio.create_task(gw.start())
            for _ in range(600):  # the first try waits out SQLite's busy timeout
                if "state store" in caplog.text and "trying again" in caplog.text:
                    break
                await asyncio.sleep(0.05)
            assert "database is locked" in caplog.text and not start.done()
        await asyncio.wait_for(start, 60)  # the lock is gone: it starts
        code, queue_id = await asubmit(gw.ports["relay"])
        assert code == 250
        (got,) = await sink.await_for(1)
        assert queue_id.encode() in got.data
    finally:
        await gw.stop()
        sink.stop()
