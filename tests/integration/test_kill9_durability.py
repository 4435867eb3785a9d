"""A 250 means the message survives kill -9: concurrent clients, SIGKILL mid-load, restart.

At-least-once is the contract: every message that got 250 must reach the sink;
duplicates (delivered, but killed before the delivery was filed) are counted
and reported, not failed.
"""

from __future__ import annotations

import smtplib
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.fixtures.gateway import GatewayProcess, write_config
from tests.fixtures.sink import Sink

CLIENTS = 8
KILL_AFTER = 150  # acknowledged messages before the kill
PER_CLIENT_LIMIT = 200  # every loop is bounded


def client(port: int, name: str, acked: list[str], lock: threading.Lock,
           stop: threading.Event) -> None:
    for i in range(PER_CLIENT_LIMIT):
        if stop.is_set():
            return
        tag = f"{name}-{i}"
        msg = (f"From: app@example.com\r\nTo: guest@example.net\r\nSubject: {tag}\r\n"
               f"X-Seq: {tag}\r\n\r\nbooking {tag}\r\n")
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
                s.sendmail("app@example.com", ["guest@example.net"], msg)
        except (OSError, smtplib.SMTPException):
            continue  # no 250: the client would retry; not our promise
        with lock:
            acked.append(tag)


def tags_at_sink(sink: Sink) -> Counter[str]:
    out: Counter[str] = Counter()
    for m in sink.messages:
        for line in m.data.split(b"\r\n"):
            if line.startswith(b"X-Seq: "):
                out[line[7:].decode()] += 1
    return out


@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "intake-workers"])
def test_every_acknowledged_message_is_delivered_after_kill9(tmp_path: Path,
                                                             workers: int) -> None:
    """With intake workers, kill -9 hits the master: its workers lose their lifeline and
    exit, and what they acknowledged waits in incoming/ for the restarted master."""
    sink = Sink().start()
    config = write_config(tmp_path, sink.port, extra=f"intake_workers: {workers}\n")
    gw = GatewayProcess(config).start()
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    threads = [threading.Thread(target=client, args=(gw.port, f"c{n}", acked, lock, stop))
               for n in range(CLIENTS)]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while len(acked) < KILL_AFTER and time.monotonic() < deadline:
            time.sleep(0.005)
        assert len(acked) >= KILL_AFTER, gw.output()
        gw.kill9()  # mid-load: sessions in DATA, files being written, deliveries in flight
        stop.set()
        for t in threads:
            t.join(timeout=30)
        with lock:
            promised = set(acked)
        gw.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not promised <= set(tags_at_sink(sink)):
            time.sleep(0.05)
        received = tags_at_sink(sink)
        lost = promised - set(received)
        duplicates = sum(n - 1 for n in received.values() if n > 1)
        print(f"acked={len(promised)} received={len(received)} lost={len(lost)} "
              f"duplicates={duplicates}")
        assert not lost, f"{len(lost)} acknowledged messages lost: {sorted(lost)[:10]}"
    finally:
        stop.set()
        gw.stop_hard()
        sink.stop()


def test_kill9_during_delivery_loses_nothing(tmp_path: Path) -> None:
    """A slow destination keeps deliveries in flight (active/, DATA sent, no reply yet)
    when the gateway is killed: after the restart every acknowledged message arrives."""
    sink = Sink().start()
    sink.data_delay = 0.3
    config = write_config(tmp_path, sink.port)
    gw = GatewayProcess(config).start()
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    threads = [threading.Thread(target=client, args=(gw.port, f"d{n}", acked, lock, stop))
               for n in range(4)]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        # Let some deliveries finish and many more start.
        while (len(acked) < 60 or sink.count() < 5) and time.monotonic() < deadline:
            time.sleep(0.005)
        stop.set()
        for t in threads:
            t.join(timeout=30)
        active = list((tmp_path / "var" / "spool" / "active").iterdir())
        at_kill = sink.count()
        gw.kill9()
        with lock:
            promised = set(acked)
        assert active, "no delivery was in flight at the kill"
        assert at_kill < len(promised), "everything was delivered before the kill"
        sink.data_delay = 0.0
        gw.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not promised <= set(tags_at_sink(sink)):
            time.sleep(0.05)
        received = tags_at_sink(sink)
        lost = promised - set(received)
        duplicates = sum(n - 1 for n in received.values() if n > 1)
        print(f"acked={len(promised)} in_flight={len(active)} received={len(received)} "
              f"lost={len(lost)} duplicates={duplicates}")
        assert not lost, f"{len(lost)} acknowledged messages lost: {sorted(lost)[:10]}"
    finally:
        stop.set()
        gw.stop_hard()
        sink.stop()
