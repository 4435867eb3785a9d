"""Message trace by queue id, Message-ID and a correlation header (X-Booking-Id), and the
summary of figures — after real SMTP traffic through the gateway to the sink."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from gateway.clock import ManualClock
from gateway.model import ConsentRecord
from tests.fixtures.admin import Api, admin_section
from tests.fixtures.gateway import running_gateway, write_config
from tests.fixtures.policy import write_policy
from tests.fixtures.sink import Sink
from tests.integration.test_admin_api import assert_error
from tests.integration.test_relay_end_to_end import send

CONSENT = """\
    categories:
      transactional: {basis: contract}
      marketing: {basis: consent}
    """


def booking_mail(booking: str, message_id: str, category: str = "transactional") -> str:
    return (f"From: Booking <app@example.com>\r\nTo: guest@example.net\r\n"
            f"Subject: Booking {booking}\r\nMessage-ID: {message_id}\r\n"
            f"X-Booking-Id: {booking}\r\nX-Gateway-Category: {category}\r\n\r\nHello.\r\n")


async def final_events(api: Api, queue_id: str, count: int) -> dict[str, Any]:
    """The trace of one message once it has `count` events (bounded wait)."""
    trace: dict[str, Any] = {}
    for _ in range(250):
        result = await api.get(f"/v1/trace?queue_id={queue_id}")
        if result.status == 200:
            trace = result.json
            (message,) = trace["messages"]
            if sum(len(r["events"]) for r in message["recipients"]) >= count:
                return trace
        await asyncio.sleep(0.02)
    raise AssertionError(f"trace of {queue_id} never had {count} events: {trace}")


async def test_trace_by_queue_id_message_id_and_booking_id(tmp_path: Path) -> None:
    write_policy(tmp_path, "consent.yaml", CONSENT)
    sink = Sink().start()
    sink.replies["gone@example.net"] = "550 5.1.1 No such user"
    config = write_config(tmp_path, sink.port, extra=admin_section(
        tmp_path, extra="correlation_headers: [X-Booking-Id]\n"))
    try:
        async with running_gateway(config) as gw:
            assert gw.admin is not None
            api = Api(gw.admin.port)
            port = gw.ports["relay"]
            await gw.state.consent.record(
                [ConsentRecord("fan@example.net", "marketing", True, 1.0)], "test", 1.0)
            first = await send(port, ["guest@example.net", "gone@example.net"],
                               booking_mail("B-123", "<confirm-1@example.com>"))
            second = await send(port, ["guest@example.net"],
                                booking_mail("B-123", "<reminder-1@example.com>"))
            other = await send(port, ["fan@example.net"],
                               booking_mail("B-999", "<offer-1@example.com>", "marketing"))
            await sink.await_for(3)

            trace = await final_events(api, first, 4)
            (message,) = trace["messages"]
            assert (message["queue_id"], message["message_id"], message["category"]) == (
                first, "<confirm-1@example.com>", "transactional")
            assert message["headers"] == {"x-booking-id": "B-123"}
            by_address = {r["address"]: r["events"] for r in message["recipients"]}
            assert [e["type"] for e in by_address["guest@example.net"]] == [
                "accepted", "delivered"]
            delivered = by_address["guest@example.net"][1]
            assert (delivered["route"], delivered["host"], delivered["reply"]["code"]) == (
                "sink", "sink", 250)
            bounced = by_address["gone@example.net"][1]
            assert bounced["type"] == "bounced"
            assert bounced["reply"] == {"code": 550, "enhanced": "5.1.1",
                                        "text": "No such user"}
            assert all(e["time"] > 0 for e in by_address["gone@example.net"])

            by_mid = await api.get("/v1/trace?message_id=<reminder-1@example.com>")
            assert [m["queue_id"] for m in by_mid.json["messages"]] == [second]
            booking = await api.get("/v1/trace?header=x-booking-id&value=B-123")
            assert booking.status == 200
            assert sorted(m["queue_id"] for m in booking.json["messages"]) == sorted(
                [first, second])
            assert booking.json["query"] == {"header": "x-booking-id", "value": "B-123"}
            marketing = (await api.get("/v1/trace?header=X-Booking-Id&value=B-999")).json
            assert [(m["queue_id"], m["category"]) for m in marketing["messages"]] == [
                (other, "marketing")]

            assert_error(await api.get("/v1/trace?header=X-Booking-Id&value=B-000"), 404,
                         "not_found")
            assert_error(await api.get("/v1/trace?message_id=<nobody@example.com>"), 404,
                         "not_found")
            assert_error(await api.get("/v1/trace?header=X-Tenant&value=1"), 400,
                         "bad_parameter")
            assert_error(await api.get("/v1/trace?header=X-Booking-Id"), 400, "bad_parameter")
            assert_error(await api.get("/v1/trace"), 400, "bad_parameter")
            assert_error(await api.get(f"/v1/trace?queue_id={first}&message_id=<x@y>"), 400,
                         "bad_parameter")
            assert_error(await api.get("/v1/trace?queue_id=../etc"), 400, "bad_parameter")

            summary = (await api.get("/v1/summary")).json
            hour = summary["last_hour"]
            assert hour["totals"]["sent"] == 4  # recipients handed in
            assert (hour["totals"]["delivered"], hour["totals"]["bounced"],
                    hour["totals"]["complained"]) == (3, 1, 0)
            assert hour["by_route"]["sink"]["delivered"] == 3
            assert hour["by_route"]["sink"]["bounced"] == 1
            assert hour["by_category"]["transactional"]["sent"] == 3
            assert hour["by_category"]["transactional"]["bounced"] == 1
            assert hour["by_category"]["marketing"]["delivered"] == 1
            assert summary["last_day"]["totals"] == hour["totals"]
            custom = (await api.get("/v1/summary?hours=2")).json
            assert custom["last_hours"]["totals"] == hour["totals"]
            assert_error(await api.get("/v1/summary?hours=-1"), 400, "bad_parameter")
    finally:
        sink.stop()


async def test_summary_windows_follow_the_clock(tmp_path: Path) -> None:
    """Events older than an hour leave last_hour but stay in last_day."""
    sink = Sink().start()
    clock = ManualClock(start=1_800_000_000.0)
    config = write_config(tmp_path, sink.port, extra=admin_section(tmp_path))
    try:
        async with running_gateway(config, clock) as gw:
            assert gw.admin is not None
            api = Api(gw.admin.port)
            queue_id = await send(gw.ports["relay"], ["guest@example.net"])
            await sink.await_for(1)
            await final_events(api, queue_id, 2)
            clock.advance(2 * 3600)
            summary = (await api.get("/v1/summary")).json
            assert summary["last_hour"]["totals"]["delivered"] == 0
            assert summary["last_day"]["totals"]["delivered"] == 1
            assert summary["last_day"]["by_category"]["none"]["sent"] == 1  # no policies
    finally:
        sink.stop()


async def test_reload_applies_new_correlation_headers_and_tokens(tmp_path: Path) -> None:
    sink = Sink().start()
    config = write_config(tmp_path, sink.port, extra=admin_section(tmp_path))
    try:
        async with running_gateway(config) as gw:
            assert gw.admin is not None
            api = Api(gw.admin.port)
            before = await send(gw.ports["relay"], ["guest@example.net"],
                                booking_mail("B-1", "<before@example.com>"))
            config.write_text(config.read_text()
                              + "  correlation_headers: [X-Booking-Id]\n")
            assert gw.reload()
            after = await send(gw.ports["relay"], ["guest@example.net"],
                               booking_mail("B-1", "<after@example.com>"))
            await sink.await_for(2)
            await final_events(api, after, 2)
            found = (await api.get("/v1/trace?header=X-Booking-Id&value=B-1")).json
            # Only mail accepted after the reload carries the tag.
            assert [m["queue_id"] for m in found["messages"]] == [after]
            assert before != after

            (tmp_path / "admin.token").write_text("a-brand-new-token-0123456789\n")
            assert gw.reload()
            assert_error(await api.get("/v1/queue"), 401, "unauthorized")
            assert (await Api(gw.admin.port, "a-brand-new-token-0123456789").get(
                "/v1/queue")).status == 200
    finally:
        sink.stop()
