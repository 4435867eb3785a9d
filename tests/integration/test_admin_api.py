"""The admin API over real HTTP connections to a running gateway: authentication, JSON
errors for every kind of bad request, and each endpoint's behaviour."""

from __future__ import annotations

import asyncio
import json
import os
import smtplib
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from gateway.model import QueueState
from gateway.spool.queue_id import new_queue_id
from gateway.supervisor import Gateway
from tests.fixtures.admin import TOKEN, Api, ApiResult, admin_section
from tests.fixtures.gateway import running_gateway, write_config
from tests.fixtures.policy import write_policy
from tests.fixtures.sink import Sink
from tests.integration.test_queue_cli import until
from tests.integration.test_relay_end_to_end import send
from tests.integration.test_spool_disk_full import fill

SINK_ROUTE = "sink"


def config_for(tmp_path: Path, sink: Sink, extra: str = "") -> Path:
    return write_config(tmp_path, sink.port, extra=admin_section(tmp_path, extra=extra))


def api_for(gw: Gateway, token: str | None = TOKEN) -> Api:
    assert gw.admin is not None
    return Api(gw.admin.port, token)


def assert_error(result: ApiResult, status: int, code: str) -> None:
    assert result.status == status, result
    assert result.headers["Content-Type"].startswith("application/json"), result.headers
    assert result.error_code == code, result.text
    assert isinstance(result.json["error"]["message"], str) and result.json["error"]["message"]


async def test_authentication_and_errors(tmp_path: Path) -> None:
    sink = Sink().start()
    try:
        async with running_gateway(config_for(tmp_path, sink, "max_body: 1KiB\n")) as gw:
            api = api_for(gw)
            anonymous = api_for(gw, None)
            for path in ("/healthz", "/readyz", "/openapi.json"):
                assert (await anonymous.get(path)).status == 200, path
            metrics = await anonymous.get("/metrics")
            assert metrics.status == 200
            # The classic text format, which every Prometheus 2.x parses (gateway.metrics).
            assert metrics.headers["Content-Type"] == CONTENT_TYPE_PLAIN_0_0_4
            assert "# TYPE" in metrics.text

            missing = await anonymous.get("/v1/queue")
            assert_error(missing, 401, "unauthorized")
            assert missing.headers["WWW-Authenticate"].startswith("Bearer")
            assert_error(await api.get("/v1/queue", token="not-the-token"), 401, "unauthorized")
            assert_error(await anonymous.get("/v1/queue", headers={
                "Authorization": f"Basic {TOKEN}"}), 401, "unauthorized")
            assert_error(await api.get("/v1/queue", token=TOKEN + "x"), 401, "unauthorized")
            assert (await api.get("/v1/queue")).status == 200

            assert_error(await api.get("/v1/nothing-here"), 404, "not_found")
            assert_error(await anonymous.get("/v1/nothing-here"), 404, "not_found")
            wrong_method = await api.call("PUT", "/v1/queue")
            assert_error(wrong_method, 405, "method_not_allowed")
            assert wrong_method.headers["Allow"] == "GET"

            assert_error(await api.post("/v1/suppressions", data="{not json"), 400, "bad_json")
            assert_error(await api.post("/v1/suppressions", data=b""), 400, "bad_json")
            assert_error(await api.post("/v1/suppressions", data="[1, 2]"), 400, "bad_json")
            assert_error(await api.post("/v1/suppressions", data=b"\xff\xfe"), 400, "bad_json")
            assert_error(await api.post("/v1/suppressions", json_body={
                "target": "a@example.net", "colour": "red"}), 422, "invalid")
            big = {"target": "a@example.net", "note": "x" * 2000}
            assert_error(await api.post("/v1/suppressions", json_body=big), 413,
                         "body_too_large")
            assert_error(await api.get("/v1/queue?limit=0"), 400, "bad_parameter")
            assert_error(await api.get("/v1/queue?limit=many"), 400, "bad_parameter")
            assert_error(await api.get("/v1/queue?state=lost"), 400, "bad_parameter")
            assert not (await api.get("/v1/audit")).json["items"]  # nothing was written
    finally:
        sink.stop()


async def test_without_a_token_only_the_public_endpoints_answer(tmp_path: Path) -> None:
    sink = Sink().start()
    config = write_config(tmp_path, sink.port, extra="admin:\n  port: 0\n")
    try:
        async with running_gateway(config) as gw:
            api = api_for(gw)
            assert (await api.get("/healthz")).status == 200
            assert (await api.get("/metrics")).status == 200
            assert_error(await api.get("/v1/queue"), 403, "forbidden")
            assert_error(await api.get("/v1/queue", token=None), 403, "forbidden")
    finally:
        sink.stop()


def send_from(port: int, sender: str, rcpts: list[str]) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.sendmail(sender, rcpts, b"Subject: hi\r\n\r\nhello\r\n")


async def test_queue_list_filters_paging_and_actions(tmp_path: Path) -> None:
    sink = Sink().start()
    for address in ("a@example.net", "b@example.net", "c@example.org"):
        sink.replies[address] = "451 4.3.0 Try again later"
    # Retries an hour away, and a breaker that three deferrals in a row do not open.
    route = ("routes:\n  - name: sink\n    type: smarthost\n"
             "    circuit_breaker: {failures: 100}\n    retry: {delays: [1h]}\n"
             f"    smarthosts:\n      - {{name: sink, host: 127.0.0.1, port: {sink.port}, "
             "tls: none}\n")
    config = write_config(tmp_path, sink.port, route=route, extra=admin_section(tmp_path))
    try:
        async with running_gateway(config) as gw:
            api = api_for(gw)
            port = gw.ports["relay"]
            q1 = await send(port, ["a@example.net"])
            q2 = await send(port, ["b@example.net"])
            await asyncio.to_thread(send_from, port, "Other@Example.com", ["c@example.org"])
            await until(lambda: len(gw.spool.files.ids(QueueState.DEFERRED)) == 3)
            (q3,) = set(gw.spool.files.ids(QueueState.DEFERRED)) - {q1, q2}

            everything = await api.get("/v1/queue")
            assert [r["id"] for r in everything.json["items"]] == sorted([q1, q2, q3])
            assert {r["priority"] for r in everything.json["items"]} == {"normal"}  # no policies
            assert everything.json["next"] is None
            first = (await api.get("/v1/queue?limit=2")).json
            assert [r["id"] for r in first["items"]] == sorted([q1, q2, q3])[:2]
            second = (await api.get(f"/v1/queue?limit=2&after={first['next']}")).json
            assert [r["id"] for r in second["items"]] == sorted([q1, q2, q3])[2:]
            assert second["next"] is None

            async def ids(query: str) -> list[str]:
                result = await api.get(f"/v1/queue?{query}")
                assert result.status == 200, result
                return [r["id"] for r in result.json["items"]]

            assert await ids("domain=EXAMPLE.org") == [q3]
            assert await ids("sender=other@example.com") == [q3]
            assert await ids("route=sink&state=deferred") == sorted([q1, q2, q3])
            assert await ids("route=elsewhere") == []
            assert await ids("state=hold") == []
            assert await ids("domain=example.net&limit=1") == [min(q1, q2)]

            shown = (await api.get(f"/v1/queue/{q1}")).json
            assert shown["state"] == "deferred"
            assert [e["type"] for e in shown["events"]] == ["accepted", "deferred"]
            assert shown["recipients"][0]["last_reply"] == "451 4.3.0 Try again later"
            assert_error(await api.get(f"/v1/queue/{new_queue_id(time.time())}"), 404,
                         "not_found")
            assert_error(await api.get("/v1/queue/not-an-id"), 400, "bad_id")
            broken = new_queue_id(time.time())
            (gw.config.spool_dir / "hold" / broken).write_bytes(b"not a queue file")
            assert_error(await api.get(f"/v1/queue/{broken}"), 500, "unreadable")
            (gw.config.spool_dir / "hold" / broken).unlink()
            assert_error(await api.post("/v1/queue/not-an-id/hold"), 400, "bad_id")

            held = await api.post(f"/v1/queue/{q1}/hold")
            assert held.status == 200 and held.json["result"] == f"{q1}: held"
            assert gw.spool.files.find(q1) is QueueState.HOLD
            assert await ids("state=hold") == [q1]
            assert_error(await api.post(f"/v1/queue/{q1}/retry"), 409, "held")
            assert_error(await api.post(f"/v1/queue/{q2}/release"), 409, "not_held")
            del sink.replies["a@example.net"]
            assert (await api.post(f"/v1/queue/{q1}/release")).status == 200
            await sink.await_for(1)  # released: due now, not in an hour

            del sink.replies["b@example.net"]
            retried = await api.post(f"/v1/queue/{q2}/retry")
            assert retried.json["result"] == f"{q2}: scheduled for immediate delivery"
            await sink.await_for(2)

            deleted = await api.delete(f"/v1/queue/{q3}")
            assert deleted.status == 200 and gw.spool.files.find(q3) is None
            assert_error(await api.delete(f"/v1/queue/{q3}"), 404, "not_found")

            audit = (await api.get("/v1/audit")).json["items"]
            assert [(a["actor"], a["action"], json.loads(a["detail"])["queue_id"])
                    for a in reversed(audit)] == [
                ("api:admin", "queue.hold", q1), ("api:admin", "queue.release", q1),
                ("api:admin", "queue.retry", q2), ("api:admin", "queue.delete", q3)]
    finally:
        sink.stop()


async def test_suppressions_and_consent_like_the_cli(tmp_path: Path) -> None:
    sink = Sink().start()
    ops = tmp_path / "ops.token"
    ops.write_text("ops-token-0123456789abcdef\n")
    ops.chmod(0o600)
    config = config_for(tmp_path, sink, "tokens:\n  - {name: ops, token_file: ops.token}\n")
    try:
        async with running_gateway(config) as gw:
            api = api_for(gw)
            added = await api.post("/v1/suppressions", json_body={
                "target": "Guest@Example.NET", "scope": "marketing", "reason": "unsubscribe",
                "ttl": "7d", "note": "asked by phone"})
            assert added.status == 201, added
            entry = added.json
            assert (entry["target"], entry["scope"], entry["reason"], entry["added_by"]) == (
                "guest@example.net", "marketing", "unsubscribe", "api:admin")
            assert 7 * 86400 - 60 < entry["expires"] - entry["created"] <= 7 * 86400
            for body, problem in (
                    ({"target": "x@example.net", "scope": "newsletters"}, "unknown scope"),
                    ({"target": "x@example.net", "reason": "bored"}, "'reason'"),
                    ({"target": "nobody"}, "neither an address nor @domain"),
                    ({"scope": "all"}, "'target'"),
                    ({"target": "x@example.net", "ttl": "soon"}, "not a duration"),
                    ({"target": "x@example.net", "expires": "tomorrow"}, "isoformat")):
                refused = await api.post("/v1/suppressions", json_body=body)
                assert_error(refused, 422, "invalid")
                assert problem in refused.json["error"]["message"], refused.text
            ops_api = api_for(gw, "ops-token-0123456789abcdef")
            assert (await ops_api.post("/v1/suppressions", json_body={
                "target": "@example.org"})).status == 201
            assert (await api.post("/v1/suppressions", json_body={
                "target": "z@example.com", "expires": "2100-01-01T00:00:00"})).status == 201

            got = await api.get("/v1/suppressions/GUEST@example.net")
            assert [(i["target"], i["scope"]) for i in got.json["items"]] == [
                ("guest@example.net", "marketing")]
            assert (await api.get(f"/v1/suppressions/{quote('@example.org')}")).status == 200
            assert_error(await api.get("/v1/suppressions/other@example.net"), 404, "not_found")
            assert_error(await api.get("/v1/suppressions/not-an-address"), 400, "bad_target")

            page1 = (await api.get("/v1/suppressions?limit=2")).json
            assert [i["target"] for i in page1["items"]] == ["@example.org", "guest@example.net"]
            page2 = (await api.get(f"/v1/suppressions?limit=2&after={quote(page1['next'])}")).json
            assert [i["target"] for i in page2["items"]] == ["z@example.com"]
            assert page2["next"] is None

            removed = await api.delete("/v1/suppressions/guest@example.net?scope=marketing")
            assert removed.json == {"target": "guest@example.net", "scope": "marketing",
                                    "removed": 1}
            assert_error(await api.delete("/v1/suppressions/guest@example.net"), 404,
                         "not_found")

            for status in ("granted", "withdrawn"):
                recorded = await api.post("/v1/consent", json_body={
                    "address": "Guest@example.net", "category": "marketing", "status": status,
                    "source": "booking form",
                    "purposes": ["tracking"] if status == "granted" else []})
                assert recorded.status == 201, recorded
                assert recorded.json["purposes"] == (["tracking"] if status == "granted"
                                                     else [])
            for body in ({"address": "g@example.net", "category": "spam", "status": "granted"},
                         {"address": "g@example.net", "category": "marketing", "status": "yes"},
                         {"address": "@example.net", "category": "marketing",
                          "status": "granted"},
                         {"address": "g@example.net", "category": "marketing",
                          "status": "granted", "method": "telepathy"},
                         {"address": "g@example.net", "category": "marketing",
                          "status": "granted", "purposes": ["profiling"]},
                         {"address": "g@example.net", "category": "marketing",
                          "status": "granted", "purposes": "tracking"},
                         {"category": "marketing", "status": "granted"}):
                assert_error(await api.post("/v1/consent", json_body=body), 422, "invalid")
            shown = (await api.get("/v1/consent/guest@EXAMPLE.net")).json
            assert shown["current"]["marketing"]["status"] == "withdrawn"
            assert [h["status"] for h in shown["history"]] == ["granted", "withdrawn"]
            assert_error(await api.get("/v1/consent/nobody@example.net"), 404, "not_found")
            c1 = (await api.get("/v1/consent?limit=1")).json
            c2 = (await api.get(f"/v1/consent?limit=1&after={c1['next']}")).json
            assert [c["status"] for c in c1["items"] + c2["items"]] == ["granted", "withdrawn"]
            assert c2["next"] is None
            assert_error(await api.get("/v1/consent?after=x"), 400, "bad_parameter")

            # The same audit rows as the CLI's (the same stores), with the API's actor;
            # like `suppress remove`, a removal that found nothing is recorded too.
            audit = [(a.actor, a.action, json.loads(a.detail).get("removed"))
                     for a in reversed(await gw.state.audit.entries())]
            assert audit == [
                ("api:admin", "suppress.add", None), ("api:ops", "suppress.add", None),
                ("api:admin", "suppress.add", None), ("api:admin", "suppress.remove", 1),
                ("api:admin", "suppress.remove", 0), ("api:admin", "consent.grant", None),
                ("api:admin", "consent.withdraw", None)]
    finally:
        sink.stop()


async def test_readyz_reports_a_listener_that_is_down(tmp_path: Path) -> None:
    sink = Sink().start()
    try:
        async with running_gateway(config_for(tmp_path, sink)) as gw:
            api = api_for(gw, None)
            # Embedded state: no shared backend to report; the node has the host's name.
            assert (await api.get("/readyz")).json == {
                "status": "ready", "node": socket.gethostname(), "backends": {}}
            await gw.listeners[0].stop()
            down = await api.get("/readyz")
            assert_error(down, 503, "not_ready")
            assert down.json["error"]["reasons"] == ["listener relay is not listening"]
            await gw.listeners[0].start()
            assert (await api.get("/readyz")).status == 200
    finally:
        sink.stop()


async def test_readyz_reports_a_full_disk(tmp_path: Path) -> None:
    """The data directory on a small tmpfs, filled up: state and spool are not writable."""
    assert os.geteuid() == 0, "this test mounts a tmpfs: run the suite as root"
    var = tmp_path / "var"
    var.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(var)],
                   check=True)
    sink = Sink().start()
    try:
        async with running_gateway(config_for(tmp_path, sink)) as gw:
            api = api_for(gw, None)
            assert (await api.get("/readyz")).status == 200
            filler = fill(var)
            full = await api.get("/readyz")
            assert_error(full, 503, "not_ready")
            reasons = full.json["error"]["reasons"]
            assert len(reasons) == 2, reasons
            assert reasons[0].startswith("state not writable: ")
            assert reasons[1].startswith("spool not writable: ")
            assert all(r.endswith("No space left on device") for r in reasons), reasons
            assert (await api.get("/healthz")).status == 200  # alive, just not ready
            filler.unlink()
            assert (await api.get("/readyz")).status == 200
    finally:
        sink.stop()
        subprocess.run(["umount", "-l", str(var)], check=True)


async def test_a_malformed_request_is_one_log_line(tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    sink = Sink().start()
    try:
        async with running_gateway(config_for(tmp_path, sink)) as gw:
            assert gw.admin is not None
            reader, writer = await asyncio.open_connection("127.0.0.1", gw.admin.port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Bad: \x00\r\n\r\n")
            status = await reader.readline()
            writer.close()
            await writer.wait_closed()
            assert status.split()[1] == b"400", status
            await asyncio.sleep(0.05)  # the server logs after answering
            (record,) = [r for r in caplog.records if r.name == "aiohttp.server"]
            assert record.levelname == "WARNING" and record.exc_info is None
            assert "Invalid header value char" in record.getMessage()
            assert "\n" not in record.getMessage()
    finally:
        sink.stop()


async def test_erasure_over_the_api(tmp_path: Path) -> None:
    sink = Sink().start()
    write_policy(tmp_path, "consent.yaml", """\
        categories:
          transactional: {basis: contract}
        """)
    try:
        async with running_gateway(config_for(tmp_path, sink)) as gw:
            api = api_for(gw)
            await send(gw.ports["relay"], ["guest@example.net"])
            await sink.await_for(1)
            added = await api.post("/v1/suppressions", json_body={
                "target": "guest@example.net", "reason": "complaint"})
            assert added.status == 201, added.text
            assert_error(await api.post("/v1/erasure", json_body={}), 422, "bad_address")
            assert_error(await api.post("/v1/erasure", json_body={"address": "nobody"}),
                         422, "bad_address")
            assert_error(await api.post("/v1/erasure", json_body={
                "address": "guest@example.net", "extra": 1}), 422, "invalid")
            assert_error(await api.post("/v1/erasure", json_body={"address": "x@y.test"},
                                        token=None), 401, "unauthorized")
            erased = await api.post("/v1/erasure", json_body={"address": "guest@example.net"})
            assert erased.status == 200, erased.text
            assert "guest" not in erased.text and erased.json["changed"]["suppressions"] == 1
            for path in (gw.config.state_path, gw.state.policy_path):
                assert b"guest@example.net" not in path.read_bytes(), path.name
            reply = await asyncio.to_thread(_rcpt, gw.ports["relay"], "guest@example.net")
            assert reply == (550, b"5.7.1 Recipient address is suppressed (complaint)")
            audit = await api.get("/v1/audit")
            assert "guest@example.net" not in audit.text and erased.json["token"] in audit.text
    finally:
        sink.stop()


def _rcpt(port: int, address: str) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.ehlo("app.test")
        s.mail("app@example.com")
        return s.rcpt(address)
