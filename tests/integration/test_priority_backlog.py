"""A booking confirmation overtakes a newsletter backlog: real gateway, real SMTP, slow sink.

The backlog is written into the spool before the gateway starts (the quickest way
to have a thousand low-priority messages waiting); the critical message comes in
over SMTP and is classified by the policy stage (X-Gateway-Category: booking).
Order at the sink is what counts, never wall-clock time.
"""

from __future__ import annotations

from pathlib import Path

from gateway.clock import SystemClock
from gateway.model import Client, Envelope, Priority
from gateway.spool import Spool
from tests.fixtures.gateway import running_gateway, write_config
from tests.fixtures.policy import write_policy
from tests.fixtures.sink import Sink
from tests.integration.test_relay_end_to_end import send

BACKLOG = 600
CONSENT = """\
    categories:
      transactional: {basis: contract}
      booking: {basis: contract}
      marketing: {basis: legitimate_interest}
    default: transactional
"""
CRITICAL = (
    "From: Booking <app@example.com>\r\nTo: guest@example.net\r\nSubject: Booking 42\r\n"
    "X-Gateway-Category: booking\r\nMessage-ID: <booking-42@example.com>\r\n\r\nSee you.\r\n"
)


async def seed_backlog(spool_dir: Path, count: int) -> None:
    spool = Spool(spool_dir, SystemClock(), fsync=False)
    await spool.open()
    try:
        for i in range(count):
            env = Envelope("news@example.com", (f"reader{i}@example.net",),
                           Client("relay", "127.0.0.1"), SystemClock().now(),
                           message_id=f"<news-{i}@example.com>", category="marketing",
                           priority=Priority.LOW)
            await spool.put(env, f"Subject: News {i}\r\n\r\nOffers.\r\n".encode())
    finally:
        await spool.close()


async def test_critical_message_is_delivered_before_the_backlog_drains(tmp_path: Path
                                                                        ) -> None:
    sink = Sink().start()
    sink.data_delay = 0.05  # ten sessions: about 200 messages a second at most
    write_policy(tmp_path, "consent.yaml", CONSENT)
    config = write_config(tmp_path, sink.port, route=f"""\
routes:
  - name: sink
    type: smarthost
    smarthosts:
      - {{name: sink, host: 127.0.0.1, port: {sink.port}, tls: none, max_connections: 10}}
""")
    await seed_backlog(tmp_path / "var" / "spool", BACKLOG)
    try:
        async with running_gateway(config) as gw:
            await sink.await_for(20)  # the backlog is draining
            queue_id = await send(gw.ports["relay"], ["guest@example.net"], CRITICAL)
            got = await sink.await_for(BACKLOG + 1, timeout=60)
            position = next(i for i, m in enumerate(got) if m.rcpt_tos == ["guest@example.net"])
            after = len(got) - position - 1
            assert after >= BACKLOG // 2, f"critical arrived {position}th, {after} after it"
            assert queue_id.encode() in got[position].data
            assert b"X-Gateway-Category" not in got[position].data
            # Nothing lost, nothing twice.
            readers = sorted(r for m in got for r in m.rcpt_tos if r.startswith("reader"))
            assert readers == sorted(f"reader{i}@example.net" for i in range(BACKLOG))
    finally:
        sink.stop()


async def test_reload_applies_new_priorities_and_idempotency_settings(tmp_path: Path) -> None:
    sink = Sink().start()
    config = write_config(tmp_path, sink.port)
    try:
        async with running_gateway(config) as gw:
            assert gw.acceptor.priorities.of("marketing") is Priority.LOW
            assert gw.acceptor.idempotency is not None
            config.write_text(config.read_text() + (
                "priorities:\n  categories: {marketing: normal}\n"
                "  lanes: {low: {share: 30%, rate: 10/s}}\n"
                "idempotency: {enabled: false}\n"))
            assert gw.reload()
            assert gw.acceptor.priorities.of("marketing") is Priority.NORMAL
            assert gw.acceptor.idempotency is None
            lanes = gw.scheduler.config.priority_lanes
            assert (lanes[Priority.LOW].share, lanes[Priority.LOW].rate) == (0.3, 10.0)
    finally:
        sink.stop()
