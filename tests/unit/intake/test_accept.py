"""Acceptor: MAIL/RCPT checks and the DATA step (normalize, headers, spool.put, reply)."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.clock import ManualClock
from gateway.errors import SpoolError
from gateway.intake.accept import Acceptor, SessionInfo, Transaction
from gateway.intake.trace import received_header
from gateway.metrics import REGISTRY
from gateway.model import Client, Envelope, QueuedMessage, QueueId, QueueState
from gateway.spool import Spool
from gateway.spool.store import decode_header

HOST = "gateway.test"
CLIENT = Client(listener="relay", address="192.0.2.7", port=40000, helo="app.example")
TRUSTED = SessionInfo(CLIENT, may_relay=True)
STRANGER = SessionInfo(CLIENT, may_relay=False)
BARE = re.compile(rb"\r(?!\n)|(?<!\r)\n")


def envelope(*recipients: str, **changes: object) -> Envelope:
    env = Envelope(
        mail_from="sender@example.com",
        recipients=recipients or ("rcpt@example.org",),
        client=CLIENT,
        received_at=1_700_000_000.0,
    )
    return replace(env, **changes)  # type: ignore[arg-type]


@pytest.fixture
async def spool(tmp_path: Path) -> AsyncIterator[Spool]:
    spool = Spool(tmp_path / "spool", ManualClock(), fsync=False)
    await spool.open()
    yield spool
    await spool.close()


@pytest.fixture
def queued() -> list[QueuedMessage]:
    return []


@pytest.fixture
def acceptor(spool: Spool, queued: list[QueuedMessage]) -> Acceptor:
    return Acceptor(spool, HOST, ManualClock(), queued.append)


def stored(spool: Spool, queue_id: str) -> tuple[QueuedMessage, bytes]:
    raw = (spool.root / QueueState.INCOMING.value / queue_id).read_bytes()
    qm, offset = decode_header(raw)
    return qm, raw[offset:]


# -- MAIL / RCPT --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sender",
    ["", "a@example.com", '"john doe"@example.com', "a@[192.0.2.1]", "a@[IPv6:2001:db8::1]",
     "user+tag@sub.example.co.uk", "x@mailhost", "x@sink.test"],
)
async def test_valid_senders(acceptor: Acceptor, sender: str) -> None:
    assert str(await acceptor.mail(TRUSTED, sender, smtputf8=False)) == "250 2.1.0 Sender OK"


@pytest.mark.parametrize(
    "sender", ["a..b@example.com", "a@", "@example.com", "a b@example.com", "a@exa mple.com",
               "a@-example.com", "noatsign"],
)
async def test_bad_sender_syntax_is_501_5_1_7(acceptor: Acceptor, sender: str) -> None:
    reply = await acceptor.mail(TRUSTED, sender, smtputf8=False)
    assert (reply.code, reply.enhanced) == (501, "5.1.7")
    assert reply.text.startswith("Bad sender address syntax: ")


async def test_non_ascii_addresses_need_smtputf8(acceptor: Acceptor) -> None:
    reply = await acceptor.mail(TRUSTED, "jörg@example.de", smtputf8=False)
    assert (reply.code, reply.enhanced) == (553, "5.6.7")
    assert (await acceptor.mail(TRUSTED, "jörg@example.de", smtputf8=True)).code == 250
    txn = Transaction(TRUSTED, "a@example.com", smtputf8=False)
    assert (await acceptor.rcpt(txn, "用户@例子.广告")).enhanced == "5.6.7"
    utf8 = replace(txn, smtputf8=True)
    assert (await acceptor.rcpt(utf8, "用户@例子.广告")).code == 250


async def test_undecodable_address_is_refused(acceptor: Acceptor) -> None:
    # aiosmtpd decodes arguments with surrogateescape: invalid UTF-8 shows up like this.
    reply = await acceptor.mail(TRUSTED, "a\udcff@example.com", smtputf8=True)
    assert reply.code == 501


async def test_recipient_checks(acceptor: Acceptor) -> None:
    txn = Transaction(TRUSTED, "a@example.com")
    assert str(await acceptor.rcpt(txn, "b@example.org")) == "250 2.1.5 Recipient OK"
    bad = await acceptor.rcpt(txn, "b@@example.org")
    assert (bad.code, bad.enhanced) == (553, "5.1.3")
    assert "Bad recipient address syntax" in bad.text


async def test_a_client_that_may_not_relay_gets_554_5_7_1(acceptor: Acceptor) -> None:
    txn = Transaction(STRANGER, "a@example.com")
    assert str(await acceptor.rcpt(txn, "b@example.org")) == "554 5.7.1 Relay access denied"


# -- DATA: line endings and line length (the rules themselves: tests/unit/cleanup) -----------------


async def test_a_line_over_998_octets_is_re_encoded_not_refused(acceptor: Acceptor,
                                                               spool: Spool) -> None:
    content = b"Subject: long\r\n\r\n" + b"x" * 999 + b"\r\n"
    reply = await acceptor.data(envelope(), content)
    assert reply.code == 250
    _, data = stored(spool, reply.text.split()[-1])
    assert b"Content-Transfer-Encoding: quoted-printable\r\n" in data
    assert max(map(len, data.split(b"\r\n"))) <= 998
    assert not BARE.search(data)


async def test_bare_lf_lines_are_measured_after_normalization(acceptor: Acceptor) -> None:
    # 600 + 600 octets on "one line" as far as CRLF goes, but two lines really.
    content = b"Subject: t\n\n" + b"a" * 600 + b"\n" + b"b" * 600 + b"\n"
    assert (await acceptor.data(envelope(), content)).code == 250


# -- DATA: headers and storing ------------------------------------------------------------------


async def test_stored_with_received_date_and_message_id(
    acceptor: Acceptor, spool: Spool, queued: list[QueuedMessage]
) -> None:
    reply = await acceptor.data(envelope(), b"Subject: hi\r\n\r\nbody\r\n")
    assert reply.code == 250
    queue_id = reply.text.removeprefix("Ok: queued as ")
    assert str(reply) == f"250 2.0.0 Ok: queued as {queue_id}"
    qm, content = stored(spool, queue_id)
    assert [q.id for q in queued] == [queue_id]
    assert qm.envelope.message_id is not None
    assert re.fullmatch(r"<[0-9a-f]{32}@gateway\.test>", qm.envelope.message_id)
    assert content == (
        b"Received: from app.example ([192.0.2.7])\r\n"
        b"\tby gateway.test with ESMTP id " + queue_id.encode() + b"\r\n"
        b"\tfor <rcpt@example.org>; Tue, 14 Nov 2023 22:13:20 +0000\r\n"
        b"Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"
        b"Message-ID: " + qm.envelope.message_id.encode() + b"\r\n"
        b"From: sender@example.com\r\n"  # none in the message: the envelope's (cleanup)
        b"Subject: hi\r\n\r\nbody\r\n"
    )
    assert qm.size == len(content)


async def test_existing_date_and_message_id_are_kept(acceptor: Acceptor, spool: Spool) -> None:
    content = (b"From: a@example.com\r\nmessage-id:\r\n <abc.123@client.example>\r\n"
               b"DATE: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\nbody\r\n")
    reply = await acceptor.data(envelope(), content)
    qm, data = stored(spool, reply.text.split()[-1])
    assert qm.envelope.message_id == "<abc.123@client.example>"
    assert data.count(b"Date:") + data.count(b"DATE:") == 1
    assert data.lower().count(b"message-id:") == 1
    assert data.endswith(content)


async def test_empty_message_id_is_not_duplicated(acceptor: Acceptor, spool: Spool) -> None:
    reply = await acceptor.data(envelope(), b"Message-ID:\r\nSubject: x\r\n\r\nbody\r\n")
    qm, data = stored(spool, reply.text.split()[-1])
    assert qm.envelope.message_id is None
    assert data.count(b"Message-ID:") == 1


async def test_message_without_header_gets_a_separator(acceptor: Acceptor, spool: Spool) -> None:
    reply = await acceptor.data(envelope(), b"just a body line\r\n")
    _, data = stored(spool, reply.text.split()[-1])
    head, sep, body = data.partition(b"\r\n\r\n")
    assert sep and body == b"just a body line\r\n"
    assert b"Message-ID: <" in head and b"Date: " in head


async def test_bare_lf_message_is_stored_with_crlf_only(acceptor: Acceptor, spool: Spool) -> None:
    reply = await acceptor.data(envelope(), b"Subject: x\n\nline\n.\nmore\rend\n")
    _, data = stored(spool, reply.text.split()[-1])
    assert not BARE.search(data)
    # A bare LF ends a line; a stray CR is a space (Postfix's cleanup_replace_stray_cr_lf).
    assert data.endswith(b"Subject: x\r\n\r\nline\r\n.\r\nmore end\r\n")


def test_received_header_forms() -> None:
    many = envelope("a@example.org", "b@example.org")
    text = received_header(many, HOST, "Q1", esmtp=True)
    assert "for <" not in text  # Bcc recipients are not disclosed
    assert text.startswith("Received: from app.example ([192.0.2.7])\r\n\tby gateway.test with "
                           "ESMTP id Q1;\r\n\t")
    tls_auth = replace(CLIENT, tls=True, auth_user="app", address="2001:db8::5")
    one = envelope(client=tls_auth, smtputf8=True)
    text = received_header(one, HOST, "Q2", esmtp=True)
    assert "from app.example ([IPv6:2001:db8::5])" in text
    assert "with UTF8SMTPSA id Q2" in text
    assert "with SMTP id" in received_header(envelope(), HOST, "Q3", esmtp=False)
    mapped = envelope(client=replace(CLIENT, address="::ffff:192.0.2.9"))
    assert "([192.0.2.9])" in received_header(mapped, HOST, "Q5", esmtp=True)
    hostile = envelope(client=replace(CLIENT, helo="evil (x); by\r\nX-Injected: 1"))
    assert "X-Injected: 1" not in received_header(hostile, HOST, "Q4", esmtp=True)


# -- DATA: failures -------------------------------------------------------------------------------


class BrokenSpool:
    def __init__(self, error: BaseException) -> None:
        self.error = error

    def new_id(self) -> QueueId:
        return "01TESTQUEUEID00000"

    async def put(self, envelope: Envelope, content: bytes, *,
                  queue_id: QueueId | None = None) -> QueuedMessage:
        raise self.error


@pytest.mark.parametrize(
    ("error", "expected", "rule"),
    [
        (SpoolError("I/O error"), "451 4.3.0", "spool_failed"),
        (SpoolError("No space left on device", disk_full=True), "452 4.3.1", "disk_full"),
        (RuntimeError("bug"), "451 4.3.0", "internal_error"),
    ],
)
async def test_storage_failures_are_temporary(
    error: BaseException, expected: str, rule: str, caplog: pytest.LogCaptureFixture
) -> None:
    queued: list[QueuedMessage] = []
    acceptor = Acceptor(BrokenSpool(error), HOST, ManualClock(), queued.append)
    labels = {"listener": envelope().client.listener, "reply_class": "4xx", "rule": rule,
              "stage": "data"}
    before = REGISTRY.get_sample_value("smtp_gateway_messages_rejected_total", labels) or 0.0
    with caplog.at_level(logging.ERROR, logger="gateway.intake.accept"):
        reply = await acceptor.data(envelope(), b"Subject: x\r\n\r\nbody\r\n")
    assert str(reply).startswith(expected)
    assert queued == []
    assert caplog.records, "the failure is logged"
    assert REGISTRY.get_sample_value("smtp_gateway_messages_rejected_total", labels) == before + 1


async def test_failing_on_queued_still_answers_250(spool: Spool) -> None:
    def explode(_: QueuedMessage) -> None:
        raise RuntimeError("listener bug")

    acceptor = Acceptor(spool, HOST, ManualClock(), explode)
    reply = await acceptor.data(envelope(), b"Subject: x\r\n\r\nbody\r\n")
    assert reply.code == 250  # the message is durable: a 4xx would only cause a duplicate
    assert spool.files.ids(QueueState.INCOMING) == [reply.text.split()[-1]]


async def test_large_message_is_prepared_off_the_loop(acceptor: Acceptor, spool: Spool) -> None:
    body = (b"y" * 76 + b"\n") * 20_000  # ~1.5 MB, bare LF: normalized in a thread
    reply = await acceptor.data(envelope(), b"Subject: big\n\n" + body)
    _, data = stored(spool, reply.text.split()[-1])
    assert not BARE.search(data)
    assert data.count(b"\r\n") >= 20_000
