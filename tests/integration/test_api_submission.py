"""The HTTP submission API over real HTTP on loopback, the real gateway in-process and the
test sink behind it: what arrives parses back to what was posted; every bad input gets
a JSON error with its code; keys, scopes, sender domains and revocation hold."""

from __future__ import annotations

import asyncio
import email
import subprocess
import sys
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from pathlib import Path

import aiohttp
import pytest

from tests.fixtures.api import PDF, PNG, ApiClient, add_key, api_section, b64, booking
from tests.fixtures.gateway import running_gateway, write_config
from tests.fixtures.sink import Received, Sink
from tests.fixtures.tls import make_certs


def parsed(got: Received) -> EmailMessage:
    msg = email.message_from_string(got.data.decode("utf-8"), policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def text_of(part: EmailMessage) -> str:
    return str(part.get_content()).replace("\r\n", "\n")


@pytest.fixture
def sink() -> Iterator[Sink]:
    s = Sink().start()
    yield s
    s.stop()


async def test_text_message_arrives_with_its_fields(tmp_path: Path, sink: Sink) -> None:
    key = add_key(tmp_path, "booking-app")
    async with running_gateway(write_config(tmp_path, sink.port,
                                            extra=api_section(tmp_path))) as gw:
        assert gw.api is not None
        api = ApiClient(gw.api.port, key)
        reply = await api.send(booking(cc="desk@example.net", bcc="audit@example.org",
                                       reply_to={"name": "Front desk",
                                                 "address": "desk@example.com"},
                                       headers={"X-Booking-Id": "42"}))
        assert reply.status == 202, reply.text
        body = reply.json
        assert body["duplicate"] is False and body["message_id"].endswith("@gateway.test>")
        assert [r["status"] for r in body["recipients"]] == ["queued"] * 3
        (got,) = await sink.await_for(1)
    assert sorted(got.rcpt_tos) == ["audit@example.org", "desk@example.net",
                                    "guest@example.net"]
    assert got.mail_from == "app@example.com"
    msg = parsed(got)
    assert msg["From"] == "Booking <app@example.com>" and msg["Cc"] == "desk@example.net"
    assert msg["Bcc"] is None and b"audit@example.org" not in got.data.split(b"\r\n\r\n")[0]
    assert msg["Reply-To"] == "Front desk <desk@example.com>"
    assert msg["X-Booking-Id"] == "42" and msg["Message-ID"] == body["message_id"]
    assert f"id {body['queue_id']}" in msg["Received"]
    assert msg.get_content_type() == "text/plain"
    assert text_of(msg) == "Your room is booked.\n"


async def test_html_inline_image_and_pdf_with_non_ascii_names(tmp_path: Path,
                                                              sink: Sink) -> None:
    key = add_key(tmp_path, "booking-app")
    html = '<p>Grüß Gott, <b>Jürgen</b>!</p><img src="cid:logo@booking.example">'
    text = "Grüß Gott, Jürgen!\n" + "Zimmer 12 · " * 200 + "\n"  # a 2,400-character line
    async with running_gateway(write_config(tmp_path, sink.port,
                                            extra=api_section(tmp_path))) as gw:
        assert gw.api is not None
        reply = await ApiClient(gw.api.port, key).send(booking(
            **{"from": {"name": "Hôtel Zürich — Réception", "address": "app@example.com"}},
            to=[{"name": "Jürgen Müller", "address": "guest@example.net"}],
            subject="Ihre Buchung Nr. 42 — bestätigt ✓", text=text, html=html,
            attachments=[
                {"filename": "logo.png", "content_type": "image/png", "content": b64(PNG),
                 "content_id": "logo@booking.example"},
                {"filename": "Rechnung Nr. 42 — Müller.pdf",
                 "content_type": "application/pdf", "content": b64(PDF)}]))
        assert reply.status == 202, reply.text
        (got,) = await sink.await_for(1)
    head = got.data.split(b"\r\n\r\n")[0]
    assert head.isascii() and b"=?utf-8?" in head  # RFC 2047 words, no raw 8-bit
    assert max(len(line) for line in got.data.split(b"\r\n")) <= 78
    msg = parsed(got)
    assert str(msg["Subject"]) == "Ihre Buchung Nr. 42 — bestätigt ✓"
    assert msg["From"].addresses[0].display_name == "Hôtel Zürich — Réception"
    assert msg["To"].addresses[0].display_name == "Jürgen Müller"
    assert msg.get_content_type() == "multipart/mixed"
    alternative, pdf = msg.iter_parts()
    plain, related = alternative.iter_parts()
    assert text_of(plain) == text
    html_part, logo = related.iter_parts()
    assert (related.get_content_type(), html_part.get_content_type()) == (
        "multipart/related", "text/html")
    assert text_of(html_part) == html
    assert logo["Content-ID"] == "<logo@booking.example>"
    assert logo.get_content_disposition() == "inline" and logo.get_content() == PNG
    assert pdf.get_content_disposition() == "attachment"
    assert pdf.get_filename() == "Rechnung Nr. 42 — Müller.pdf"
    assert b"filename*=utf-8''Rechnung" in got.data  # RFC 2231
    assert pdf.get_content() == PDF


async def test_smtputf8_recipient(tmp_path: Path, sink: Sink) -> None:
    key = add_key(tmp_path, "booking-app")
    async with running_gateway(write_config(tmp_path, sink.port,
                                            extra=api_section(tmp_path))) as gw:
        assert gw.api is not None
        reply = await ApiClient(gw.api.port, key).send(booking(
            to={"name": "Jürgen", "address": "jürgen@bücher.example"}, subject="Grüße"))
        assert reply.status == 202, reply.text
        (got,) = await sink.await_for(1)
    assert got.rcpt_tos == ["jürgen@bücher.example"]
    assert "SMTPUTF8" in got.mail_options
    msg = parsed(got)
    assert msg["To"].addresses[0].addr_spec == "jürgen@bücher.example"  # RFC 6532 header
    assert str(msg["Subject"]) == "Grüße"
    assert "with UTF8SMTPA" in msg["Received"]


BAD_INPUTS = [
    # (what is posted, status, code, field)
    ({"to": "guest@example.net", "text": "x"}, 422, "missing_field", "from"),
    (booking(to="guest@@example.net"), 422, "bad_address", "to"),
    (booking(to=[{"address": "a@example.net", "nick": "x"}]), 422, "unknown_field", "to.nick"),
    (booking(to=None), 422, "no_recipients", "to"),
    (booking(text=None), 422, "missing_body", "text"),
    (booking(texte="typo"), 422, "unknown_field", "texte"),
    (booking(subject="a\r\nBcc: x@example.org"), 422, "bad_text", "subject"),
    (booking(attachments=[{"filename": "a.pdf", "content_type": "application/pdf",
                           "content": "not base64!"}]), 422, "bad_base64",
     "attachments[0].content"),
    (booking(attachments=[{"filename": "a", "content_type": "pdf", "content": ""}]), 422,
     "bad_attachment", "attachments[0].content_type"),
    (booking(attachments=[{"filename": "a.png", "content_type": "image/png", "content": "",
                           "content_id": "a@b"}]), 422, "bad_attachment",
     "attachments[0].content_id"),
    (booking(category="newsletters"), 422, "unknown_category", "category"),
    (booking(headers={"Content-Type": "text/html"}), 422, "reserved_header",
     "headers.Content-Type"),
    (booking(headers={"Idempotency-Key": "x"}), 422, "reserved_header",
     "headers.Idempotency-Key"),
    (booking(headers={"Bad Name": "x"}), 422, "bad_header", "headers.Bad Name"),
    (booking(metadata={"booking id": 1}), 422, "bad_metadata", "metadata.booking id"),
    (booking(metadata={"ok": [1]}), 422, "bad_metadata", "metadata.ok"),
    (booking(text=7), 422, "bad_type", "text"),
    (booking(**{"from": "app@elsewhere.example"}), 403, "sender_not_allowed", "from"),
    (booking(idempotency_key=""), 422, "bad_idempotency_key", "idempotency_key"),
]


async def test_every_bad_input_gets_a_json_error_with_its_code(tmp_path: Path,
                                                               sink: Sink) -> None:
    key = add_key(tmp_path, "booking-app")
    config = write_config(tmp_path, sink.port, extra=api_section(tmp_path, extra="""\
        max_body: 64K
        """) + "limits:\n  max_message_size: 20K\n")
    async with running_gateway(config) as gw:
        assert gw.api is not None
        api = ApiClient(gw.api.port, key)
        for body, status, code, field in BAD_INPUTS:
            reply = await api.send(body)
            assert (reply.status, reply.error_code) == (status, code), (body, reply.text)
            assert reply.json["error"]["field"] == field and reply.json["error"]["message"]
        big = booking(attachments=[{"filename": "big.bin", "content_type":
                                    "application/octet-stream", "content": b64(PDF * 2)}])
        reply = await api.send(big)  # 20.5 KB decoded: over the 20K limit
        assert (reply.status, reply.error_code) == (413, "message_too_large"), reply.text
        huge = booking(text="x" * 70_000)  # over max_body: refused before it is parsed
        reply = await api.send(huge)
        assert (reply.status, reply.error_code) == (413, "body_too_large"), reply.text
        for raw in (b"{not json", b"[1, 2]", b""):
            reply = await api.call("POST", "/v1/messages", raw=raw)
            assert (reply.status, reply.error_code) == (400, "bad_json"), raw
        reply = await api.call("POST", "/v1/messages", raw=b"[" * 100_00 + b"]" * 100_00)
        assert reply.status in (400, 413) and reply.json["error"]["code"], reply.text
        reply = await api.call("GET", "/v1/nothing")
        assert (reply.status, reply.error_code) == (404, "not_found")
        reply = await api.call("DELETE", "/v1/messages")
        assert (reply.status, reply.error_code) == (405, "method_not_allowed")
    assert sink.count() == 0


async def test_keys_scopes_and_revocation(tmp_path: Path, sink: Sink) -> None:
    sender = add_key(tmp_path, "newsletter", scope="send")
    reader = add_key(tmp_path, "booking-app", scope="send+read", rate="1/h")
    config = write_config(tmp_path, sink.port, extra=api_section(tmp_path))
    async with running_gateway(config) as gw:
        assert gw.api is not None
        port = gw.api.port
        for key, code in ((None, "unauthorized"), ("sgw_" + "0" * 16 + "_" + "x" * 43,
                                                   "unauthorized"), ("nonsense", "unauthorized")):
            reply = await ApiClient(port, key).send(booking())
            assert (reply.status, reply.error_code) == (401, code)
            assert reply.headers["WWW-Authenticate"].startswith("Bearer")
        first = await ApiClient(port, reader).send(booking())
        assert first.status == 202, first.text
        # The key's own limit: 1/h with a burst of 10 (nine more go through).
        for _ in range(9):
            assert (await ApiClient(port, reader).send(booking())).status == 202
        limited = await ApiClient(port, reader).send(booking())
        assert (limited.status, limited.error_code) == (429, "rate_limited")
        assert int(limited.headers["Retry-After"]) > 0
        sent = await ApiClient(port, sender).send(booking())
        assert sent.status == 202
        await sink.await_for(11)
        # Reading: only with scope send+read, and only the key's own messages.
        mine = await until_events(ApiClient(port, reader), first.queue_id, "delivered")
        assert mine["queue_id"] == first.queue_id
        other = await ApiClient(port, reader).call("GET", f"/v1/messages/{sent.queue_id}")
        assert (other.status, other.error_code) == (404, "not_found")
        denied = await ApiClient(port, sender).call("GET", f"/v1/messages/{sent.queue_id}")
        assert (denied.status, denied.error_code) == (403, "forbidden")
        # Revoked with the CLI while the gateway runs: refused at the next request.
        done = subprocess.run([sys.executable, "-m", "gateway", "apikey", "revoke",
                               "newsletter", "-c", str(config)], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        reply = await ApiClient(port, sender).send(booking())
        assert (reply.status, reply.error_code) == (401, "unauthorized")
        # A key made with the CLI while the gateway runs works at once.
        made = subprocess.run([sys.executable, "-m", "gateway", "apikey", "create", "cli-app",
                               "--domain", "example.com", "-c", str(config)],
                              capture_output=True, text=True, timeout=60)
        assert made.returncode == 0, made.stderr
        cli_key = made.stdout.strip().splitlines()[-1]
        assert cli_key.startswith("sgw_")
        assert (await ApiClient(port, cli_key).send(booking())).status == 202
        listed = subprocess.run([sys.executable, "-m", "gateway", "apikey", "list", "-c",
                                 str(config)], capture_output=True, text=True, timeout=60)
        assert all(name in listed.stdout for name in ("newsletter", "booking-app", "cli-app"))
        assert "scrypt" not in listed.stdout and cli_key not in listed.stdout


async def until_events(api: ApiClient, queue_id: str, kind: str) -> dict[str, object]:
    """GET /v1/messages/{id} until some recipient has an event of `kind` (bounded)."""
    body: dict[str, object] = {}
    for _ in range(200):
        reply = await api.call("GET", f"/v1/messages/{queue_id}")
        if reply.status == 200:
            body = reply.json
            recipients = body["recipients"]
            assert isinstance(recipients, list)
            if any(e["type"] == kind for r in recipients for e in r["events"]):
                return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"{queue_id}: no {kind} event: {body}")


async def test_batch_gives_each_message_its_own_result(tmp_path: Path, sink: Sink) -> None:
    key = add_key(tmp_path, "booking-app")
    async with running_gateway(write_config(tmp_path, sink.port,
                                            extra=api_section(tmp_path))) as gw:
        assert gw.api is not None
        api = ApiClient(gw.api.port, key)
        messages = [booking(subject=f"Booking {i}", metadata={"booking_id": i})
                    for i in range(40)]
        messages[7] = booking(to="not an address")
        messages[9] = booking(**{"from": "app@elsewhere.example"})
        reply = await api.call("POST", "/v1/messages/batch", body={"messages": messages})
        assert reply.status == 200, reply.text
        results = reply.json["results"]
        assert [r["status"] for r in results] == [422 if i == 7 else 403 if i == 9 else 202
                                                  for i in range(40)]
        assert results[7]["error"]["code"] == "bad_address"
        ids = {r["queue_id"] for r in results if r["status"] == 202}
        assert len(ids) == 38
        got = await sink.await_for(38)
        assert sorted(str(parsed(m)["Subject"]) for m in got) == sorted(
            f"Booking {i}" for i in range(40) if i not in (7, 9))
        for body, code in (({"messages": []}, "bad_batch"),
                           ({"messages": [booking()] * 501}, "bad_batch"),
                           ({"messages": [booking()], "x": 1}, "unknown_field")):
            reply = await api.call("POST", "/v1/messages/batch", body=body)
            assert (reply.status, reply.error_code) == (422, code)
        events = await until_events(api, results[0]["queue_id"], "delivered")
        assert events["metadata"] == {"booking_id": "0"}
        recipients = events["recipients"]
        assert isinstance(recipients, list)
        (accepted,) = [e for e in recipients[0]["events"] if e["type"] == "accepted"]
        assert accepted["detail"].endswith(" user=booking-app")  # the key is the actor


async def test_https_listener(tmp_path: Path, sink: Sink) -> None:
    certs = make_certs(tmp_path)
    key = add_key(tmp_path, "booking-app")
    section = api_section(tmp_path, extra=f"cert_file: {certs.cert_file}\n"
                                          f"key_file: {certs.key_file}\n")
    async with running_gateway(write_config(tmp_path, sink.port, extra=section)) as gw:
        assert gw.api is not None
        reply = await ApiClient(gw.api.port, key, tls=certs.client_context()).send(booking())
        assert reply.status == 202, reply.text
        (got,) = await sink.await_for(1)
        assert "with ESMTPSA" in parsed(got)["Received"]  # TLS and an authenticated key
        with pytest.raises(aiohttp.ClientError):  # no plain HTTP on the TLS port
            await ApiClient(gw.api.port, key).send(booking())


async def test_key_guessing_is_locked_out_per_address(tmp_path: Path, sink: Sink) -> None:
    key = add_key(tmp_path, "booking-app")
    async with running_gateway(write_config(tmp_path, sink.port,
                                            extra=api_section(tmp_path))) as gw:
        assert gw.api is not None
        wrong = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
        codes = [(await ApiClient(gw.api.port, wrong).send(booking())).status
                 for _ in range(10)]
        assert codes == [401] * 10
        # Locked: even the right key is not checked now (as SMTP AUTH after guessing).
        locked = await ApiClient(gw.api.port, key).send(booking())
        assert (locked.status, locked.error_code) == (429, "too_many_failures")
        assert int(locked.headers["Retry-After"]) > 0
    assert sink.count() == 0
