"""The DATA body in one read (gateway/intake/data_reader.py): the same message as
aiosmtpd's line reader gives, whatever the chunking, and what follows the end of data
left for the next command."""

from __future__ import annotations

import asyncio

import pytest

from gateway.intake.data_reader import read_data


def stream(*chunks: bytes, limit: int = 1 << 20, eof: bool = True) -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=limit)
    for chunk in chunks:
        reader.feed_data(chunk)
    if eof:
        reader.feed_eof()
    return reader


@pytest.mark.parametrize(("sent", "message"), [
    (b"Subject: x\r\n\r\nhello\r\n.\r\n", b"Subject: x\r\n\r\nhello\r\n"),
    (b".\r\n", b""),  # an empty message
    (b"..leading dot\r\n.\r\n", b".leading dot\r\n"),
    (b"a\r\n..\r\n...x\r\n.\r\n", b"a\r\n.\r\n..x\r\n"),
    # Only <CRLF>.<CRLF> ends the data: a bare LF before the dot is content (smuggling).
    (b"a\n.\r\nMAIL FROM:<x@y>\r\nb\r\n.\r\n", b"a\n.\r\nMAIL FROM:<x@y>\r\nb\r\n"),
    (b"a\r\n.\n\r\nb\r\n.\r\n", b"a\r\n\n\r\nb\r\n"),  # a line ".<LF>": its dot goes
])
async def test_message_as_the_line_reader_gives_it(sent: bytes, message: bytes) -> None:
    assert await read_data(stream(sent), 1000) == message
    # Byte by byte: the end is found across reads too.
    reader = asyncio.StreamReader()
    task = asyncio.ensure_future(read_data(reader, 1000))
    for i in range(len(sent)):
        reader.feed_data(sent[i:i + 1])
        await asyncio.sleep(0)
    assert await task == message


async def test_pipelined_commands_after_the_end_stay_in_the_stream() -> None:
    reader = stream(b"body\r\n.\r\nQUIT\r\n")
    assert await read_data(reader, 1000) == b"body\r\n"
    assert await reader.readuntil(b"\r\n") == b"QUIT\r\n"


async def test_oversized_message_is_read_to_its_end_and_refused() -> None:
    body = b"x" * 70 + b"\r\n"
    sent = body * 100 + b".\r\nRSET\r\n"
    # Over the size limit but within the stream's limit: read, then refused.
    reader = stream(sent)
    assert await read_data(reader, 1000) is None
    assert await reader.readuntil(b"\r\n") == b"RSET\r\n"
    # Over the stream's limit too: discarded as it comes, never held whole.
    reader = stream(*(sent[i:i + 500] for i in range(0, len(sent), 500)), limit=1024)
    assert await read_data(reader, 1000) is None
    assert await reader.readuntil(b"\r\n") == b"RSET\r\n"


async def test_a_client_that_hangs_up_mid_data() -> None:
    with pytest.raises(asyncio.IncompleteReadError):
        await read_data(stream(b"half a message\r\n"), 1000)
    with pytest.raises(asyncio.IncompleteReadError):
        await read_data(stream(b"y" * 5000, limit=1024), 1000)
