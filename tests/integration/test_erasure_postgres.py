"""Erasure with two gateway nodes sharing PostgreSQL: `POST /v1/erasure` on node A and
`smtp-gateway erase` with node B's config take the address out of every shared table,
and the erased-but-suppressed address is still refused at the next RCPT on both
nodes (they share the erasure key)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from gateway.config import load_config
from gateway.errors import ConfigError
from tests.fixtures.admin import Api, admin_section
from tests.fixtures.backends import pg_database, pg_dsn, share_erasure_key
from tests.fixtures.gateway import GatewayProcess, running_gateway, write_config
from tests.fixtures.net import free_port
from tests.fixtures.policy import write_policy
from tests.fixtures.sink import Sink
from tests.integration.test_erasure import rcpt

__all__ = ["pg_database", "pg_dsn"]  # fixtures, imported for pytest

REFUSED = (550, "5.7.1 Recipient address is suppressed (complaint)")
TABLES = ("events", "message_tags", "suppressions", "consent", "audit")


def node_config(directory: Path, sink_port: int, dsn: str, admin: bool = False) -> Path:
    directory.mkdir()
    extra = admin_section(directory, port=free_port()) if admin else ""
    write_policy(directory, "suppression.yaml", "entries: []\n")
    return write_config(directory, sink_port, extra=f"state: {dsn}\n" + extra)


def cli(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


async def rows_naming(db: asyncpg.Connection, address: str) -> dict[str, int]:
    """Rows of the shared tables whose text names `address` (or a +tag of it)."""
    local, domain = address.split("@")
    out = {}
    for table in TABLES:
        out[table] = int(await db.fetchval(
            f"SELECT count(*) FROM {table} t WHERE t::text ~* $1",
            rf"(^|[^a-z0-9.]){local}(\+[^@]*)?@{domain}"))
    return out


async def test_erasure_on_either_node_keeps_the_suppression_on_both(
        tmp_path: Path, pg_dsn: str) -> None:
    sink = Sink().start()
    a_config = node_config(tmp_path / "a", sink.port, pg_dsn, admin=True)
    b_config = node_config(tmp_path / "b", sink.port, pg_dsn)
    share_erasure_key(tmp_path / "a" / "var", tmp_path / "b" / "var")
    cli("db", "migrate", "-c", str(a_config))
    a, b = GatewayProcess(a_config).start(), GatewayProcess(b_config).start()
    db = await asyncpg.connect(pg_dsn)
    try:
        for node, guest in ((a, "guest@example.net"), (b, "Other+Tag@Example.org")):
            assert (await asyncio.to_thread(rcpt, node.port, guest))[0] == 250
        await sink.await_for(2)
        for guest in ("guest@example.net", "other@example.org"):
            cli("suppress", "add", guest, "--reason", "complaint", "--note", f"ARF: {guest}",
                "-c", str(a_config))
            assert await asyncio.to_thread(rcpt, b.port, guest) == REFUSED
        for _ in range(200):  # bounded: the nodes' event batches reach the database
            named = await rows_naming(db, "guest@example.net")
            if named["events"] >= 3:  # accepted, delivered, rejected
                break
            await asyncio.sleep(0.05)
        assert named["suppressions"] == 1 and named["audit"] >= 1

        api = Api(_admin_port(a_config))
        erased = await api.post("/v1/erasure", json_body={"address": "guest@example.net"})
        assert erased.status == 200, erased.text
        assert erased.json["changed"]["suppressions"] == 1
        assert erased.json["changed"]["events"] >= 3 and erased.json["checkpointed"] is True
        assert await rows_naming(db, "guest@example.net") == dict.fromkeys(TABLES, 0)
        out = cli("erase", "other@example.org", "-c", str(b_config), "--by", "dpo")
        assert "erased; the address is now erased:" in out
        assert await rows_naming(db, "other@example.org") == dict.fromkeys(TABLES, 0)

        # The suppressions hold, under the hash, on both nodes.
        for node in (a, b):
            for guest in ("GUEST@example.net", "other@example.org"):
                assert await asyncio.to_thread(rcpt, node.port, guest) == REFUSED
        audit = await db.fetch("SELECT actor, detail FROM audit WHERE action = 'erase'")
        assert sorted(r[0] for r in audit) == ["api:admin", "dpo"]
        assert all("@" not in r[1] for r in audit)  # counts and the hash, no address
    finally:
        await db.close()
        a.stop_hard()
        b.stop_hard()
        sink.stop()


def _admin_port(config: Path) -> int:
    admin = load_config(config).admin
    assert admin is not None
    return admin.port


async def test_a_node_with_another_erasure_key_refuses_to_start(
        tmp_path: Path, pg_dsn: str) -> None:
    sink = Sink().start()
    try:
        configs = [node_config(tmp_path / n, sink.port, pg_dsn) for n in "ab"]
        cli("db", "migrate", "-c", str(configs[0]))
        async with running_gateway(configs[0]):
            pass  # the first node stores its key's fingerprint
        with pytest.raises(ConfigError, match="not the one the other nodes sharing the state"):
            async with running_gateway(configs[1]):  # a key of its own, made at start
                pass
        # With the first node's key copied to it, it starts.
        (tmp_path / "b" / "var" / "erasure.key").write_bytes(
            (tmp_path / "a" / "var" / "erasure.key").read_bytes())
        async with running_gateway(configs[1]):
            pass
    finally:
        sink.stop()
