"""The DATA body in one read: everything up to <CRLF>.<CRLF>, found by the stream's
own buffer search, then dot-unstuffed with one bytes.replace (Postfix's smtpd reads
DATA in buffered records too; aiosmtpd reads it a line at a time).

Why: aiosmtpd 1.4.6 awaits one `readuntil(b"\\r\\n")` per line — about 700 for a
50 KiB message, each a coroutine step, a buffer search and a list append — and
joins the lines afterwards (BENCHMARKS.md, issue 15). Here the end of data is
searched for in C (`StreamReader.readuntil` with the five-octet terminator),
and the message is copied a few times, not split and joined.

The same rules as aiosmtpd's reader: only <CRLF>.<CRLF> ends the data (a bare
LF before the dot does not: the SMTP smuggling fix of aiosmtpd 1.4.6), a line
that starts with "." loses that dot (RFC 5321 4.5.2), and a message over the size
limit is read to its end and refused afterwards (552, RFC 5321 4.2.5), without
keeping it in memory.

Security: reads untrusted input from the network; memory is bounded by the size
limit (the stream's limit during DATA) plus one read while an oversized message is
discarded.
"""

from __future__ import annotations

import asyncio

__all__ = ["TERMINATOR", "read_data"]

TERMINATOR = b"\r\n.\r\n"
_DISCARD_CHUNK = 65536


async def read_data(reader: asyncio.StreamReader, size_limit: int) -> bytes | None:
    """The message (dot-unstuffed), or None when it was larger than `size_limit` octets.

    Raises asyncio.IncompleteReadError when the client hangs up before the end."""
    # The CRLF that ended the DATA command starts the data: with it, a first line
    # "." ends an empty message like any later one, and every line start is a CRLF.
    _unread(reader, b"\r\n")
    try:
        raw = await reader.readuntil(TERMINATOR)
    except asyncio.LimitOverrunError:
        await _discard(reader)
        return None
    if size_limit and len(raw) - len(TERMINATOR) > size_limit:
        return None
    text = raw[:-3]  # keep the CRLF that ends the last line
    if text.find(b"\r\n.") >= 0:
        text = text.replace(b"\r\n.", b"\r\n")
    return text[2:]


async def _discard(reader: asyncio.StreamReader) -> None:
    """Read and drop everything up to the terminator; what follows it (pipelined
    commands) stays in the stream."""
    tail = b""
    while True:
        chunk = await reader.read(_DISCARD_CHUNK)
        if not chunk:
            raise asyncio.IncompleteReadError(tail, None)
        window = tail + chunk
        end = window.find(TERMINATOR)
        if end >= 0:
            _unread(reader, window[end + len(TERMINATOR):])
            return
        tail = window[-(len(TERMINATOR) - 1):]


def _unread(reader: asyncio.StreamReader, data: bytes) -> None:
    """Put `data` back in front of the stream (StreamReader has no unread; its buffer
    is a bytearray that its read methods consume from the front)."""
    if data:
        reader._buffer[0:0] = data  # type: ignore[attr-defined]
