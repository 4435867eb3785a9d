"""Key rotation: a new selector becomes active with a config change and a reload,
while messages keep flowing; every one of them arrives signed and verifying."""

from __future__ import annotations

import asyncio
import smtplib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.config import load_config
from tests.fixtures.dkim import KeySet, dkim_section, signatures, verify_dkimpy, verify_perl
from tests.fixtures.dns import NsdServer, running_nsd
from tests.fixtures.gateway import running_gateway, write_config
from tests.fixtures.sink import Sink

MESSAGE = (b"From: app@example.com\r\nTo: guest@example.net\r\nSubject: n=%d\r\n\r\n"
           b"message %d\r\n")


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeySet:
    keys = KeySet(tmp_path_factory.mktemp("dkim-keys"))
    keys.add("example.com", "2024", "rsa")
    keys.add("example.com", "2025", "rsa")
    keys.add("example.com", "2025ed", "ed25519")
    return keys


@pytest.fixture(scope="module")
def nsd(keys: KeySet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NsdServer]:
    with running_nsd(tmp_path_factory.mktemp("nsd"), keys.zones()) as server:
        yield server


def send_many(port: int, count: int, stop: threading.Event | None = None,
              sent: list[int] | None = None) -> None:
    """One session, messages back to back as a busy app sends them, until `count`
    are sent or `stop` is set."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("app.test")
        for n in range(count):
            if stop is not None and stop.is_set():
                return
            client.sendmail("app@example.com", ["guest@example.net"], MESSAGE % (n, n))
            if sent is not None:
                sent.append(n)


async def sent_at_least(sent: list[int], count: int) -> None:
    for _ in range(2000):
        if len(sent) >= count:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"only {len(sent)} messages sent, expected {count}")


async def test_rotation_across_reloads_leaves_no_message_unsigned(
        tmp_path: Path, keys: KeySet, nsd: NsdServer) -> None:
    sink = Sink().start()
    stages = [dkim_section(keys, ["2024"]), dkim_section(keys, ["2025"]),
              dkim_section(keys, ["2025", "2025ed"], dual_sign=True)]
    config = write_config(tmp_path, sink.port, extra=stages[0])
    base = config.read_text()
    stop, sent = threading.Event(), list[int]()
    try:
        async with running_gateway(config) as gw:
            sending = asyncio.create_task(asyncio.to_thread(
                send_many, gw.ports["relay"], 500, stop, sent))
            try:
                for stage in stages[1:]:
                    await sent_at_least(sent, len(sent) + 8)  # reload mid-stream
                    config.write_text(base.replace(stages[0], stage))
                    assert gw.reload()
                await sent_at_least(sent, len(sent) + 8)
            finally:
                stop.set()
                await sending
            received = await sink.await_for(len(sent))
            counters = gw.signing_counters
            assert (counters.signed, counters.unsigned, counters.failed) == (len(sent), 0, 0)
    finally:
        sink.stop()
    selectors = []
    received.sort(key=lambda got: int(got.data.split(b"Subject: n=")[1].split(b"\r\n")[0]))
    for got in received:
        sigs = [s[b"s"].decode() for s in signatures(got.data)]
        assert sigs, got.data[:300]
        assert verify_dkimpy(got.data, nsd) == [True] * len(sigs)
        selectors.append(tuple(sigs))
    # In the order they were sent, the old key gives way to the new one, then to dual
    # signing: each message was signed with the keys in force when it was accepted.
    stage_of = {("2024",): 0, ("2025",): 1, ("2025", "2025ed"): 2}
    stages_seen = [stage_of[s] for s in selectors]
    assert stages_seen == sorted(stages_seen) and set(stages_seen) == {0, 1, 2}
    for got in (received[0], received[-1]):
        assert {r.result for r in verify_perl(got.data, nsd)} == {"pass"}


async def test_a_reload_with_a_bad_key_keeps_signing_with_the_running_keys(
        tmp_path: Path, keys: KeySet, nsd: NsdServer) -> None:
    sink = Sink().start()
    config = write_config(tmp_path, sink.port, extra=dkim_section(keys, ["2024"]))
    exposed = tmp_path / "exposed.key"
    exposed.write_bytes(keys["example.com", "2025"].path.read_bytes())
    exposed.chmod(0o644)
    try:
        async with running_gateway(config) as gw:
            text = config.read_text()
            config.write_text(text.replace(str(keys["example.com", "2024"].path), str(exposed)))
            assert not gw.reload()  # refused: logged with file:line, nothing changes
            await asyncio.to_thread(send_many, gw.ports["relay"], 1)
            (got,) = await sink.await_for(1)
    finally:
        sink.stop()
    assert [s[b"s"] for s in signatures(got.data)] == [b"2024"]
    assert verify_dkimpy(got.data, nsd) == [True]
    with pytest.raises(Exception, match="is open to other users"):
        load_config(config)
