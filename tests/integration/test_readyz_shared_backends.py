"""/readyz of one node of a cluster (issue 8): it names the node and reports each
shared backend as this node sees it. PostgreSQL goes away behind a TCP forwarder
(tests/fixtures/tcp_proxy.py; the real server, which other tests share, keeps
running): 503 naming it, Redis still up; back → ready again; then Redis goes."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from urllib.parse import urlsplit

from tests.fixtures.admin import Api, admin_section
from tests.fixtures.backends import REDIS_URL, pg_database, pg_dsn, redis_prefix
from tests.fixtures.gateway import running_gateway, write_config
from tests.fixtures.sink import Sink
from tests.fixtures.tcp_proxy import TcpProxy

__all__ = ["pg_database", "pg_dsn", "redis_prefix"]  # fixtures, imported for pytest


def through(dsn: str, port: int) -> str:
    return f"postgresql://postgres@127.0.0.1:{port}{urlsplit(dsn).path}"


async def test_readyz_names_the_node_and_a_database_it_cannot_reach(
        tmp_path: Path, pg_dsn: str, redis_prefix: str) -> None:
    database = TcpProxy(5432).start()
    redis_url = urlsplit(REDIS_URL)
    redis = TcpProxy(redis_url.port or 6379).start()
    sink = Sink().start()
    extra = (f"node_name: gw-a\nstate: {through(pg_dsn, database.port)}\n"
             f"rate_limits: redis://127.0.0.1:{redis.port}{redis_url.path}\n"
             f"rate_limits_prefix: \"{redis_prefix}\"\n")
    config = write_config(tmp_path, sink.port, extra=extra + admin_section(tmp_path))
    try:
        async with running_gateway(config) as gw:
            assert gw.admin is not None
            api = Api(gw.admin.port, None)  # a load balancer has no token
            ready = await api.get("/readyz")
            assert ready.status == 200, ready.text
            assert ready.json["status"] == "ready" and ready.json["node"] == "gw-a"
            assert ready.json["backends"] == {
                "postgresql": {"state": "up", "last_error": None, "last_error_age": None},
                "redis": {"state": "up", "last_error": None, "last_error_age": None}}

            database.cut()
            down = await api.get("/readyz")
            assert down.status == 503, down.text
            error = down.json["error"]
            assert error["code"] == "not_ready" and error["node"] == "gw-a"
            (reason,) = error["reasons"]
            assert reason.startswith("postgresql is unreachable (")
            pg = error["backends"]["postgresql"]
            assert pg["state"] == "down" and pg["last_error"]
            assert 0 <= pg["last_error_age"] < 5
            assert error["backends"]["redis"]["state"] == "up"
            assert "postgresql is unreachable" in error["message"]

            database.start()  # back: a probe after the backoff reconnects
            deadline = time.monotonic() + 30
            while (again := await api.get("/readyz")).status != 200:
                assert again.status == 503 and time.monotonic() < deadline, again.text
                await asyncio.sleep(0.1)
            pg = again.json["backends"]["postgresql"]
            assert pg["state"] == "up"
            assert pg["last_error"] == error["backends"]["postgresql"]["last_error"]
            assert pg["last_error_age"] >= error["backends"]["postgresql"]["last_error_age"]

            redis.cut()  # the other shared backend, named the same way
            down = await api.get("/readyz")
            assert down.status == 503, down.text
            assert [r.split(" (")[0] for r in down.json["error"]["reasons"]] == [
                "redis is unreachable"]
            assert down.json["error"]["backends"]["redis"]["state"] == "down"
            assert down.json["error"]["backends"]["postgresql"]["state"] == "up"
    finally:
        database.cut()
        redis.cut()
        sink.stop()
