"""The only smarthost is down for a day; when it is back, the queue drains in priority
order: booking confirmations first, though the newsletter was queued before them."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from gateway.clock import ManualClock
from gateway.model import QueueState
from tests.fixtures.gateway import running_gateway, write_config
from tests.fixtures.policy import write_policy
from tests.fixtures.sink import Sink
from tests.integration.test_priority_backlog import CONSENT
from tests.integration.test_queue_cli import cli
from tests.integration.test_relay_end_to_end import send


def message(category: str, n: int) -> str:
    return (f"From: App <app@example.com>\r\nTo: x@example.net\r\nSubject: {category} {n}\r\n"
            f"X-Gateway-Category: {category}\r\nMessage-ID: <{category}-{n}@example.com>\r\n"
            "\r\nHello.\r\n")


async def test_queue_drains_in_priority_order_after_an_outage(tmp_path: Path) -> None:
    sink = Sink().start()
    port = sink.port
    sink.stop()  # the provider is down: connections refused
    write_policy(tmp_path, "consent.yaml", CONSENT)
    config = write_config(tmp_path, port, route=f"""\
routes:
  - name: sink
    type: smarthost
    smarthosts:
      - {{name: sink, host: 127.0.0.1, port: {port}, tls: none, max_connections: 1}}
    retry: {{delays: [1m], repeat: 10m}}
""")
    clock = ManualClock()
    back: Sink | None = None
    try:
        async with running_gateway(config, clock) as gw:
            relay = gw.ports["relay"]
            ids = [await send(relay, [f"reader{i}@example.net"], message("marketing", i))
                   for i in range(8)]
            ids += [await send(relay, [f"guest{i}@example.net"], message("booking", i))
                    for i in range(2)]
            for queue_id in ids:
                for _ in range(300):
                    if gw.spool.files.find(queue_id) is QueueState.DEFERRED:
                        break
                    await asyncio.sleep(0.01)
                assert gw.spool.files.find(queue_id) is QueueState.DEFERRED
            # The operator sees why the queue will drain in this order.
            rc, out, _ = await cli(config, "queue", "list", "--json")
            assert rc == 0
            assert {r["id"]: r["priority"] for r in json.loads(out)} == {
                **{q: "low" for q in ids[:8]}, **{q: "critical" for q in ids[8:]}}
            rc, out, _ = await cli(config, "queue", "list")
            assert rc == 0 and "PRIORITY" in out.splitlines()[0]
            assert sum(" critical " in line for line in out.splitlines()) == 2
            for _ in range(6):  # a day of failed retries, every ten minutes
                clock.advance(4 * 3600)
                await asyncio.sleep(0.05)
            back = Sink(port=port).start()
            clock.advance(3600)  # the next retry (and the breaker's probe) finds it back
            got = await back.await_for(10)
            order = [m.rcpt_tos[0].split("@")[0] for m in got]
            assert order[:2] == ["guest0", "guest1"] or order[:2] == ["guest1", "guest0"], order
            assert sorted(order[2:]) == [f"reader{i}" for i in range(8)]
    finally:
        if back is not None:
            back.stop()
