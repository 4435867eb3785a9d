"""SMTP smuggling: only <CRLF>.<CRLF> ends DATA, and nothing bare is ever stored.

Each attempt hides a second transaction behind a "fake" end of data. A vulnerable
server (or the next hop, if we relayed the bare line endings) would see two
messages; we must store exactly one, with every line ending in CRLF.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.fixtures.intake import IntakeHarness, RawClient, relay_listener

BARE = re.compile(rb"\r(?!\n)|(?<!\r)\n")
SMUGGLED = (b"MAIL FROM:<admin@example.com>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\n"
            b"From: admin@example.com\r\nSubject: smuggled\r\n\r\nsmuggled body\r\n")


@pytest.mark.parametrize(
    "fake_end",
    [b"\n.\n", b"\r.\r", b"\r\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\r", b"\n.\r", b"\r.\n"],
    ids=["LF.LF", "CR.CR", "CRLF.LF", "LF.CRLF", "CR.CRLF", "CRLF.CR", "LF.CR", "CR.LF"],
)
def test_fake_end_of_data_does_not_split_the_message(tmp_path: Path, fake_end: bytes) -> None:
    with IntakeHarness(tmp_path, relay_listener()) as gw, RawClient(gw.port) as raw:
        raw.greeting()
        raw.command("EHLO attacker.example")
        raw.command("MAIL FROM:<user@example.com>")
        raw.command("RCPT TO:<friend@example.org>")
        assert raw.command("DATA").startswith("354 ")
        raw.send(b"From: user@example.com\r\nSubject: innocent\r\n\r\nhello" + fake_end
                 + SMUGGLED + b"\r\n.\r\n")
        first = raw.reply()
        assert first.startswith("250 2.0.0 Ok: queued as ")
        assert raw.command("QUIT") == "221 2.0.0 Bye"  # no reply left over from a 2nd message
        [(qm, content)] = gw.stored()
        assert qm.envelope.recipients == ("friend@example.org",)
        assert not BARE.search(content)
        # The fake end is now an ordinary "." line, which the outbound client dot-stuffs
        # (or gone, where it began a CRLF line: the DATA reader unstuffed that dot), or,
        # where a stray CR stood, a space (Postfix's cleanup_replace_stray_cr_lf); the
        # smuggled commands are just body text.
        assert re.search(rb"hello(?:\r\n| )\.?(?:\r\n| )?MAIL FROM:<admin@example.com>\r\n",
                         content)


def test_bare_lf_message_longer_than_a_line_is_accepted_and_normalized(tmp_path: Path) -> None:
    # Only LF line ends: to the DATA reader this is one 8 kB "line".
    body = b"".join(b"line %03d of a message from a sloppy client\n" % i for i in range(200))
    with IntakeHarness(tmp_path, relay_listener()) as gw, RawClient(gw.port) as raw:
        raw.greeting()
        raw.command("EHLO app.example")
        raw.command("MAIL FROM:<a@example.com>")
        raw.command("RCPT TO:<b@example.org>")
        raw.command("DATA")
        raw.send(b"Subject: lf only\n\n" + body + b"\r\n.\r\n")
        assert raw.reply().startswith("250 2.0.0 Ok: queued as ")
        [(_, content)] = gw.stored()
        assert not BARE.search(content)
        assert content.endswith(body.replace(b"\n", b"\r\n") + b"\r\n")
        assert raw.command("NOOP") == "250 2.0.0 OK"  # and commands are lines again
