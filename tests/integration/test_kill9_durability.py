"""A 250 means the message survives kill -9: concurrent clients, SIGKILL mid-load, restart.

At-least-once is the contract: every message that got 250 must reach the sink;
duplicates (delivered, but killed before the delivery was filed) are counted
and reported, not failed.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.fixtures.gateway import GatewayProcess, write_config
from tests.fixtures.load import Clients, wait_arrived
from tests.fixtures.sink import Sink

CLIENTS = 8
KILL_AFTER = 150  # acknowledged messages before the kill


@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "intake-workers"])
def test_every_acknowledged_message_is_delivered_after_kill9(tmp_path: Path,
                                                             workers: int) -> None:
    """With intake workers, kill -9 hits the master: its workers lose their lifeline and
    exit, and what they acknowledged waits in incoming/ for the restarted master."""
    sink = Sink().start()
    config = write_config(tmp_path, sink.port, extra=f"intake_workers: {workers}\n")
    gw = GatewayProcess(config).start()
    clients = Clients(gw.port, CLIENTS).start()
    try:
        assert clients.wait_acked(KILL_AFTER), gw.output()
        gw.kill9()  # mid-load: sessions in DATA, files being written, deliveries in flight
        clients.stop()
        promised = clients.promised()
        gw.start()
        arrived = wait_arrived(sink, promised)
        print(f"acked={len(promised)} received={len(arrived.received)} "
              f"lost={len(arrived.lost)} duplicates={arrived.duplicates}")
        assert not arrived.lost, f"{len(arrived.lost)} acknowledged messages lost: " \
            f"{sorted(arrived.lost)[:10]}"
    finally:
        clients.stop()
        gw.stop_hard()
        sink.stop()


def test_kill9_during_delivery_loses_nothing(tmp_path: Path) -> None:
    """A slow destination keeps deliveries in flight (active/, DATA sent, no reply yet)
    when the gateway is killed: after the restart every acknowledged message arrives."""
    sink = Sink().start()
    sink.data_delay = 0.3
    config = write_config(tmp_path, sink.port)
    gw = GatewayProcess(config).start()
    clients = Clients(gw.port, 4, prefix="d").start()
    try:
        deadline = time.monotonic() + 60
        # Let some deliveries finish and many more start.
        while (len(clients.acked) < 60 or sink.count() < 5) and time.monotonic() < deadline:
            time.sleep(0.005)
        clients.stop()
        active = list((tmp_path / "var" / "spool" / "active").iterdir())
        at_kill = sink.count()
        gw.kill9()
        promised = clients.promised()
        assert active, "no delivery was in flight at the kill"
        assert at_kill < len(promised), "everything was delivered before the kill"
        sink.data_delay = 0.0
        gw.start()
        arrived = wait_arrived(sink, promised)
        print(f"acked={len(promised)} in_flight={len(active)} "
              f"received={len(arrived.received)} lost={len(arrived.lost)} "
              f"duplicates={arrived.duplicates}")
        assert not arrived.lost, f"{len(arrived.lost)} acknowledged messages lost: " \
            f"{sorted(arrived.lost)[:10]}"
    finally:
        clients.stop()
        gw.stop_hard()
        sink.stop()
