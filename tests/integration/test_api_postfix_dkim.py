"""HTTP API → gateway (DKIM on) → a real Postfix as the destination: what lands in its
Maildir parses back to the parts that were posted (HTML, inline image, PDF, non-ASCII
names and subject; an SMTPUTF8 recipient) and its signature verifies under Perl's
Mail::DKIM, keys looked up in a real NSD."""

from __future__ import annotations

import asyncio
import email
import textwrap
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.fixtures.api import PDF, PNG, ApiClient, add_key, api_section, b64, booking
from tests.fixtures.dkim import KeySet, dkim_section, verify_perl
from tests.fixtures.dns import NsdServer, running_nsd
from tests.fixtures.gateway import running_gateway, write_config
from tests.fixtures.postfix import DOMAIN, PostfixServer, postfix_server

__all__ = ["postfix_server"]  # the fixture, imported for pytest


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeySet:
    keys = KeySet(tmp_path_factory.mktemp("dkim-keys"))
    keys.add("example.com", "api1", "rsa")
    return keys


@pytest.fixture(scope="module")
def nsd(keys: KeySet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NsdServer]:
    with running_nsd(tmp_path_factory.mktemp("nsd"), keys.zones()) as server:
        yield server


def to_postfix(port: int) -> str:
    return textwrap.dedent(f"""\
        routes:
          - name: postfix
            type: smarthost
            smarthosts:
              - {{name: postfix, host: 127.0.0.1, port: {port}, tls: none}}
            retry:
              delays: [1s, 1s]
              repeat: 1s
            circuit_breaker: {{failures: 100, recovery: 1s}}
        """)


def crlf(maildir_file: bytes) -> bytes:
    """Postfix's Maildir stores LF line endings; the message on the wire had CRLF."""
    return maildir_file.replace(b"\n", b"\r\n")


async def landed(postfix: PostfixServer, before: int, marker: str) -> bytes:
    # In a thread: the in-process gateway delivers on this event loop meanwhile.
    found = await asyncio.to_thread(postfix.wait_for, before + 1, 60)
    (raw,) = [m for m in found if marker.encode() in m]
    return raw


async def test_parts_and_signature_survive_postfix(tmp_path: Path, keys: KeySet,
                                                   nsd: NsdServer,
                                                   postfix_server: PostfixServer) -> None:
    key = add_key(tmp_path, "booking-app")
    config = write_config(tmp_path, 0, route=to_postfix(postfix_server.port),
                          extra=api_section(tmp_path) + dkim_section(keys, ["api1"]))
    html = '<p>Grüß Gott, <b>Jürgen</b>!</p><img src="cid:logo@booking.example">'
    before = len(postfix_server.messages())
    async with running_gateway(config) as gw:
        assert gw.api is not None
        api = ApiClient(gw.api.port, key)
        reply = await api.send(booking(
            **{"from": {"name": "Hôtel Zürich", "address": "app@example.com"}},
            to={"name": "Jürgen Müller", "address": f"guest@{DOMAIN}"},
            subject="Ihre Buchung Nr. 42 — bestätigt ✓", text="Grüß Gott!\n", html=html,
            headers={"X-Booking-Id": "api-postfix-1"},
            attachments=[
                {"filename": "logo.png", "content_type": "image/png", "content": b64(PNG),
                 "content_id": "logo@booking.example"},
                {"filename": "Rechnung — Müller.pdf", "content_type": "application/pdf",
                 "content": b64(PDF)}]))
        assert reply.status == 202, reply.text
        raw = await landed(postfix_server, before, "api-postfix-1")
        utf8 = await api.send(booking(to={"name": "Jürgen", "address": f"jürgen@{DOMAIN}"},
                                      headers={"X-Booking-Id": "api-postfix-2"}))
        assert utf8.status == 202, utf8.text
        raw_utf8 = await landed(postfix_server, before + 1, "api-postfix-2")

    assert b"DKIM-Signature:" in raw, raw[:2000]
    perl = verify_perl(crlf(raw), nsd)
    assert [(r.result, r.domain, r.selector) for r in perl] == [
        ("pass", "example.com", "api1")], perl
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    assert msg["Delivered-To"] == f"guest@{DOMAIN}"
    assert str(msg["Subject"]) == "Ihre Buchung Nr. 42 — bestätigt ✓"
    assert msg["From"].addresses[0].display_name == "Hôtel Zürich"
    alternative, pdf = msg.iter_parts()
    plain, related = alternative.iter_parts()
    html_part, logo = related.iter_parts()
    assert str(plain.get_content()).replace("\r\n", "\n") == "Grüß Gott!\n"
    assert str(html_part.get_content()).replace("\r\n", "\n") == html
    assert logo.get_content() == PNG and logo["Content-ID"] == "<logo@booking.example>"
    assert pdf.get_filename() == "Rechnung — Müller.pdf" and pdf.get_content() == PDF

    assert [r.result for r in verify_perl(crlf(raw_utf8), nsd)] == ["pass"]
    parsed = email.message_from_string(raw_utf8.decode("utf-8"), policy=policy.default)
    assert parsed["To"].addresses[0].addr_spec == f"jürgen@{DOMAIN}"
    assert parsed["Delivered-To"] == f"jürgen@{DOMAIN}"
