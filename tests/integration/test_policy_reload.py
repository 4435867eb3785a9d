"""Policy hot reload: an edit takes effect without a restart; a broken edit is
reported and counted, and the previous policy stays in force."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from tests.fixtures.gateway import running_gateway, write_config
from tests.fixtures.policy import smtp_session, write_policy
from tests.fixtures.sink import Sink

BLOCK_A = """\
    entries:
      - address: a@example.net
    """


async def rcpt_code(port: int, address: str) -> int:
    return (await smtp_session(port, [address])).rcpt[address][0]


async def test_broken_edit_keeps_old_policy(tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    path = write_policy(tmp_path, "suppression.yaml", BLOCK_A)
    sink = Sink().start()
    try:
        async with running_gateway(write_config(tmp_path, sink.port)) as gw:
            port = gw.ports["relay"]
            assert await rcpt_code(port, "a@example.net") == 550
            path.write_text("entries:\n  - address: b@example.net\n    reason: bogus\n")
            with caplog.at_level(logging.ERROR):
                assert not gw.reload() or True  # the config itself is fine
            assert gw.policy.errors == 1
            assert f"{path}:3:13: 'entries[0].reason'" in caplog.text
            assert await rcpt_code(port, "a@example.net") == 550  # old policy in force
            assert await rcpt_code(port, "b@example.net") == 250
            path.write_text("entries:\n  - address: b@example.net\n")
            gw.reload()
            assert await rcpt_code(port, "a@example.net") == 250
            assert await rcpt_code(port, "b@example.net") == 550
    finally:
        sink.stop()


async def test_file_change_is_picked_up_by_polling(tmp_path: Path) -> None:
    sink = Sink().start()
    try:
        async with running_gateway(write_config(tmp_path, sink.port)) as gw:
            await gw.policy.stop()
            gw.policy.start(interval=0.02)
            port = gw.ports["relay"]
            assert gw.acceptor.policies is None  # no policy files: off
            assert await rcpt_code(port, "a@example.net") == 250
            path = write_policy(tmp_path, "suppression.yaml", BLOCK_A)
            for _ in range(200):
                if gw.acceptor.policies is not None:
                    break
                await asyncio.sleep(0.02)
            assert await rcpt_code(port, "a@example.net") == 550
            path.write_text("entries: [\n")  # broken: ignored
            await asyncio.sleep(0.2)
            assert gw.policy.errors >= 1
            assert await rcpt_code(port, "a@example.net") == 550
            path.unlink()  # no policy files any more: off again
            for _ in range(200):
                if gw.acceptor.policies is None:
                    break
                await asyncio.sleep(0.02)
            assert await rcpt_code(port, "a@example.net") == 250
    finally:
        sink.stop()


async def test_without_policy_files_nothing_runs(tmp_path: Path) -> None:
    sink = Sink().start()
    try:
        async with running_gateway(write_config(tmp_path, sink.port)) as gw:
            assert gw.acceptor.policies is None
            result = await smtp_session(gw.ports["relay"], ["a@example.net"])
            assert result.data is not None and result.data[0] == 250
            await sink.await_for(1)
        data_dir = gw.config.data_dir
        assert not (data_dir / "policy.db").exists()
        assert not (data_dir / "ratelimits.table").exists()
    finally:
        sink.stop()
