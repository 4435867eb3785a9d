"""The webhook outbox survives kill -9: the gateway is killed while its (slow) receiver
is halfway through the backlog, restarted, and more mail flows; every event in
state.db reaches the receiver. Duplicates (a batch sent, the gateway killed
before its cursor moved) are allowed, counted and reported."""

from __future__ import annotations

import smtplib
import sqlite3
import textwrap
import time
from pathlib import Path

from tests.fixtures.gateway import GatewayProcess, write_config
from tests.fixtures.sink import Sink
from tests.fixtures.webhook_receiver import Receiver

SECRET = "webhook-secret-for-the-kill-test"
FIRST, SECOND = 30, 10  # messages before the kill, after the restart


def send(port: int, tags: range) -> list[str]:
    """One message per tag; the queue ids from the 250 replies."""
    ids = []
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.ehlo("app.test")
        for n in tags:
            s.mail("app@example.com")
            s.rcpt(f"guest{n}@example.net")
            code, text = s.data(f"Subject: booking {n}\r\n\r\nbooking {n}\r\n".encode())
            assert code == 250, text
            ids.append(text.decode().rsplit(" ", 1)[1])
    return ids


def stored_event_ids(state_db: Path) -> set[int]:
    conn = sqlite3.connect(state_db)
    try:
        return {int(r[0]) for r in conn.execute(
            "SELECT seq FROM events WHERE type IN ('accepted', 'delivered')")}
    finally:
        conn.close()


def wait(cond: object, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_no_event_is_lost_when_the_gateway_is_killed_mid_backlog(tmp_path: Path) -> None:
    receiver = Receiver(SECRET).start()
    receiver.delay = 0.15  # a slow receiver: the backlog outlives the kill
    sink = Sink().start()
    (tmp_path / "hook.secret").write_text(SECRET)
    (tmp_path / "hook.secret").chmod(0o600)  # secrets are refused when others may read them
    config = write_config(tmp_path, sink.port, extra=textwrap.dedent(f"""\
        intake_workers: 2
        webhooks:
          - name: app
            url: {receiver.url}
            secret_file: hook.secret
            events: [accepted, delivered]
            batch_size: 4
            poll_interval: 50ms
            retry_initial: 100ms
            retry_max: 500ms
        """))
    state_db = tmp_path / "var" / "state.db"
    gw = GatewayProcess(config).start()
    try:
        queue_ids = send(gw.port, range(FIRST))
        sink.wait_for(FIRST)
        # Every event of the first round is in state.db before the kill.
        wait(lambda: len(stored_event_ids(state_db)) == 2 * FIRST, "events in state.db")
        wait(lambda: len(receiver.batches) >= 2, "the first batches")
        gw.kill9()
        before_kill = len(receiver.events())
        assert before_kill < 2 * FIRST, "the receiver had everything before the kill"
        gw.start()
        queue_ids += send(gw.port, range(FIRST, FIRST + SECOND))
        sink.wait_for(FIRST + SECOND)
        wait(lambda: len(stored_event_ids(state_db)) == 2 * (FIRST + SECOND),
             "events in state.db")
        stored = stored_event_ids(state_db)
        receiver.wait_events(lambda ev: {int(e["id"]) for e in ev} >= stored)
    finally:
        gw.stop_hard()
        sink.stop()
        receiver.stop()
    receiver.assert_each_stored_event_arrived(stored, before_kill)
    delivered = {e["queue_id"] for e in receiver.of_type("delivered")}
    assert delivered == set(queue_ids)
