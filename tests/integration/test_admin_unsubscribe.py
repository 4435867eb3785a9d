"""RFC 8058 one-click unsubscribe end to end: a marketing mail goes out with a
List-Unsubscribe URL; POSTing that URL (as a mailbox provider does) withdraws
consent and suppresses the category, so the next marketing mail to the guest is
dropped while the next booking confirmation is delivered. Also: the GET page
changes nothing, forged tokens get one answer, and the endpoint is rate-limited."""

from __future__ import annotations

import re
from pathlib import Path

from gateway.model import ConsentRecord, EventType
from gateway.policy.unsubscribe_token import TokenSigner
from gateway.supervisor import Gateway
from tests.fixtures.admin import Api, admin_section
from tests.fixtures.gateway import running_gateway, write_config
from tests.fixtures.net import free_port
from tests.fixtures.policy import events_of_type, message, smtp_session, write_policy
from tests.fixtures.sink import Sink
from tests.integration.test_admin_api import assert_error

KEY = b"0123456789abcdef0123456789abcdef-unsubscribe"
ONE_CLICK = {"Content-Type": "application/x-www-form-urlencoded"}


def setup(tmp_path: Path, admin_port: int) -> Path:
    """consent.yaml whose unsubscribe.base_url is this gateway's admin listener."""
    write_policy(tmp_path, "consent.yaml", f"""\
        categories:
          transactional: {{basis: contract}}
          marketing: {{basis: consent}}
        unsubscribe:
          base_url: http://127.0.0.1:{admin_port}/unsubscribe
          secret_file: unsubscribe.key
        """)
    key = tmp_path / "policies" / "unsubscribe.key"
    key.write_bytes(KEY)
    key.chmod(0o600)
    return tmp_path


async def deliver(gw: Gateway, sink: Sink, rcpt: str, category: str) -> tuple[int, str]:
    result = await smtp_session(gw.ports["relay"], [rcpt], message(category))
    assert result.data is not None, result
    return result.data


def unsubscribe_url(data: bytes) -> str:
    m = re.search(rb"List-Unsubscribe: <(http://[^>]+)>", data)
    assert m, data
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in data
    return m.group(1).decode()


async def test_one_click_unsubscribe_end_to_end(tmp_path: Path) -> None:
    admin_port = free_port()
    setup(tmp_path, admin_port)
    sink = Sink().start()
    config = write_config(tmp_path, sink.port, extra=admin_section(tmp_path, port=admin_port))
    try:
        async with running_gateway(config) as gw:
            await gw.state.consent.record(
                [ConsentRecord("guest@example.net", "marketing", True, 1.0, "explicit",
                               "booking form")], "test", 1.0)
            code, _ = await deliver(gw, sink, "guest@example.net", "marketing")
            assert code == 250
            (offer,) = await sink.await_for(1)
            url = unsubscribe_url(offer.data)
            assert url.startswith(f"http://127.0.0.1:{admin_port}/unsubscribe?token=v1.")
            path = url.removeprefix(f"http://127.0.0.1:{admin_port}")
            api = Api(admin_port, token=None)  # public: no bearer token

            page = await api.get(path)
            assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
            assert '<form method="post">' in page.text and "g***@example.net" in page.text
            assert "guest@example.net" not in page.text
            assert page.headers["Cache-Control"] == "no-store"
            assert page.headers["Referrer-Policy"] == "no-referrer"
            assert await gw.state.suppressions.all() == []  # a GET changes nothing

            done = await api.post(path, data="List-Unsubscribe=One-Click", headers=ONE_CLICK)
            assert done.status == 200, done
            assert done.json == {"status": "unsubscribed", "category": "marketing",
                                 "changed": True}
            again = await api.post(path, data="List-Unsubscribe=One-Click", headers=ONE_CLICK)
            assert again.json["changed"] is False

            (entry,) = await gw.state.suppressions.all()
            assert (entry.target, entry.scope, entry.reason.value, entry.added_by) == (
                "guest@example.net", "marketing", "unsubscribe", "unsubscribe")
            consent = await gw.state.consent.current(("guest@example.net",), "marketing")
            assert consent["guest@example.net"].granted is False
            audit = [(a.actor, a.action) for a in reversed(await gw.state.audit.entries())]
            assert audit[-2:] == [("unsubscribe", "consent.withdraw"),
                                  ("unsubscribe", "suppress.add")]
            (event,) = [e for e in await gw.state.events.by_queue_id("")
                        if e.type is EventType.UNSUBSCRIBED]
            assert (event.recipient, event.detail) == ("guest@example.net", "category=marketing")

            # The next marketing mail is dropped; the booking confirmation still arrives.
            refused = await deliver(gw, sink, "guest@example.net", "marketing")
            assert refused[0] == 550, refused
            code, _ = await deliver(gw, sink, "guest@example.net", "transactional")
            assert code == 250
            (_, confirmation) = await sink.await_for(2)
            assert confirmation.rcpt_tos == ["guest@example.net"]
            assert b"List-Unsubscribe" not in confirmation.data

            # With another recipient still subscribed, the guest is dropped (an event).
            await gw.state.consent.record(
                [ConsentRecord("fan@example.net", "marketing", True, 2.0)], "test", 2.0)
            mixed = await smtp_session(gw.ports["relay"],
                                       ["guest@example.net", "fan@example.net"],
                                       message("marketing"))
            assert mixed.data is not None and mixed.data[0] == 250
            queue_id = mixed.data[1].rsplit(" ", 1)[1]
            (dropped,) = await events_of_type(gw, queue_id, EventType.DROPPED, 1)
            assert dropped.recipient == "guest@example.net"
            assert dropped.detail == "rule=suppression:unsubscribe:marketing category=marketing"
            (_, _, fan) = await sink.await_for(3)
            assert fan.rcpt_tos == ["fan@example.net"]
    finally:
        sink.stop()


async def test_path_form_html_button_and_bad_requests(tmp_path: Path) -> None:
    admin_port = free_port()
    setup(tmp_path, admin_port)
    sink = Sink().start()
    config = write_config(tmp_path, sink.port, extra=admin_section(
        tmp_path, port=admin_port, extra="unsubscribe_limit: {burst: 100}\n"))
    try:
        async with running_gateway(config) as gw:
            api = Api(admin_port, token=None)
            token = TokenSigner(KEY).token("Guest@Example.net", "marketing")
            # The confirmation page's button: a form POST that wants an HTML answer.
            clicked = await api.post(f"/unsubscribe/{token}", data={"List-Unsubscribe":
                                                                    "One-Click"},
                                     headers={"Accept": "text/html"})
            assert clicked.status == 200 and "gets no more marketing mail" in clicked.text
            (entry,) = await gw.state.suppressions.all()
            assert entry.target == "guest@example.net"

            assert_error(await api.post(f"/unsubscribe/{token}", data="List-Unsubscribe=No",
                                        headers=ONE_CLICK), 400, "bad_request")
            assert_error(await api.post(f"/unsubscribe/{token}"), 400, "bad_request")
            forged = TokenSigner(b"another key, also 32 bytes long!!").token(
                "guest@example.net", "marketing")
            answers = set()
            for bad in (forged, token[:-2] + "AA", "v1.garbage.x", "x" * 3000, "v2.a.b"):
                result = await api.post(f"/unsubscribe?token={bad}",
                                        data="List-Unsubscribe=One-Click", headers=ONE_CLICK)
                assert_error(result, 400, "invalid_token")
                answers.add(result.text)
                page = await api.get(f"/unsubscribe/{bad}")
                assert page.status == 400 and "not valid" in page.text
            assert len(answers) == 1  # one answer whatever was wrong: no oracle
            assert_error(await api.post("/unsubscribe", data="List-Unsubscribe=One-Click",
                                        headers=ONE_CLICK), 400, "invalid_token")
            assert len(await gw.state.suppressions.all()) == 1
    finally:
        sink.stop()


async def test_rate_limited_per_client(tmp_path: Path) -> None:
    sink = Sink().start()
    admin_port = free_port()
    setup(tmp_path, admin_port)
    config = write_config(tmp_path, sink.port, extra=admin_section(
        tmp_path, port=admin_port, extra="unsubscribe_limit: {rate: 1/h, burst: 3}\n"))
    try:
        async with running_gateway(config):
            api = Api(admin_port, token=None)
            statuses = [(await api.get("/unsubscribe?token=v1.nope.nope")).status
                        for _ in range(4)]
            assert statuses == [400, 400, 400, 429]
            limited = await api.post("/unsubscribe?token=v1.nope.nope",
                                     data="List-Unsubscribe=One-Click", headers=ONE_CLICK)
            assert_error(limited, 429, "rate_limited")
            assert 3500 <= int(limited.headers["Retry-After"]) <= 3600
            assert (await api.get("/healthz")).status == 200  # only the endpoint is limited
    finally:
        sink.stop()


async def test_not_configured_is_404(tmp_path: Path) -> None:
    sink = Sink().start()
    config = write_config(tmp_path, sink.port, extra=admin_section(tmp_path))
    try:
        async with running_gateway(config) as gw:
            assert gw.admin is not None
            api = Api(gw.admin.port, token=None)
            assert_error(await api.post("/unsubscribe?token=v1.a.b",
                                        data="List-Unsubscribe=One-Click", headers=ONE_CLICK),
                         404, "not_found")
    finally:
        sink.stop()


async def test_behind_a_trusted_proxy_each_forwarded_client_has_its_budget(
        tmp_path: Path) -> None:
    sink = Sink().start()
    admin_port = free_port()
    setup(tmp_path, admin_port)
    config = write_config(tmp_path, sink.port, extra=admin_section(
        tmp_path, port=admin_port, extra="unsubscribe_limit: {rate: 1/h, burst: 1}\n"
                                         "trusted_proxies: [127.0.0.0/8]\n"))
    try:
        async with running_gateway(config):
            api = Api(admin_port, token=None)

            async def status(client: str) -> int:
                result = await api.get("/unsubscribe?token=x", headers={
                    "X-Forwarded-For": f"203.0.113.9, {client}"})
                return result.status

            assert [await status("198.51.100.1"), await status("198.51.100.2")] == [400, 400]
            assert await status("198.51.100.1") == 429  # the last address is the client
    finally:
        sink.stop()


async def test_forwarded_for_is_ignored_from_untrusted_peers(tmp_path: Path) -> None:
    sink = Sink().start()
    admin_port = free_port()
    setup(tmp_path, admin_port)
    config = write_config(tmp_path, sink.port, extra=admin_section(
        tmp_path, port=admin_port, extra="unsubscribe_limit: {rate: 1/h, burst: 1}\n"))
    try:
        async with running_gateway(config):
            api = Api(admin_port, token=None)
            first = await api.get("/unsubscribe?token=x", headers={"X-Forwarded-For": "1.1.1.1"})
            second = await api.get("/unsubscribe?token=x", headers={"X-Forwarded-For": "2.2.2.2"})
            assert (first.status, second.status) == (400, 429)
    finally:
        sink.stop()
