"""The SMTP dialogue itself: command order, malformed commands and addresses,
ESMTP extensions, enhanced status codes on every reply, pipelining, headers."""

from __future__ import annotations

import re
import smtplib
from pathlib import Path

from gateway.intake.accept import Acceptor, Transaction
from gateway.model import Reply
from tests.fixtures import tls
from tests.fixtures.intake import (
    IntakeHarness,
    RawClient,
    relay_listener,
    submission_listener,
)

ENHANCED = re.compile(r"^\d{3} [245]\.\d{1,3}\.\d{1,3} \S")


def test_ehlo_advertises_the_extensions(tmp_path: Path) -> None:
    with IntakeHarness(tmp_path, relay_listener()) as gw, RawClient(gw.port) as raw:
        assert raw.greeting() == "220 gateway.test ESMTP"
        assert raw.command("EHLO app.example").split("\r\n") == [
            "250-gateway.test",
            "250-PIPELINING",
            "250-SIZE 26214400",
            "250-8BITMIME",
            "250-SMTPUTF8",
            "250 ENHANCEDSTATUSCODES",
        ]


def test_command_order_and_malformed_commands(tmp_path: Path) -> None:
    with IntakeHarness(tmp_path, relay_listener()) as gw, RawClient(gw.port) as raw:
        raw.greeting()
        assert raw.command("MAIL FROM:<a@example.com>") == "503 5.5.1 Error: send HELO first"
        assert raw.command("EHLO") == "501 5.5.4 Syntax: EHLO hostname"
        assert raw.command("HELO app.example") == "250 gateway.test"
        assert raw.command("RCPT TO:<b@example.org>") == "503 5.5.1 Error: need MAIL command"
        assert raw.command("DATA") == "503 5.5.1 Error: need RCPT command"
        assert raw.command("FROB") == '500 5.5.2 Error: command "FROB" not recognized'
        assert raw.command("") == "500 5.5.2 Error: bad syntax"
        assert raw.command("MAIL TO:<a@example.com>") == "501 5.5.4 Syntax: MAIL FROM: <address>"
        assert raw.command("MAIL FROM:<a@example.com> SIZE=10") == (
            "501 5.5.4 Syntax: MAIL FROM: <address>")  # parameters need EHLO
        assert raw.command("MAIL FROM:<a@example.com>") == "250 2.1.0 Sender OK"
        assert raw.command("MAIL FROM:<a@example.com>") == "503 5.5.1 Error: nested MAIL command"
        assert raw.command("RSET") == "250 2.0.0 OK"
        assert raw.command("RCPT TO:<b@example.org>") == "503 5.5.1 Error: need MAIL command"
        assert raw.command("MAIL FROM:<a@example.com>" + "x" * 600).startswith("500 5.5.2 ")
        assert raw.command("QUIT") == "221 2.0.0 Bye"
        assert raw.closed_by_server()


BAD_SENDER = "501 5.1.7 Bad sender address syntax: cannot parse the address"


def test_malformed_addresses(tmp_path: Path) -> None:
    with IntakeHarness(tmp_path, relay_listener()) as gw, RawClient(gw.port) as raw:
        raw.greeting()
        raw.command("EHLO app.example")
        assert raw.command("MAIL FROM:<a..b@example.com>") == (
            "501 5.1.7 Bad sender address syntax: An email address cannot have two periods "
            "in a row.")
        assert raw.command("MAIL FROM:<a@@example.com>") == BAD_SENDER
        # CPython's address parser crashes on these (IndexError), which was answered 451 (try
        # again: a client would, for ever): a syntax error.
        assert raw.command("MAIL FROM:<") == BAD_SENDER
        assert raw.command('MAIL FROM:"') == BAD_SENDER
        assert raw.command("MAIL FROM:<jörg@example.de>") == (
            "553 5.6.7 Non-ASCII address requires the SMTPUTF8 MAIL FROM parameter")
        assert raw.command("MAIL FROM:<a@example.com> BODY=BINARYMIME") == (
            "501 5.5.4 Error: BODY can only be one of 7BIT, 8BITMIME")
        assert raw.command("MAIL FROM:<a@example.com> FROB=1") == (
            "555 5.5.4 MAIL FROM parameters not recognized or not implemented")
        assert raw.command("MAIL FROM:<a@example.com>") == "250 2.1.0 Sender OK"
        assert raw.command("RCPT TO:<a b@example.org>").startswith(
            "553 5.1.3 Bad recipient address syntax: ")
        assert raw.command("RCPT TO:<b@example.org@>").startswith("553 5.1.3 ")
        assert raw.command("RCPT TO:<_@") == (
            "553 5.1.3 Bad recipient address syntax: cannot parse the address")
        assert raw.command("RCPT TO:<>") == (
            "553 5.1.3 Bad recipient address syntax: cannot parse the address")
        assert raw.command("RCPT TO:<b@-bad-.example>").startswith("553 5.1.3 ")
        assert raw.command('RCPT TO:<"john doe"@example.org>') == "250 2.1.5 Recipient OK"
        assert raw.command("RCPT TO:<postmaster@[192.0.2.1]>") == "250 2.1.5 Recipient OK"


def test_every_reply_carries_an_enhanced_status_code(tmp_path: Path) -> None:
    with IntakeHarness(tmp_path, relay_listener()) as gw, RawClient(gw.port) as raw:
        raw.greeting()
        raw.command("EHLO app.example")
        commands = [
            "NOOP", "HELP", "VRFY <someone@example.org>", "VRFY", "EXPN list", "RSET",
            "MAIL FROM:<>", "RCPT TO:<b@example.org>", "RCPT TO:<bad@@x>", "AUTH PLAIN",
            "STARTTLS", "MAIL FROM:<a@example.com>", "BDAT 10", "DATA extra",
        ]
        seen = {command: raw.command(command) for command in commands}
        assert raw.command("DATA").startswith("354 ")
        raw.send(b"Subject: x\r\n\r\nx\r\n.\r\n")
        seen["<end of data>"] = raw.reply()
        seen["QUIT"] = raw.command("QUIT")
        for command, reply in seen.items():
            assert ENHANCED.match(reply), f"{command!r} was answered {reply!r}"
        assert seen["VRFY <someone@example.org>"].startswith("252 2.5.2 ")


def test_pipelining_in_one_write(tmp_path: Path) -> None:
    with IntakeHarness(tmp_path, relay_listener()) as gw, RawClient(gw.port) as raw:
        raw.greeting()
        raw.command("EHLO app.example")
        raw.send(b"MAIL FROM:<a@example.com> BODY=8BITMIME\r\nRCPT TO:<b@example.org>\r\n"
                 b"RCPT TO:<bad@@example.org>\r\nRCPT TO:<c@example.org>\r\nDATA\r\n")
        assert raw.reply() == "250 2.1.0 Sender OK"
        assert raw.reply() == "250 2.1.5 Recipient OK"
        assert raw.reply().startswith("553 5.1.3 ")
        assert raw.reply() == "250 2.1.5 Recipient OK"
        assert raw.reply().startswith("354 ")
        raw.send("Subject: caf\u00e9\r\n\r\n8-bit caf\u00e9\r\n.\r\nMAIL FROM:<>\r\n"
                 "RCPT TO:<d@example.org>\r\nDATA\r\n".encode())
        assert raw.reply().startswith("250 2.0.0 Ok: queued as ")
        assert raw.reply() == "250 2.1.0 Sender OK"
        assert raw.reply() == "250 2.1.5 Recipient OK"
        assert raw.reply().startswith("354 ")
        raw.send(b"Subject: bounce\r\n\r\nx\r\n.\r\nQUIT\r\n")
        assert raw.reply().startswith("250 2.0.0 Ok: queued as ")
        assert raw.reply() == "221 2.0.0 Bye"
        first, second = (qm.envelope for qm, _ in gw.stored())
        if first.mail_from == "":
            first, second = second, first
        assert first.recipients == ("b@example.org", "c@example.org")
        assert first.body_type == "8BITMIME"
        assert (second.mail_from, second.body_type) == ("", "7BIT")


def test_smtputf8_transaction(tmp_path: Path) -> None:
    with IntakeHarness(tmp_path, relay_listener()) as gw, RawClient(gw.port) as raw:
        raw.greeting()
        raw.command("EHLO app.example")
        assert raw.command("MAIL FROM:<jörg@例え.jp> SMTPUTF8 BODY=8BITMIME") == (
            "250 2.1.0 Sender OK")
        assert raw.command("RCPT TO:<用户@例子.广告>") == "250 2.1.5 Recipient OK"
        raw.command("DATA")
        raw.send("Subject: ü\r\n\r\nü\r\n.\r\n".encode())
        assert raw.reply().startswith("250 2.0.0 ")
        [(qm, content)] = gw.stored()
        assert qm.envelope.smtputf8 and qm.envelope.body_type == "8BITMIME"
        assert qm.envelope.mail_from == "jörg@例え.jp"
        assert b" with UTF8SMTP id " in content
        assert "for <用户@例子.广告>".encode() in content


def test_helo_session_is_plain_smtp(tmp_path: Path) -> None:
    with IntakeHarness(tmp_path, relay_listener()) as gw, \
            smtplib.SMTP("127.0.0.1", gw.port, local_hostname="old.example") as client:
        client.helo()
        client.sendmail("a@example.com", ["b@example.org"], b"Subject: x\r\n\r\nx\r\n")
        [(qm, content)] = gw.stored()
        assert b"Received: from old.example ([127.0.0.1])\r\n\tby gateway.test with SMTP id " \
            in content
        assert qm.envelope.client.helo == "old.example"


def test_long_lines_are_re_encoded_not_rejected(tmp_path: Path) -> None:
    # Issue 16: a long line is the app's template, not a reason to lose its mail.
    with IntakeHarness(tmp_path, relay_listener()) as gw, \
            smtplib.SMTP("127.0.0.1", gw.port) as client:
        client.ehlo()
        assert client.sendmail("a@example.com", ["b@example.org"],
                               b"Subject: long\r\n\r\n" + b"x" * 999 + b"\r\n") == {}
        # 998 octets is fine as it is, also when the line starts with a (stuffed) dot.
        message = b"Subject: ok\r\n\r\n" + b"y" * 998 + b"\r\n." + b"z" * 997 + b"\r\n"
        assert client.sendmail("a@example.com", ["b@example.org"], message) == {}
        long, ok = sorted(gw.stored(), key=lambda m: b"Subject: ok" in m[1])
        assert b"Content-Transfer-Encoding: quoted-printable\r\n" in long[1]
        assert max(map(len, long[1].split(b"\r\n"))) <= 998
        assert ok[1].endswith(b"y" * 998 + b"\r\n." + b"z" * 997 + b"\r\n")


def test_trace_headers_added_and_existing_ones_kept(tmp_path: Path) -> None:
    with IntakeHarness(tmp_path, relay_listener()) as gw, \
            smtplib.SMTP("127.0.0.1", gw.port, local_hostname="app.example") as client:
        client.sendmail("a@example.com", ["b@example.org"], b"Subject: bare\r\n\r\nx\r\n")
        client.sendmail("a@example.com", ["b@example.org", "c@example.org"],
                        b"Message-ID: <kept@app.example>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000"
                        b"\r\nSubject: complete\r\n\r\nx\r\n")
        bare, complete = sorted(gw.stored(), key=lambda m: b"complete" in m[1])
        qm, content = bare
        assert re.match(
            rb"Received: from app\.example \(\[127\.0\.0\.1\]\)\r\n"
            rb"\tby gateway\.test with ESMTP id " + qm.id.encode() + rb"\r\n"
            rb"\tfor <b@example\.org>; \w{3}, \d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d \+0000\r\n"
            rb"Date: .+\r\nMessage-ID: <[0-9a-f]{32}@gateway\.test>\r\n"
            rb"From: a@example\.com\r\nSubject: bare\r\n",  # From: the envelope's (cleanup)
            content,
        )
        assert qm.envelope.message_id is not None
        assert qm.envelope.message_id.encode() in content
        qm, content = complete
        assert qm.envelope.message_id == "<kept@app.example>"
        assert content.count(b"Message-ID:") == 1 and content.count(b"Date:") == 1
        assert b"for <" not in content  # two recipients: none named


class BuggyAcceptor(Acceptor):
    async def rcpt(self, transaction: Transaction, recipient: str) -> Reply:
        if recipient.startswith("crash"):
            raise RuntimeError("a bug in a recipient check")
        return await super().rcpt(transaction, recipient)


def test_a_bug_in_a_check_is_a_451_not_a_dead_session(tmp_path: Path) -> None:
    with IntakeHarness(tmp_path, relay_listener(), acceptor_class=BuggyAcceptor) as gw, \
            RawClient(gw.port) as raw:
        raw.greeting()
        raw.command("EHLO app.example")
        raw.command("MAIL FROM:<a@example.com>")
        assert raw.command("RCPT TO:<crash@example.org>") == (
            "451 4.3.0 Internal error, try again later")
        assert raw.command("RCPT TO:<fine@example.org>") == "250 2.1.5 Recipient OK"
        raw.command("DATA")
        raw.send(b"Subject: x\r\n\r\nx\r\n.\r\n")
        assert raw.reply().startswith("250 2.0.0 ")
        [(qm, _)] = gw.stored()
        assert qm.envelope.recipients == ("fine@example.org",)


def test_a_failed_starttls_handshake_is_survived(tmp_path: Path) -> None:
    certs = tls.make_certs(tmp_path / "certs")
    with IntakeHarness(tmp_path, submission_listener(certs)) as gw:
        with RawClient(gw.port) as raw:
            raw.greeting()
            raw.command("EHLO app.example")
            assert raw.command("STARTTLS") == "220 2.0.0 Ready to start TLS"
            raw.send(b"this is no TLS ClientHello\r\n" * 8)
            assert raw.closed_by_server()
        with smtplib.SMTP("127.0.0.1", gw.port) as client:
            assert client.starttls(context=certs.client_context())[0] == 220
        assert gw.server is not None and gw.server.session_count <= 1
