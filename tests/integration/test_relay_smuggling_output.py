"""What the gateway relays, byte for byte: SMTP smuggling attempts at intake
never become two messages on the next hop, and nothing a client puts in the
envelope (HELO name, MAIL/RCPT parameters, addresses) can inject a header.

The destination is tests/fixtures/raw_smtp.py, which keeps the raw session.
"""

from __future__ import annotations

import asyncio
import re
import socket
import textwrap
import time
from pathlib import Path

import pytest

from tests.fixtures.gateway import running_gateway, write_config
from tests.fixtures.raw_smtp import RawSmtpServer

BARE = re.compile(rb"\r(?!\n)|(?<!\r)\n")
FAKE_ENDS = [b"\n.\n", b"\r.\r", b"\r\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\r", b"\n.\r",
             b"\r.\n", b"\n..\n", b"\r\n..\r\n.\n"]
SMUGGLED = (b"MAIL FROM:<admin@example.com>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\n"
            b"From: admin@example.com\r\nSubject: smuggled\r\n\r\nsmuggled body\r\n")


def route(port: int) -> str:
    return textwrap.dedent(f"""\
        routes:
          - name: dest
            type: smarthost
            smarthosts:
              - name: dest
                host: 127.0.0.1
                port: {port}
                tls: none
        """)


def session(port: int, lines: list[bytes], content: bytes) -> list[bytes]:
    """Send `lines` one by one (each gets its reply), then DATA with `content`."""
    out = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        reader = sock.makefile("rb")
        out.append(reader.readline())
        for line in lines:
            sock.sendall(line + b"\r\n")
            reply = reader.readline()
            while reply[3:4] == b"-":
                reply = reader.readline()
            out.append(reply)
        sock.sendall(b"DATA\r\n")
        out.append(reader.readline())
        sock.sendall(content + b"\r\n.\r\nQUIT\r\n")
        out.append(reader.readline())
        out.append(reader.readline())
    return out


async def wait_for(server: RawSmtpServer, count: int) -> None:
    deadline = time.monotonic() + 15
    while len(server.messages()) < count:
        assert time.monotonic() < deadline, f"{len(server.messages())} of {count} arrived"
        await asyncio.sleep(0.02)


async def test_fake_ends_of_data_never_split_the_relayed_message(tmp_path: Path) -> None:
    async with RawSmtpServer() as server:
        async with running_gateway(write_config(tmp_path, 0, route=route(server.port))) as gw:
            port = gw.ports["relay"]
            for n, fake_end in enumerate(FAKE_ENDS):
                content = (b"From: user@example.com\r\nSubject: innocent %d\r\n\r\nhello" % n
                           + fake_end + SMUGGLED)
                replies = await asyncio.to_thread(
                    session, port, [b"EHLO client.example", b"MAIL FROM:<user@example.com>",
                                    b"RCPT TO:<friend@example.org>"], content)
                assert replies[-2].startswith(b"250 2.0.0 Ok: queued as ")
                assert replies[-1].startswith(b"221 ")
            await wait_for(server, len(FAKE_ENDS))
            await asyncio.sleep(0.2)  # a split message would arrive as an extra one
        raw = b"".join(bytes(t.raw) for t in server.transcripts)
    assert len(server.messages()) == len(FAKE_ENDS)
    assert not BARE.search(raw)  # only CRLF line ends went over the wire
    commands = [c for t in server.transcripts for c in t.commands]
    assert [c for c in commands if c.startswith(b"MAIL")] == \
        [b"MAIL FROM:<user@example.com>\r\n"] * len(FAKE_ENDS)
    assert [c for c in commands if c.startswith(b"RCPT")] == \
        [b"RCPT TO:<friend@example.org>\r\n"] * len(FAKE_ENDS)
    for message in server.messages():
        # Exactly one end of data, at the end; the smuggled commands are body text.
        assert message.endswith(b"\r\n.\r\n") and message.count(b"\r\n.\r\n") == 1
        # (after a stray CR it is not even a line of its own: the CR became a space)
        assert b"MAIL FROM:<admin@example.com>\r\n" in message


@pytest.mark.parametrize("lines", [
    [b"EHLO evil.example\rX-Injected: helo", b"MAIL FROM:<user@example.com>",
     b"RCPT TO:<friend@example.org>"],
    [b"HELO evil.example\x00\rX-Injected: helo", b"MAIL FROM:<user@example.com>",
     b"RCPT TO:<friend@example.org>"],
    [b"EHLO client.example", b"MAIL FROM:<user@example.com> ENVID=x\rX-Injected: envid",
     b"RCPT TO:<friend@example.org>"],
    [b"EHLO client.example", b"MAIL FROM:<user@example.com> BODY=8BITMIME\rX-Injected: body",
     b"RCPT TO:<friend@example.org> ORCPT=rfc822;x\rX-Injected: orcpt"],
    [b"EHLO client.example", b"MAIL FROM:<\"a\rX-Injected: from\"@example.com>",
     b"MAIL FROM:<user@example.com>", b"RCPT TO:<\"b\rX-Injected: rcpt\"@example.org>",
     b"RCPT TO:<friend@example.org>"],
    [b"EHLO client.example", b"MAIL FROM:<user@example.com>",
     b"RCPT TO:<friend@example.org>\rX-Injected: rcpt"],
], ids=["helo-cr", "helo-nul-cr", "envid", "body-orcpt", "quoted-locals", "rcpt-tail"])
async def test_envelope_input_cannot_inject_headers(tmp_path: Path, lines: list[bytes]) -> None:
    async with RawSmtpServer() as server:
        async with running_gateway(write_config(tmp_path, 0, route=route(server.port))) as gw:
            replies = await asyncio.to_thread(
                session, gw.ports["relay"], lines, b"Subject: clean\r\n\r\nbody")
            if replies[-2].startswith(b"250 "):
                await wait_for(server, 1)
        raw = b"".join(bytes(t.raw) for t in server.transcripts)
    assert not BARE.search(raw)
    for line in raw.split(b"\r\n"):
        assert not line.startswith(b"X-Injected"), raw
    for message in server.messages():
        header = message.split(b"\r\n\r\n", 1)[0]
        # At most inside our Received: line, made harmless ("_"); never a field of its own.
        assert not [line for line in header.split(b"\r\n") if line.startswith(b"X-Injected")]
        received = header.split(b"\r\n")[:3]
        assert all(re.fullmatch(rb"[\t -~]*", line) for line in received), received
