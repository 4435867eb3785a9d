"""Awkward app mail through the gateway to a real Postfix that offers neither 8BITMIME
nor SMTPUTF8 (`smtpd_discard_ehlo_keywords`), verified in its Maildir with Perl's
Mail::DKIM (issue 16): the 7-bit next hop that cleanup's choice is made for.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import smtplib
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.dkim import KeySet, dkim_section, send_raw, verify_perl
from tests.fixtures.dns import NsdServer, running_nsd
from tests.fixtures.gateway import running_gateway, write_config
from tests.fixtures.postfix import PostfixServer, running_postfix


def head(n: int) -> bytes:
    return (b"From: Booking <app@example.com>\r\nTo: guest@dest.test\r\n"
            b"Subject: Your booking\r\nMessage-ID: <pf-%d@example.com>\r\n"
            b"Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n" % n)


HTML = "<p>Frühstück inklusive, Zimmer 12</p>".encode() * 60  # one 2.5 kB 8-bit line
MESSAGES = {
    1: head(1) + b"MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    + HTML + b"\r\n",
    2: head(2) + "\r\nSchöne Grüße aus Köln\r\n".encode(),
    3: head(3).replace(b"Subject:", b"Subject :").replace(b"Date: Tue, 14 Nov 2023 "
                                                           b"22:13:20 +0000\r\n", b"")
    + b"\r\nHi\r\n",
    4: head(4).replace(b"Subject: Your booking", b"Subject: " + b" ".join(
        b"word%d" % i for i in range(300))) + b"\r\nHi\r\n",
    5: head(5).replace(b"\r\n", b"\n") + b"\nlf only\nTotal:\r42\r\n",
}


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeySet:
    keys = KeySet(tmp_path_factory.mktemp("dkim-keys"))
    keys.add("example.com", "rsa1", "rsa")
    keys.add("example.com", "ed1", "ed25519")
    return keys


@pytest.fixture(scope="module")
def nsd(keys: KeySet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NsdServer]:
    with running_nsd(tmp_path_factory.mktemp("nsd"), keys.zones()) as server:
        yield server


@pytest.fixture(scope="module")
def seven_bit_postfix() -> Iterator[PostfixServer]:
    with running_postfix(main_cf="smtpd_discard_ehlo_keywords = 8bitmime, smtputf8\n") as pf:
        yield pf


def test_the_postfix_offers_neither_8bitmime_nor_smtputf8(
        seven_bit_postfix: PostfixServer) -> None:
    with smtplib.SMTP("127.0.0.1", seven_bit_postfix.port, timeout=10) as client:
        client.ehlo("gateway.test")
        assert "pipelining" in client.esmtp_features
        assert "8bitmime" not in client.esmtp_features
        assert "smtputf8" not in client.esmtp_features


async def test_awkward_mail_lands_in_a_7bit_postfix_clean_and_verified(
        tmp_path: Path, keys: KeySet, nsd: NsdServer, seven_bit_postfix: PostfixServer) -> None:
    route = textwrap.dedent(f"""\
        routes:
          - name: postfix
            type: smarthost
            smarthosts:
              - {{name: postfix, host: 127.0.0.1, port: {seven_bit_postfix.port}, tls: none}}
        """)
    config = write_config(tmp_path, 0, route=route,
                          extra=dkim_section(keys, ["rsa1", "ed1"], dual_sign=True))
    async with running_gateway(config) as gw:
        for data in MESSAGES.values():
            reply = await asyncio.to_thread(send_raw, gw.ports["relay"], data,
                                            rcpt="guest@dest.test", body_8bit=True)
            assert reply.startswith("250"), reply
        stored = await asyncio.to_thread(seven_bit_postfix.wait_for, len(MESSAGES))
    by_id = {}
    for raw in stored:
        message = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")  # Maildir: LF
        parsed = email.message_from_bytes(message, policy=email.policy.compat32)
        by_id[str(parsed["Message-ID"]).strip()] = (message, parsed)
    for n in MESSAGES:
        message, parsed = by_id[f"<pf-{n}@example.com>"]
        assert message.isascii(), n  # nothing 8-bit went to a server without 8BITMIME
        assert max(map(len, message.split(b"\r\n"))) <= 998, n
        assert [(r.result, r.selector) for r in verify_perl(message, nsd)] == [
            ("pass", "rsa1"), ("pass", "ed1")], n
    assert by_id["<pf-1@example.com>"][1].get_payload(decode=True) == HTML + b"\r\n"
    assert by_id["<pf-2@example.com>"][1].get_payload(decode=True) == \
        "Schöne Grüße aus Köln\r\n".encode()
    assert by_id["<pf-3@example.com>"][1]["Subject"] == "Your booking"
    assert by_id["<pf-5@example.com>"][1].get_payload() == "lf only\r\nTotal: 42\r\n"
