"""The spool's filesystem fills up: intake answers 452 4.3.1, the spool stays
sound, mail queued before is still delivered, and intake accepts again once
space returns.

The data directory is a small tmpfs mounted by the test (needs root; skipped
otherwise) and always unmounted afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.clock import ManualClock
from gateway.model import QueueState
from gateway.spool.store import decode_header
from gateway.supervisor import Gateway
from tests.fixtures.gateway import running_gateway, write_config
from tests.fixtures.intake import RawClient
from tests.fixtures.sink import Sink


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    # A missing feature must fail, not skip: the suite runs as root (CI, the README's command).
    assert os.geteuid() == 0, "the disk-full test mounts a tmpfs: run the suite as root"
    mountpoint = tmp_path / "var"
    mountpoint.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs",
                    str(mountpoint)], check=True)
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=True)


def fill(directory: Path) -> Path:
    """Write a file until the filesystem is full; returns it (delete it to free the space)."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 512, 1):  # big writes, then what fits in the last pages
            for _ in range(100_000):  # bounded: far more than the tmpfs holds
                try:
                    os.write(fd, b"\0" * size)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
            else:
                raise AssertionError("the filesystem never filled up")
    finally:
        os.close(fd)
    return filler


def send(port: int, tag: str, size: int = 0) -> str:
    """One message over a raw session; returns the reply to the end of DATA."""
    with RawClient(port) as raw:
        raw.greeting()
        raw.command("EHLO app.example")
        assert raw.command("MAIL FROM:<app@example.com>").startswith("250")
        assert raw.command("RCPT TO:<guest@example.net>").startswith("250")
        assert raw.command("DATA").startswith("354")
        body = b"x" * 70 + b"\r\n"
        raw.send(f"Subject: {tag}\r\nX-Seq: {tag}\r\n\r\n".encode()
                 + body * (size // len(body)) + b"\r\n.\r\n")
        reply = raw.reply()
        raw.command("QUIT")
        return reply


def tags(sink: Sink) -> list[str]:
    return [line[7:].decode() for m in sink.messages for line in m.data.split(b"\r\n")
            if line.startswith(b"X-Seq: ")]


async def until(predicate: object, clock: ManualClock, timeout: float = 20.0) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        clock.advance(5.0)
        await asyncio.sleep(0.02)


async def wait_deferred(gw: Gateway, count: int) -> None:
    deadline = time.monotonic() + 10
    while len(gw.spool.files.ids(QueueState.DEFERRED)) < count:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)


async def test_disk_full_gives_452_and_recovers(tmp_path: Path, small_fs: Path) -> None:
    sink = Sink().start()
    sink.data_reply = "451 4.3.0 not now"  # queued mail waits in deferred/
    clock = ManualClock()
    try:
        async with running_gateway(write_config(tmp_path, sink.port), clock) as gw:
            port = gw.ports["relay"]
            spool = gw.spool.root
            assert (await asyncio.to_thread(send, port, "before")).startswith("250 ")
            await wait_deferred(gw, 1)
            await gw.spool.index.flush()
            # A second message is still being delivered (slowly) when the disk fills:
            # its deferral has to be recorded while nothing can be written.
            sink.data_delay = 0.5
            assert (await asyncio.to_thread(send, port, "in-flight")).startswith("250 ")
            await asyncio.sleep(0.1)

            filler = fill(small_fs)
            for i, size in enumerate((0, 100_000)):
                reply = await asyncio.to_thread(send, port, f"full-{i}", size)
                assert reply.startswith("452 4.3.1 "), reply
            await wait_deferred(gw, 2)
            # Nothing half-written is left behind, and nothing was quarantined.
            assert list((spool / "tmp").iterdir()) == []
            assert gw.spool.files.ids(QueueState.CORRUPT) == []
            for state in (QueueState.INCOMING, QueueState.DEFERRED):
                for queue_id in gw.spool.files.ids(state):
                    decode_header(gw.spool.files.path(queue_id, state).read_bytes())

            # Mail queued before the disk filled is still delivered meanwhile.
            sink.data_reply = None
            sink.data_delay = 0.0
            await until(lambda: "before" in tags(sink), clock)

            filler.unlink()
            assert (await asyncio.to_thread(send, port, "after")).startswith("250 ")
            await until(lambda: {"after", "in-flight"} <= set(tags(sink)), clock)
            assert sorted(tags(sink)) == ["after", "before", "in-flight"]
            assert gw.spool.files.ids(QueueState.CORRUPT) == []
            with contextlib.closing(sqlite3.connect(spool / "queue.db")) as db:
                assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        sink.stop()
