"""Fetching an MTA-STS policy file: one HTTPS/1.1 GET, the way RFC 8461 section 3.3 asks.

`https://mta-sts.<domain>/.well-known/mta-sts.txt`, with the server's certificate
checked against the trust store (the system's or `delivery.ca_file`) for that
host name; HTTP 200 only (a redirect is not followed, section 3.3); media type
text/plain; at most 64 KiB; the whole fetch within a time limit. The host's
addresses come from the caller (the gateway's own resolver, `delivery.dns`).

Written on asyncio streams rather than aiohttp, so that each of those rules is a
line here, and the name is resolved by the resolver delivery uses.

Errors are FetchError with the RFC 8460 result type a TLS report gives them:
`sts-webpki-invalid` (certificate), `sts-policy-fetch-error` (anything else).

Security: reads an untrusted HTTP response: the header block and body are bounded
(MAX_HEADER, MAX_BODY) before anything is parsed; only the status, Content-Type,
Content-Length and Transfer-Encoding fields are read.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

__all__ = ["MAX_BODY", "FetchError", "fetch_policy", "policy_url"]

MAX_BODY = 64 * 1024  # RFC 8461 section 3.3 suggests 64 KiB as the limit
MAX_HEADER = 16 * 1024
WEBPKI_INVALID = "sts-webpki-invalid"
FETCH_ERROR = "sts-policy-fetch-error"


class FetchError(Exception):
    def __init__(self, result_type: str, detail: str) -> None:
        super().__init__(detail)
        self.result_type = result_type
        self.detail = detail


def policy_url(domain: str, port: int = 443) -> str:
    where = f"mta-sts.{domain}" + ("" if port == 443 else f":{port}")
    return f"https://{where}/.well-known/mta-sts.txt"


async def fetch_policy(domain: str, addresses: tuple[str, ...], port: int,
                       context: ssl.SSLContext, timeout: float) -> str:
    """The policy file's text from the first address that answers; FetchError if none."""
    host = f"mta-sts.{domain}"
    if not addresses:
        raise FetchError(FETCH_ERROR, f"{host} has no address")
    last = FetchError(FETCH_ERROR, f"{host}: no address answered")
    try:
        async with asyncio.timeout(timeout):
            for address in addresses:
                try:
                    return await _get(host, address, port, context)
                except FetchError as exc:
                    if exc.result_type == WEBPKI_INVALID or not exc.detail.startswith("connect"):
                        raise  # the server answered: another address would say the same
                    last = exc
    except TimeoutError:
        raise FetchError(FETCH_ERROR, f"{policy_url(domain, port)}: no answer within "
                         f"{timeout:g}s") from None
    raise last


async def _get(host: str, address: str, port: int, context: ssl.SSLContext) -> str:
    try:
        reader, writer = await asyncio.open_connection(address, port, ssl=context,
                                                       server_hostname=host)
    except ssl.SSLCertVerificationError as exc:
        raise FetchError(WEBPKI_INVALID, f"{host}: certificate not valid: "
                         f"{exc.verify_message or exc.reason}") from None
    except ssl.SSLError as exc:
        raise FetchError(FETCH_ERROR, f"TLS with {host} [{address}]: {exc.reason}") from None
    except OSError as exc:
        raise FetchError(FETCH_ERROR, f"connect to {host} [{address}]:{port}: "
                         f"{exc.strerror or exc}") from None
    try:
        writer.write((f"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: {host}\r\n"
                      "User-Agent: smtp-gateway\r\nAccept: text/plain\r\n"
                      "Connection: close\r\n\r\n").encode("ascii"))
        await writer.drain()
        return await _response(host, reader)
    except (OSError, ssl.SSLError, asyncio.IncompleteReadError) as exc:
        raise FetchError(FETCH_ERROR, f"reading from {host}: {exc}") from None
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()  # bounded by fetch_policy's time limit


async def _response(host: str, reader: asyncio.StreamReader) -> str:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise FetchError(FETCH_ERROR, f"{host}: response header too long") from None
    if len(head) > MAX_HEADER:
        raise FetchError(FETCH_ERROR, f"{host}: response header too long")
    status, fields = _head(host, head)
    if status != 200:
        # Section 3.3: "HTTP 3xx redirects MUST NOT be followed"; anything else failed.
        raise FetchError(FETCH_ERROR, f"{host}: HTTP status {status}, not 200")
    media = fields.get("content-type", "").split(";")[0].strip().lower()
    if media != "text/plain":
        raise FetchError(FETCH_ERROR, f"{host}: media type {media or '(none)'!r}, "
                         "not text/plain")
    body = await _body(host, reader, fields)
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise FetchError("sts-policy-invalid", f"{host}: the policy is not UTF-8") from None


def _head(host: str, head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise FetchError(FETCH_ERROR, f"{host}: not an HTTP/1.x response: {lines[0][:60]!r}")
    fields: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon:
            fields[name.strip().lower()] = value.strip()
    return int(parts[1]), fields


async def _body(host: str, reader: asyncio.StreamReader, fields: dict[str, str]) -> bytes:
    too_big = FetchError(FETCH_ERROR, f"{host}: the policy is larger than {MAX_BODY} bytes")
    if "chunked" in fields.get("transfer-encoding", "").lower():
        return await _chunked(host, reader, too_big)
    length = fields.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise FetchError(FETCH_ERROR, f"{host}: bad Content-Length {length[:20]!r}")
        if int(length) > MAX_BODY:
            raise too_big
        return await reader.readexactly(int(length))
    body = await reader.read(MAX_BODY + 1)  # until the server closes
    while body and len(body) <= MAX_BODY:
        more = await reader.read(MAX_BODY + 1 - len(body))
        if not more:
            break
        body += more
    if len(body) > MAX_BODY:
        raise too_big
    return body


async def _chunked(host: str, reader: asyncio.StreamReader, too_big: FetchError) -> bytes:
    body = b""
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size_text = size_line.split(b";")[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise FetchError(FETCH_ERROR, f"{host}: bad chunk size {size_text[:20]!r}") from None
        if size == 0:
            return body
        if len(body) + size > MAX_BODY:
            raise too_big
        body += await reader.readexactly(size)
        await reader.readexactly(2)  # the chunk's CRLF
