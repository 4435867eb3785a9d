"""kill -9 of the whole gateway (master and intake workers) under load, three times:
nothing acknowledged is lost, and each crash repeats at most the deliveries that were
in flight — never more than `delivery.max_concurrency` extra copies per crash.

Before the delivery journal (gateway/scheduler/journal.py) a delivered message
stayed in active/ until the event store's next flush, and each crash re-sent
hundreds of them (issue 15). To make that window wide and certain, each kill
comes while another connection holds state.db's write lock (as a long admin
query or a retention purge can): the event store cannot commit, deliveries
go on, and the test checks that enough of them finished meanwhile for the old
behaviour to exceed the bound.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.fixtures.gateway import GatewayProcess, write_config
from tests.fixtures.load import Clients, wait_arrived
from tests.fixtures.sink import Sink

CLIENTS = 8
CRASHES = 3
MAX_CONCURRENCY = 10
ACKED_BEFORE_KILL = 120  # acknowledged messages between two kills


@contextmanager
def event_store_locked(path: Path) -> Iterator[None]:
    conn = sqlite3.connect(path, timeout=10, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield
        conn.execute("ROLLBACK")
    finally:
        conn.close()


def queue_empty(spool: Path) -> bool:
    return not any(any((spool / state).iterdir())
                   for state in ("incoming", "active", "deferred"))


def test_kill9_repeats_only_deliveries_in_flight(tmp_path: Path) -> None:
    sink = Sink().start()
    config = write_config(tmp_path, sink.port, extra="intake_workers: 2\n")
    config.write_text(config.read_text().replace(
        "delivery:\n", f"delivery:\n  max_concurrency: {MAX_CONCURRENCY}\n", 1))
    gw = GatewayProcess(config).start()
    spool = tmp_path / "var" / "spool"
    clients = Clients(gw.port, CLIENTS, limit=400).start()
    extra_per_crash = []
    try:
        duplicates_before = 0
        for crash in range(CRASHES):
            target = len(clients.acked) + ACKED_BEFORE_KILL
            assert clients.wait_acked(target), \
                f"crash {crash}: {len(clients.acked)} of {target} acknowledged"
            with event_store_locked(tmp_path / "var" / "state.db"):
                before = sink.count()
                deadline = time.monotonic() + 30
                while sink.count() < before + 3 * MAX_CONCURRENCY and time.monotonic() < deadline:
                    time.sleep(0.005)
                # Delivered while the events could not be stored: all would be re-sent
                # if a delivery waited for its events before its queue file went.
                assert sink.count() >= before + 3 * MAX_CONCURRENCY, gw.output()[-3000:]
                assert gw.kill9(whole=True) == 3
            if crash == CRASHES - 1:
                clients.stop()
            promised = clients.promised()
            gw.start()
            # Everything acknowledged arrives, and the queue empties (the redeliveries of
            # what was in flight are done), before the next crash is counted.
            arrived = wait_arrived(sink, promised, also=lambda: queue_empty(spool))
            assert not arrived.lost, f"{len(arrived.lost)} acknowledged messages lost: " \
                f"{sorted(arrived.lost)[:10]}"
            extra_per_crash.append(arrived.duplicates - duplicates_before)
            duplicates_before = arrived.duplicates
        print(f"acked={len(clients.acked)} received={sum(arrived.received.values())} "
              f"extra copies per crash={extra_per_crash}")
        assert all(n <= MAX_CONCURRENCY for n in extra_per_crash), extra_per_crash
        journal = spool / "journal"
        assert journal.is_dir()
    finally:
        clients.stop()
        gw.stop_hard()
        sink.stop()
