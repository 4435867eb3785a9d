"""Hostile input on a real listener: huge header sections, 10,000 RCPTs, long
lines, NUL bytes, invalid UTF-8, pipelined floods, commands after QUIT, and
STARTTLS command injection (CVE-2011-0411 class).

Each case checks that the session answers sensibly (or closes), that nothing
wrong is stored, and that the listener still serves the next client.
"""

from __future__ import annotations

import re
import socket
import ssl
import time
from pathlib import Path

from gateway.intake.settings import Limits
from tests.fixtures import tls
from tests.fixtures.intake import IntakeHarness, RawClient, relay_listener

REPLY = re.compile(r"^\d{3}[ -]")


def still_serving(gw: IntakeHarness) -> None:
    with RawClient(gw.port) as raw:
        assert raw.greeting().startswith("220 ")
        assert raw.command("NOOP") == "250 2.0.0 OK"


def start_transaction(raw: RawClient) -> None:
    raw.greeting()
    raw.command("EHLO hostile.example")
    assert raw.command("MAIL FROM:<a@example.com>").startswith("250")
    assert raw.command("RCPT TO:<b@example.org>").startswith("250")


def test_huge_header_section(tmp_path: Path) -> None:
    header = b"".join(b"X-Filler-%06d: %s\r\n" % (i, b"v" * 80) for i in range(20_000))
    with IntakeHarness(tmp_path, relay_listener(),
                       limits=Limits(max_message_size=4 * 1024 * 1024)) as gw:
        with RawClient(gw.port, timeout=20) as raw:  # ~2 MB of header fields: accepted
            start_transaction(raw)
            raw.command("DATA")
            raw.send(header + b"\r\nbody\r\n.\r\n")
            assert raw.reply().startswith("250 2.0.0 Ok: queued as ")
        with RawClient(gw.port, timeout=20) as raw:  # over the size limit: refused
            start_transaction(raw)
            raw.command("DATA")
            raw.send(header * 3 + b"\r\nbody\r\n.\r\n")
            assert raw.reply().startswith("552 5.3.4 ")
            assert raw.command("NOOP") == "250 2.0.0 OK"
        [(_, content)] = gw.stored()
        assert content.count(b"\r\nX-Filler-") == 20_000
        still_serving(gw)


def test_ten_thousand_rcpt_commands(tmp_path: Path) -> None:
    limits = Limits(max_recipients=100)
    with IntakeHarness(tmp_path, relay_listener(), limits=limits) as gw, \
            RawClient(gw.port, timeout=30) as raw:
        raw.greeting()
        raw.command("EHLO hostile.example")
        raw.command("MAIL FROM:<a@example.com>")
        started = time.monotonic()
        raw.send(b"".join(b"RCPT TO:<r%05d@example.org>\r\n" % i for i in range(10_000)))
        replies = [raw.reply() for _ in range(10_000)]
        assert replies[:100] == ["250 2.1.5 Recipient OK"] * 100
        assert set(replies[100:]) == {"452 4.5.3 Too many recipients"}
        assert time.monotonic() - started < 20
        raw.command("DATA")
        raw.send(b"Subject: many\r\n\r\nx\r\n.\r\n")
        assert raw.reply().startswith("250 ")
        [(qm, _)] = gw.stored()
        assert len(qm.envelope.recipients) == 100
        still_serving(gw)


def test_long_command_lines_and_long_data_lines(tmp_path: Path) -> None:
    with IntakeHarness(tmp_path, relay_listener()) as gw, RawClient(gw.port) as raw:
        raw.greeting()
        too_long = "500 5.5.2 Command line too long"
        assert raw.command("EHLO " + "h" * 1000) == too_long
        assert raw.command("NOOP " + "x" * 100_000) == too_long
        assert raw.command("MAIL FROM:<" + "a" * 990 + "@example.com>") == too_long
        assert raw.command("NOOP") == "250 2.0.0 OK"
        raw.command("EHLO hostile.example")
        raw.command("MAIL FROM:<a@example.com>")
        raw.command("RCPT TO:<b@example.org>")
        raw.command("DATA")
        raw.send(b"Subject: long\r\n\r\n" + b"y" * 1000 + b"\r\n.\r\n")  # 1,000 octets
        assert raw.reply().startswith("250 ")  # re-encoded by cleanup (issue 16)
        raw.command("MAIL FROM:<a@example.com>")
        raw.command("RCPT TO:<b@example.org>")
        raw.command("DATA")
        raw.send(b"Subject: ok\r\n\r\n" + b"y" * 998 + b"\r\n.\r\n")  # exactly the limit
        assert raw.reply().startswith("250 ")
        assert len(gw.stored()) == 2


def test_nul_bytes(tmp_path: Path) -> None:
    with IntakeHarness(tmp_path, relay_listener()) as gw, RawClient(gw.port) as raw:
        raw.greeting()
        for line in (b"EHLO a\0b", b"\0\0\0", b"MAIL FROM:<a\0@example.com>",
                     b"NO\0OP", b"RCPT TO:<b@example.org>\0"):
            raw.send(line + b"\r\n")
            assert REPLY.match(raw.reply())
        raw.command("RSET")
        start = raw.command("MAIL FROM:<a@example.com>")
        assert start.startswith("250")
        raw.command("RCPT TO:<b@example.org>")
        raw.command("DATA")
        raw.send(b"Subject: nul\0here\r\n\r\nbody \0 with NUL\r\n.\r\n")
        reply = raw.reply()
        assert reply[:1] in "245" and REPLY.match(reply)
        for _, content in gw.stored():
            assert b"Subject: nul" in content  # stored as sent, never cut at the NUL
        assert not any(qm.envelope.mail_from.count("\0") for qm, _ in gw.stored())
        still_serving(gw)


def test_invalid_utf8_in_smtputf8_addresses_and_in_headers(tmp_path: Path) -> None:
    with IntakeHarness(tmp_path, relay_listener()) as gw, RawClient(gw.port) as raw:
        raw.greeting()
        raw.command("EHLO hostile.example")
        raw.send(b"MAIL FROM:<\xff\xfe@example.com> SMTPUTF8\r\n")
        assert raw.reply().startswith("501 5.1.7 ")
        raw.send(b"MAIL FROM:<j\xc3\xbcrgen@example.com> SMTPUTF8\r\n")
        assert raw.reply().startswith("250 ")
        raw.send(b"RCPT TO:<\xc3\x28@example.org>\r\n")
        assert raw.reply().startswith("553 5.1.3 ")
        raw.send(b"RCPT TO:<b@ex\xe2\x82ample.org>\r\n")
        assert raw.reply().startswith("553 5.1.3 ")
        assert raw.command("RCPT TO:<b@example.org>").startswith("250 ")
        raw.command("DATA")
        raw.send(b"Subject: \xff\xfe\xc3\x28 broken\r\nFrom: \xed\xa0\x80@x\r\n\r\n"
                 b"body\xff\r\n.\r\n")
        assert raw.reply().startswith("250 ")
        [(qm, content)] = gw.stored()
        assert qm.envelope.recipients == ("b@example.org",)
        assert b"Subject: \xff\xfe\xc3\x28 broken\r\n" in content  # octets kept, not mangled
        still_serving(gw)


def test_pipelined_command_flood(tmp_path: Path) -> None:
    with IntakeHarness(tmp_path, relay_listener()) as gw, RawClient(gw.port, timeout=30) as raw:
        raw.greeting()
        raw.command("EHLO hostile.example")
        raw.send(b"NOOP\r\nRSET\r\nHELP\r\nVRFY x\r\nMAIL FROM:<a@example.com>\r\n" * 2000)
        replies = [raw.reply() for _ in range(10_000)]
        assert all(REPLY.match(r) for r in replies)
        assert raw.command("NOOP") == "250 2.0.0 OK"  # nothing left over
        still_serving(gw)


def test_a_flood_of_unknown_commands_ends_the_session(tmp_path: Path) -> None:
    with IntakeHarness(tmp_path, relay_listener()) as gw, RawClient(gw.port, timeout=10) as raw:
        raw.greeting()
        raw.send(b"BOGUS\r\n" * 10_000)
        replies: list[str] = []
        try:
            while len(replies) < 10_000:
                replies.append(raw.reply())
        except (ConnectionError, OSError):
            pass  # closed (reset: it left the rest of the flood unread)
        assert 0 < len(replies) < 100
        assert all(r.startswith("5") and REPLY.match(r) for r in replies)
        still_serving(gw)


def test_commands_after_quit_are_ignored(tmp_path: Path) -> None:
    with IntakeHarness(tmp_path, relay_listener()) as gw, RawClient(gw.port) as raw:
        raw.greeting()
        raw.command("EHLO hostile.example")
        raw.send(b"QUIT\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\n"
                 b"DATA\r\nSubject: after quit\r\n\r\nx\r\n.\r\n")
        assert raw.reply() == "221 2.0.0 Bye"
        assert raw.closed_by_server()
        assert raw._buffer == b""  # no reply to anything after QUIT
        assert gw.stored() == []


def _tls_client(raw: RawClient) -> ssl.SSLSocket:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context.wrap_socket(raw.sock, server_hostname="gateway.test")


def _tls_reply(sock: ssl.SSLSocket) -> str:
    data = b""
    while True:
        data += sock.recv(4096)
        lines = data.split(b"\r\n")
        if len(lines) > 1 and all(len(line) >= 4 for line in lines[:-1]) \
                and lines[-2][3:4] == b" ":
            return data.decode()


def test_plaintext_pipelined_after_starttls_is_discarded(tmp_path: Path) -> None:
    certs = tls.make_certs(tmp_path)
    listener = relay_listener(tls="starttls", certs=certs)
    with IntakeHarness(tmp_path, listener) as gw, RawClient(gw.port) as raw:
        raw.greeting()
        raw.command("EHLO hostile.example")
        raw.send(b"STARTTLS\r\nMAIL FROM:<injected@example.com>\r\n"
                 b"RCPT TO:<victim@example.org>\r\n")
        assert raw.reply() == "220 2.0.0 Ready to start TLS"
        assert raw._buffer == b""
        sock = _tls_client(raw)
        sock.sendall(b"EHLO client.example\r\n")
        assert _tls_reply(sock).startswith("250-")
        sock.sendall(b"RCPT TO:<victim@example.org>\r\n")
        # The injected MAIL was never run: there is no transaction.
        assert _tls_reply(sock).startswith("503 5.5.1 ")
        sock.sendall(b"QUIT\r\n")
        assert _tls_reply(sock).startswith("221 ")
        sock.close()
        assert gw.stored() == []


def test_many_connections_that_send_garbage_and_vanish(tmp_path: Path) -> None:
    with IntakeHarness(tmp_path, relay_listener()) as gw:
        for i in range(100):
            sock = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
            sock.sendall(bytes(range(256)) * (i % 5 + 1))
            if i % 2:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            sock.close()
        # Settled: no session for a while (some connections may still wait in the backlog),
        # and no per-address count left behind.
        server = gw.server
        assert server is not None
        deadline = time.monotonic() + 10
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < 0.3:
            assert time.monotonic() < deadline, server
            if server.session_count:
                quiet_since = time.monotonic()
            time.sleep(0.02)
        assert server._per_ip == {}
        still_serving(gw)


def test_client_bytes_echoed_in_a_reply_cannot_forge_a_reply_line(tmp_path: Path) -> None:
    with IntakeHarness(tmp_path, relay_listener()) as gw, RawClient(gw.port) as raw:
        raw.greeting()
        raw.send(b"FOO\r250\x002.0.0\xffforged\r\n")
        reply = raw.reply()
        assert reply.startswith("500 5.5.2 ")
        assert reply.isascii() and reply.isprintable()  # no CR, NUL or 8-bit echoed back
        still_serving(gw)


def test_starttls_then_hanging_up_or_going_silent_frees_the_session(tmp_path: Path) -> None:
    """A client that says STARTTLS and never does the handshake — hangs up, or just
    sits there until the idle timeout — must not keep its session slot."""
    certs = tls.make_certs(tmp_path)
    limits = Limits(max_sessions=4, max_sessions_per_ip=2, command_timeout=0.3)
    listener = relay_listener(tls="starttls", certs=certs)
    with IntakeHarness(tmp_path, listener, limits=limits) as gw:
        for n in range(6):
            with RawClient(gw.port) as raw:
                raw.greeting()
                raw.command("EHLO hostile.example")
                assert raw.command("STARTTLS") == "220 2.0.0 Ready to start TLS"
                if n % 2:
                    assert raw.closed_by_server()  # silent: closed at the idle timeout
        server = gw.server
        assert server is not None
        deadline = time.monotonic() + 5
        while server.session_count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.session_count == 0
        assert server._per_ip == {}
        still_serving(gw)
