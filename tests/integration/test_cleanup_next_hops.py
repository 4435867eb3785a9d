"""8-bit and SMTPUTF8 mail to next hops that lack 8BITMIME (RFC 6152) or SMTPUTF8
(RFC 6531), and what happens when signing cannot be done (issue 16).

raw socket → gateway (in-process) → the raw test server offering only some EHLO
keywords; what went over the wire is checked byte for byte, signatures with Perl's
Mail::DKIM, outcomes in the event store and the metrics.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.metrics import REGISTRY
from gateway.model import EventType, QueueState
from gateway.supervisor import Gateway
from tests.fixtures.bounces import wait_events
from tests.fixtures.dkim import KeySet, dkim_section, send_raw, verify_perl
from tests.fixtures.dns import NsdServer, running_nsd
from tests.fixtures.gateway import running_gateway, write_config
from tests.fixtures.raw_smtp import RawSmtpServer

HEAD = (b"From: Booking <app@example.com>\r\nTo: guest@example.net\r\n"
        b"Subject: Your booking\r\nMessage-ID: <booking-7@example.com>\r\n"
        b"Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n")
UTF8_BODY = "Schöne Grüße aus Köln\r\n".encode()
SEVEN_BIT_HOP = ("PIPELINING", "SMTPUTF8")  # (SMTPUTF8 without 8BITMIME is odd, but seen)
NO_SMTPUTF8_HOP = ("PIPELINING", "8BITMIME")


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeySet:
    keys = KeySet(tmp_path_factory.mktemp("dkim-keys"))
    keys.add("example.com", "rsa1", "rsa")
    keys.add("example.com", "ed1", "ed25519")
    keys.add("app.example", "app1", "rsa")
    return keys


@pytest.fixture(scope="module")
def nsd(keys: KeySet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NsdServer]:
    with running_nsd(tmp_path_factory.mktemp("nsd"), keys.zones()) as server:
        yield server


def dual(keys: KeySet) -> str:
    return dkim_section(keys, ["rsa1", "ed1"], dual_sign=True)


def send(port: int, data: bytes, *, params: str = "") -> str:
    return send_raw(port, data, body_8bit="BODY=8BITMIME" in params,
                    smtputf8="SMTPUTF8" in params)


async def arrived(server: RawSmtpServer, count: int = 1) -> list[bytes]:
    deadline = time.monotonic() + 30
    while len(server.messages()) < count:
        assert time.monotonic() < deadline, f"{len(server.messages())} of {count} arrived"
        await asyncio.sleep(0.02)
    return [m[:-3].replace(b"\r\n..", b"\r\n.") for m in server.messages()]


def mail_commands(server: RawSmtpServer) -> list[bytes]:
    return [c for t in server.transcripts for c in t.commands if c.startswith(b"MAIL")]


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def text_part(message: bytes) -> bytes:
    payload = email.message_from_bytes(message, policy=email.policy.compat32).get_payload(
        decode=True)
    assert isinstance(payload, bytes)
    return payload


async def bounced_with(gw: Gateway, reply: str, enhanced: str) -> None:
    queue_id = reply.rsplit(" ", 1)[1]
    (bounce,) = await wait_events(gw, queue_id, EventType.BOUNCED)
    assert bounce.reply is not None and bounce.reply.enhanced == enhanced, bounce


async def test_8bit_mail_reaches_a_7bit_hop_as_7bit_and_verifies(
        tmp_path: Path, keys: KeySet, nsd: NsdServer) -> None:
    async with RawSmtpServer(extensions=SEVEN_BIT_HOP) as server:
        config = write_config(tmp_path, server.port, extra=dual(keys))
        async with running_gateway(config) as gw:
            reply = await asyncio.to_thread(send, gw.ports["relay"], HEAD + b"\r\n" + UTF8_BODY,
                                            params=" BODY=8BITMIME")
            assert reply.startswith("250")
            (message,) = await arrived(server)
    # Made 7-bit at cleanup, before signing: nothing to convert at delivery, and the
    # signatures made on these very bytes verify.
    assert message.isascii() and b"Content-Transfer-Encoding: quoted-printable" in message
    assert text_part(message) == UTF8_BODY
    assert [b"BODY=" in m for m in mail_commands(server)] == [False]
    assert [(r.result, r.selector) for r in verify_perl(message, nsd)] == [
        ("pass", "rsa1"), ("pass", "ed1")]


async def test_app_signed_8bit_mail_is_converted_at_delivery_and_counted(
        tmp_path: Path, keys: KeySet, nsd: NsdServer) -> None:
    import dkim

    plain = HEAD + b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n" \
        b"Content-Transfer-Encoding: 8bit\r\n\r\n" + UTF8_BODY
    key = keys[("app.example", "app1")].key.material
    signed = dkim.sign(plain, b"app1", b"app.example", key, linesep=b"\r\n") + plain
    before = counter("smtp_gateway_cleanup_repairs_total", repair="downgraded_at_delivery")
    async with RawSmtpServer(extensions=SEVEN_BIT_HOP) as server:
        config = write_config(tmp_path, server.port, extra=dual(keys))
        async with running_gateway(config) as gw:
            assert (await asyncio.to_thread(send, gw.ports["relay"], signed,
                                            params=" BODY=8BITMIME")).startswith("250")
            (message,) = await arrived(server)
    # Never raw 8-bit to a server without 8BITMIME: converted as Postfix's
    # smtp_mime_downgrade would, the text the app wrote intact ...
    assert message.isascii() and text_part(message) == UTF8_BODY
    assert counter("smtp_gateway_cleanup_repairs_total",
                   repair="downgraded_at_delivery") == before + 1
    # ... at the price the README states: the body hashes no longer match.
    results = verify_perl(message, nsd)
    assert {r.domain for r in results} == {"example.com", "app.example"}
    assert all(r.result == "fail" for r in results), results


async def test_8bit_structured_header_to_a_7bit_hop_bounces_5_6_3(
        tmp_path: Path, keys: KeySet) -> None:
    message = HEAD.replace(b"From: Booking", "From: Büro".encode()) + b"\r\nHi\r\n"
    async with RawSmtpServer(extensions=SEVEN_BIT_HOP) as server:
        config = write_config(tmp_path, server.port, extra=dual(keys))
        async with running_gateway(config) as gw:
            reply = await asyncio.to_thread(send, gw.ports["relay"], message)
            await bounced_with(gw, reply, "5.6.3")
    assert server.messages() == []


async def test_smtputf8_mail_to_a_hop_without_smtputf8_bounces_5_6_7_unmangled(
        tmp_path: Path, keys: KeySet, nsd: NsdServer) -> None:
    utf8 = HEAD.replace(b"Your booking", "Ihre Buchung in Köln".encode()) + b"\r\nHi\r\n"
    ascii_only = HEAD.replace(b"booking-7", b"booking-8") + b"\r\nHi\r\n"  # not a resend
    async with RawSmtpServer(extensions=NO_SMTPUTF8_HOP) as server:
        config = write_config(tmp_path, server.port, extra=dual(keys))
        async with running_gateway(config) as gw:
            port = gw.ports["relay"]
            bounced = await asyncio.to_thread(send, port, utf8, params=" SMTPUTF8")
            await bounced_with(gw, bounced, "5.6.7")
            # Asked for SMTPUTF8 but all ASCII: nothing needs it, so it goes without.
            assert (await asyncio.to_thread(send, port, ascii_only,
                                            params=" SMTPUTF8")).startswith("250")
            (message,) = await arrived(server)
    assert message.endswith(ascii_only)
    assert [b"SMTPUTF8" in m for m in mail_commands(server)] == [False]
    assert [r.result for r in verify_perl(message, nsd)] == ["pass", "pass"]


async def test_smtputf8_mail_to_a_hop_with_smtputf8_keeps_its_utf8_fields(
        tmp_path: Path, keys: KeySet, nsd: NsdServer) -> None:
    utf8 = HEAD.replace(b"Your booking", "Ihre Buchung in Köln".encode()) + b"\r\nHi\r\n"
    async with RawSmtpServer() as server:
        config = write_config(tmp_path, server.port, extra=dual(keys))
        async with running_gateway(config) as gw:
            assert (await asyncio.to_thread(send, gw.ports["relay"], utf8,
                                            params=" SMTPUTF8")).startswith("250")
            (message,) = await arrived(server)
    assert message.endswith(utf8)
    assert [b" SMTPUTF8" in m for m in mail_commands(server)] == [True]
    assert [r.result for r in verify_perl(message, nsd)] == ["pass", "pass"]


async def test_a_message_the_key_cannot_sign_gets_451_an_event_and_a_count(
        tmp_path: Path, keys: KeySet) -> None:
    # Signed by the app (so cleanup keeps its bytes) with simple canonicalization (so
    # `Subject :` is not repaired), and dkimpy cannot parse `Subject :`: our key for
    # example.com cannot sign it. It must not leave unsigned.
    message = (b"DKIM-Signature: v=1; a=rsa-sha256; c=simple/simple; d=app.example; s=app1;"
               b"\r\n h=from:subject; bh=AAAA; b=AAAA\r\n"
               + HEAD.replace(b"Subject:", b"Subject :") + b"\r\nHi\r\n")
    before = counter("smtp_gateway_dkim_signatures_total", result="tempfail")
    async with RawSmtpServer() as server:
        config = write_config(tmp_path, server.port, extra=dual(keys))
        async with running_gateway(config) as gw:
            reply = await asyncio.to_thread(send_raw, gw.ports["relay"], message)
            assert reply.startswith("451 4.7.0 Message not accepted for now: DKIM signing "
                                    "failed (its header cannot be parsed)"), reply
            assert gw.spool.files.ids(QueueState.INCOMING) == []
            assert gw.signing_counters.tempfail == 1
            await gw.state.events.flush()
            (event,) = [e for e in await gw.state.events.by_queue_id("")
                        if e.type is EventType.REJECTED]
    assert event.recipient == "guest@example.net" and event.detail == "rule=dkim at=DATA"
    assert event.reply is not None and event.reply.code == 451
    assert counter("smtp_gateway_dkim_signatures_total", result="tempfail") == before + 1
    assert counter("smtp_gateway_messages_rejected_total", listener="relay", reply_class="4xx",
                   rule="dkim", stage="data") >= 1
    assert server.messages() == []


async def test_a_refusal_of_cleanup_is_an_event_and_a_count(tmp_path: Path,
                                                            keys: KeySet) -> None:
    message = HEAD + b"From: ceo@example.com\r\n\r\nHi\r\n"
    async with RawSmtpServer() as server:
        config = write_config(tmp_path, server.port, extra=dual(keys))
        async with running_gateway(config) as gw:
            reply = await asyncio.to_thread(send_raw, gw.ports["relay"], message)
            assert reply == ("554 5.6.0 Message refused: it has 2 From: fields with different "
                             "values (RFC 5322 3.6 allows one)")
            await gw.state.events.flush()
            (event,) = [e for e in await gw.state.events.by_queue_id("")
                        if e.type is EventType.REJECTED]
    assert event.detail == "rule=cleanup at=DATA"
    assert counter("smtp_gateway_messages_rejected_total", listener="relay", reply_class="5xx",
                   rule="cleanup", stage="data") >= 1
    assert server.messages() == []


async def test_repairs_are_counted_by_kind(tmp_path: Path, keys: KeySet) -> None:
    before = counter("smtp_gateway_cleanup_repairs_total", repair="obsolete_syntax")
    async with RawSmtpServer() as server:
        config = write_config(tmp_path, server.port, extra=dual(keys))
        async with running_gateway(config) as gw:
            await asyncio.to_thread(send_raw, gw.ports["relay"],
                                    HEAD.replace(b"Subject:", b"Subject :") + b"\r\nHi\r\n")
            await arrived(server)
    assert counter("smtp_gateway_cleanup_repairs_total",
                   repair="obsolete_syntax") == before + 1
