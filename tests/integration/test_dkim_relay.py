"""Signed at intake, relayed through the real pipeline, verified where it lands.

smtplib or a raw socket → gateway (in-process, DKIM on) → spool → delivery →
the test sink; the bytes the sink received are verified with dkimpy and with
Perl's Mail::DKIM, both looking the public keys up in a real NSD on loopback.
"""

from __future__ import annotations

import asyncio
import base64
import smtplib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.clock import ManualClock
from gateway.model import QueueState
from tests.fixtures.dkim import (
    KeySet,
    dkim_section,
    send_raw,
    signatures,
    verify_dkimpy,
    verify_perl,
)
from tests.fixtures.dns import NsdServer, running_nsd
from tests.fixtures.gateway import running_gateway, write_config
from tests.fixtures.sink import Received, Sink

HEAD = (b"From: Booking <app@example.com>\r\nTo: guest@example.net\r\n"
        b"Subject: Your booking\r\nMessage-ID: <booking-42@example.com>\r\n"
        b"Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n")
DUAL = {"dual_sign": True}


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeySet:
    keys = KeySet(tmp_path_factory.mktemp("dkim-keys"))
    keys.add("example.com", "rsa1", "rsa")
    keys.add("example.com", "ed1", "ed25519")
    keys.add("default.example", "def1", "rsa")
    return keys


@pytest.fixture(scope="module")
def nsd(keys: KeySet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NsdServer]:
    with running_nsd(tmp_path_factory.mktemp("nsd"), keys.zones()) as server:
        yield server


@pytest.fixture
def sink() -> Iterator[Sink]:
    sink = Sink().start()
    yield sink
    sink.stop()


def smtplib_send(message: bytes, *, mail_options: tuple[str, ...] = ()) -> Callable[[int], str]:
    def send(port: int) -> str:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.ehlo("app.test")
            client.sendmail("app@example.com", ["guest@example.net"], message,
                            mail_options=list(mail_options))
        return "250"
    return send


def raw_send(data: bytes, *, body_8bit: bool = False) -> Callable[[int], str]:
    return lambda port: send_raw(port, data, body_8bit=body_8bit)


async def relay(tmp_path: Path, sink: Sink, section: str,
                send: Callable[[int], str]) -> Received:
    async with running_gateway(write_config(tmp_path, sink.port, extra=section)) as gw:
        reply = await asyncio.to_thread(send, gw.ports["relay"])
        assert reply.startswith("250"), reply
        (got,) = await sink.await_for(1)
        return got


def assert_verifies(message: bytes, nsd: NsdServer, *selectors: str) -> None:
    assert [s[b"s"].decode() for s in signatures(message)] == list(selectors)
    assert verify_dkimpy(message, nsd) == [True] * len(selectors)
    perl = verify_perl(message, nsd)
    assert [(r.result, r.selector) for r in perl] == [("pass", s) for s in selectors], perl


ATTACHMENT = base64.encodebytes(bytes(range(256)) * 6000).replace(b"\n", b"\r\n")  # ~2 MB
CASES: dict[str, Callable[[int], str]] = {
    "crlf": smtplib_send(HEAD + b"\r\nSee you soon.\r\n"),
    "bare lf": raw_send(HEAD.replace(b"\r\n", b"\n") + b"\nline one\nline two\n"),
    "mixed endings": raw_send(HEAD + b"\r\nline one\nline two\r\nline three\n"),
    "dot-stuffed": raw_send(HEAD + b"\r\n..leading dot\r\n...\r\n..\r\nend\r\n"),
    "8-bit utf-8": raw_send(HEAD + "\r\nSchöne Grüße — 👋\r\n".encode(), body_8bit=True),
    "long and folded headers": smtplib_send(
        HEAD.replace(b"Subject: Your booking", b"Subject: " + b"very long " * 20 + b"\r\n\t"
                     + b"folded " * 10 + b"\r\n  subject")
        + b"List-Unsubscribe: <https://example.com/unsubscribe/" + b"x" * 900 + b">\r\n"
        + b"\r\nbody\r\n"),
    "trailing whitespace": smtplib_send(
        HEAD.replace(b"Subject: Your booking", b"Subject:  Your booking \t")
        + b"\r\nline with spaces   \r\n\t\r\nlast \t\r\n\r\n\r\n"),
    "empty body": smtplib_send(HEAD + b"\r\n"),
    "no final line ending": smtplib_send(HEAD + b"\r\nno newline at the end"),
    "large attachment": smtplib_send(
        HEAD + b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b1\r\n\r\n"
        b"--b1\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n--b1\r\n"
        b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + ATTACHMENT + b"--b1--\r\n"),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_message_forms_verify_at_the_destination(
        tmp_path: Path, sink: Sink, keys: KeySet, nsd: NsdServer, case: str) -> None:
    got = await relay(tmp_path, sink, dkim_section(keys, ["rsa1", "ed1"], **DUAL), CASES[case])
    assert_verifies(got.data, nsd, "rsa1", "ed1")  # RSA and Ed25519 (RFC 8463) on each
    assert b"\r\n" in got.data and b"\n" not in got.data.replace(b"\r\n", b"")


async def test_dot_lines_arrive_as_sent(tmp_path: Path, sink: Sink, keys: KeySet,
                                        nsd: NsdServer) -> None:
    got = await relay(tmp_path, sink, dkim_section(keys, ["rsa1"]), CASES["dot-stuffed"])
    assert got.data.endswith(b"\r\n\r\n.leading dot\r\n..\r\n.\r\nend\r\n")
    assert_verifies(got.data, nsd, "rsa1")


async def test_ed25519_alone(tmp_path: Path, sink: Sink, keys: KeySet, nsd: NsdServer) -> None:
    got = await relay(tmp_path, sink, dkim_section(keys, ["ed1"]), CASES["crlf"])
    assert signatures(got.data)[0][b"a"] == b"ed25519-sha256"
    assert_verifies(got.data, nsd, "ed1")


async def test_subdomain_signs_with_the_parent_key(tmp_path: Path, sink: Sink, keys: KeySet,
                                                   nsd: NsdServer) -> None:
    section = dkim_section(keys, ["rsa1"], domain_map={".example.com": "example.com"})
    message = HEAD.replace(b"app@example.com", b"news@mail.example.com") + b"\r\nHi\r\n"
    got = await relay(tmp_path, sink, section, smtplib_send(message))
    assert signatures(got.data)[0][b"d"] == b"example.com"
    assert_verifies(got.data, nsd, "rsa1")


async def test_fallback_signs_other_domains_with_the_default(
        tmp_path: Path, sink: Sink, keys: KeySet, nsd: NsdServer) -> None:
    section = dkim_section(keys, ["rsa1", "def1"], fallback="sign_with_default",
                           default_domain="default.example")
    message = HEAD.replace(b"app@example.com", b"app@elsewhere.test") + b"\r\nHi\r\n"
    got = await relay(tmp_path, sink, section, smtplib_send(message))
    assert signatures(got.data)[0][b"d"] == b"default.example"
    assert_verifies(got.data, nsd, "def1")


async def test_fallback_unsigned_passes_the_message_unchanged(
        tmp_path: Path, sink: Sink, keys: KeySet) -> None:
    message = HEAD.replace(b"app@example.com", b"app@elsewhere.test") + b"\r\nHi\r\n"
    section = dkim_section(keys, ["rsa1"], fallback="unsigned")
    async with running_gateway(write_config(tmp_path, sink.port, extra=section)) as gw:
        await asyncio.to_thread(smtplib_send(message), gw.ports["relay"])
        (got,) = await sink.await_for(1)
        assert signatures(got.data) == []
        assert got.data.endswith(message)
        counters = gw.signing_counters
        assert (counters.signed, counters.unsigned, counters.failed) == (0, 1, 0)


async def test_fallback_refuse_answers_550_5_7_1_and_stores_nothing(
        tmp_path: Path, sink: Sink, keys: KeySet) -> None:
    section = dkim_section(keys, ["rsa1"], fallback="refuse")
    async with running_gateway(write_config(tmp_path, sink.port, extra=section)) as gw:
        message = HEAD.replace(b"app@example.com", b"app@elsewhere.test") + b"\r\nHi\r\n"
        reply = await asyncio.to_thread(send_raw, gw.ports["relay"], message)
        assert reply == ("550 5.7.1 Message refused: cannot DKIM-sign it "
                         "(no DKIM key for elsewhere.test)")
        assert gw.spool.files.ids(QueueState.INCOMING) == []
        # The domain with a key still gets through.
        await asyncio.to_thread(send_raw, gw.ports["relay"], HEAD + b"\r\nHi\r\n")
        assert len(await sink.await_for(1)) == 1
        assert (gw.signing_counters.refused, gw.signing_counters.signed) == (1, 1)


async def test_every_retry_carries_the_signature_made_at_intake(
        tmp_path: Path, sink: Sink, keys: KeySet, nsd: NsdServer) -> None:
    sink.replies["guest@example.net"] = "451 4.3.0 try again later"
    clock = ManualClock()
    config = write_config(tmp_path, sink.port, extra=dkim_section(keys, ["rsa1", "ed1"], **DUAL))
    async with running_gateway(config, clock) as gw:
        await asyncio.to_thread(smtplib_send(HEAD + b"\r\nHi\r\n"), gw.ports["relay"])
        for _ in range(500):
            deferred = gw.spool.files.ids(QueueState.DEFERRED)
            if deferred:
                break
            await asyncio.sleep(0.01)
        (queue_id,) = deferred
        _, stored = gw.spool.files.read(queue_id, QueueState.DEFERRED)
        assert stored.startswith(b"DKIM-Signature: v=1; a=rsa-sha256;")  # signed before the spool
        del sink.replies["guest@example.net"]
        clock.advance(1.0)
        (got,) = await sink.await_for(1)
    assert got.data == stored  # the same bytes, the same signatures, on every attempt
    assert_verifies(got.data, nsd, "rsa1", "ed1")
