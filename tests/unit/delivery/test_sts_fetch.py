"""The MTA-STS policy fetch against raw HTTPS responses from a real TLS server on
127.0.0.1: the limits and refusals of RFC 8461 section 3.3, one per case."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from gateway.delivery.sts_fetch import FetchError, fetch_policy
from tests.fixtures.net import free_port
from tests.fixtures.tls import TestCerts as Certs
from tests.fixtures.tls import make_certs

POLICY = b"version: STSv1\r\nmode: enforce\r\nmx: mx.a.example\r\nmax_age: 86400\r\n"
HOST = "mta-sts.a.example"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("fetch-certs"), (HOST,))


Serve = Callable[[bytes | None], Awaitable[int]]


@pytest.fixture
async def serve(certs: Certs) -> AsyncIterator[Serve]:
    """await serve(raw) → the port of a TLS server answering every request with `raw`,
    then closing (None: never answering)."""
    servers: list[asyncio.Server] = []

    async def start(raw: bytes | None) -> int:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            if raw is None:
                await asyncio.sleep(30)
            else:
                writer.write(raw)
                await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0,
                                            ssl=certs.server_context())
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    yield start
    for server in servers:
        server.close()


async def fetch(port: int, certs: Certs, *, addresses: tuple[str, ...] = ("127.0.0.1",),
                timeout: float = 5.0) -> str:
    context = ssl.create_default_context(cafile=str(certs.ca_file))
    return await fetch_policy("a.example", addresses, port, context, timeout)


@pytest.mark.parametrize(("raw", "why"), [
    (b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", "HTTP status 404, not 200"),
    (b"HTTP/1.1 301 Moved\r\nLocation: https://x/\r\nContent-Length: 0\r\n\r\n",
     "HTTP status 301"),
    (b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 2\r\n\r\nhi",
     "media type 'text/html'"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi", r"media type '\(none\)'"),
    (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 70000\r\n\r\n",
     "larger than 65536 bytes"),
    (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + b"x" * 70_000,
     "larger than 65536 bytes"),
    (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP/1.x response"),
    (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 99\r\n\r\nshort",
     "reading from mta-sts.a.example"),
])
async def test_responses_that_are_refused(serve: Serve, certs: Certs,
                                          raw: bytes, why: str) -> None:
    port = await serve(raw)
    with pytest.raises(FetchError, match=why) as info:
        await asyncio.wait_for(fetch(port, certs), 10)
    assert info.value.result_type == "sts-policy-fetch-error"


async def test_a_body_until_the_server_closes(serve: Serve,
                                              certs: Certs) -> None:
    port = await serve(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain; charset=utf-8"
                                b"\r\n\r\n" + POLICY)
    assert await fetch(port, certs) == POLICY.decode()


async def test_the_next_address_when_one_refuses_the_connection(
        serve: Serve, certs: Certs) -> None:
    port = await serve(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                b"Content-Length: %d\r\n\r\n" % len(POLICY) + POLICY)
    # 127.0.0.2 has nothing listening on that port: refused, then 127.0.0.1 answers.
    assert await fetch(port, certs, addresses=("127.0.0.2", "127.0.0.1")) == POLICY.decode()


async def test_a_server_that_never_answers_runs_into_the_time_limit(
        serve: Serve, certs: Certs) -> None:
    port = await serve(None)
    with pytest.raises(FetchError, match=r"no answer within 0.5s"):
        await fetch(port, certs, timeout=0.5)


async def test_a_certificate_for_another_name_is_a_webpki_failure(tmp_path: Path) -> None:
    other = make_certs(tmp_path / "other", ("mta-sts.b.example",))
    port = free_port()
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port,
                                        ssl=other.server_context())
    try:
        with pytest.raises(FetchError) as info:
            await fetch(port, other)
    finally:
        server.close()
    assert info.value.result_type == "sts-webpki-invalid"
    assert "certificate not valid" in info.value.detail
