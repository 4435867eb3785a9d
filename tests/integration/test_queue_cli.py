"""`smtp-gateway queue …` against a running gateway's spool (another process, like postsuper)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from gateway.model import QueueState
from tests.fixtures.gateway import running_gateway, write_config
from tests.fixtures.sink import Sink
from tests.integration.test_relay_end_to_end import send


async def cli(config: Path, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", *args, "-c", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def until(predicate: object, timeout: float = 20) -> None:
    for _ in range(int(timeout / 0.02)):
        if predicate():  # type: ignore[operator]
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


async def test_list_show_hold_release_retry_delete(tmp_path: Path) -> None:
    sink = Sink().start()
    sink.replies["later@example.net"] = "451 4.3.0 Try again later"
    config = write_config(tmp_path, sink.port, extra="retry:\n  delays: [1h]\n",
                          route="routes:\n  - name: sink\n    type: smarthost\n    smarthosts:\n"
                                f"      - {{host: 127.0.0.1, port: {sink.port}, tls: none}}\n")
    try:
        async with running_gateway(config) as gw:
            qid = await send(gw.ports["relay"], ["later@example.net"])
            await until(lambda: gw.spool.files.find(qid) is QueueState.DEFERRED)

            rc, out, _ = await cli(config, "queue", "list", "--json")
            (row,) = json.loads(out)
            assert (row["id"], row["state"], row["attempts"]) == (qid, "deferred", 1)
            assert row["recipients"][0]["last_reply"] == "451 4.3.0 Try again later"
            rc, out, _ = await cli(config, "queue", "list", "--state", "hold", "--json")
            assert json.loads(out) == []
            rc, out, _ = await cli(config, "queue", "list", "--route", "sink", "--json")
            assert len(json.loads(out)) == 1

            rc, out, _ = await cli(config, "queue", "show", qid, "--json")
            shown = json.loads(out)
            assert [e["type"] for e in shown["events"]] == ["accepted", "deferred"]

            rc, out, _ = await cli(config, "queue", "hold", qid)
            assert rc == 0 and gw.spool.files.find(qid) is QueueState.HOLD
            rc, out, err = await cli(config, "queue", "retry", qid)
            assert rc == 1 and "release it" in err
            rc, out, _ = await cli(config, "queue", "show", qid, "--json")
            assert json.loads(out)["recipients"][0]["state"] == "held"

            del sink.replies["later@example.net"]
            rc, out, _ = await cli(config, "queue", "release", qid)
            assert rc == 0, out
            await sink.await_for(1)  # released → due now → delivered, without the 1 h wait
            await until(lambda: gw.spool.files.find(qid) is None)

            sink.replies["stuck@example.net"] = "451 4.3.0 Try again later"
            qid2 = await send(gw.ports["relay"], ["stuck@example.net"])
            await until(lambda: gw.spool.files.find(qid2) is QueueState.DEFERRED)
            del sink.replies["stuck@example.net"]
            rc, out, _ = await cli(config, "queue", "retry", qid2)
            assert rc == 0 and "immediate" in out
            await sink.await_for(2)

            sink.replies["doomed@example.net"] = "451 4.3.0 Try again later"
            qid3 = await send(gw.ports["relay"], ["doomed@example.net"])
            await until(lambda: gw.spool.files.find(qid3) is QueueState.DEFERRED)
            rc, out, _ = await cli(config, "queue", "delete", qid3)
            assert rc == 0 and gw.spool.files.find(qid3) is None
            rc, out, _ = await cli(config, "queue", "show", qid3, "--json")
            assert rc == 1 and json.loads(out)["error"]["code"] == "not_found"
            events = [e.type.value for e in await gw.state.events.by_queue_id(qid3)]
            assert events[-1] == "deleted"
            rc, _, err = await cli(config, "queue", "show", "../../etc/passwd")
            assert rc == 1 and "not a queue id" in err
    finally:
        sink.stop()
