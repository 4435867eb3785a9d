"""The admin API with the shared state database away (issue 8): every endpoint
that reads or writes policy state answers 503 `state_unavailable` with a
Retry-After, as JSON — never a 500 — and works again once the database is back."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from urllib.parse import urlsplit

from tests.fixtures.admin import Api, admin_section
from tests.fixtures.backends import pg_database, pg_dsn
from tests.fixtures.gateway import running_gateway, write_config
from tests.fixtures.sink import Sink
from tests.fixtures.tcp_proxy import TcpProxy

__all__ = ["pg_database", "pg_dsn"]  # fixtures, imported for pytest


async def test_state_endpoints_answer_503_while_the_database_is_away(
        tmp_path: Path, pg_dsn: str) -> None:
    database = TcpProxy(5432).start()
    sink = Sink().start()
    dsn = f"postgresql://postgres@127.0.0.1:{database.port}{urlsplit(pg_dsn).path}"
    config = write_config(tmp_path, sink.port, extra=f"state: {dsn}\n" + admin_section(tmp_path))
    try:
        async with running_gateway(config) as gw:
            assert gw.admin is not None
            api = Api(gw.admin.port)
            assert (await api.get("/v1/suppressions")).status == 200
            database.cut()
            calls = [api.get("/v1/suppressions"), api.get("/v1/consent/guest@example.net"),
                     api.post("/v1/suppressions", json_body={"target": "guest@example.net"}),
                     api.post("/v1/erasure", json_body={"address": "guest@example.net"}),
                     api.get("/v1/trace?message_id=%3Cx%40example.com%3E")]
            for call in calls:
                reply = await call
                assert reply.status == 503, reply.text
                assert reply.json["error"]["code"] == "state_unavailable", reply.text
                assert reply.headers["Retry-After"] == "5"
            database.start()
            deadline = time.monotonic() + 30
            while (again := await api.get("/v1/suppressions")).status != 200:
                assert again.status == 503 and time.monotonic() < deadline, again.text
                await asyncio.sleep(0.2)
    finally:
        database.cut()
        sink.stop()
