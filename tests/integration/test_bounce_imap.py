"""IMAP ingestion against a real Dovecot: a smarthost route keeps the app's return path
(`verp: false`), so its bounces land in the provider's mailbox; the gateway polls it,
matches each bounce by recipient + embedded Message-ID, acts, and moves it to the
processed folder. Killed between processing and the move, it counts the bounce once
after the restart."""

from __future__ import annotations

import asyncio
import os
import re
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.bounces.imap import ImapMailbox
from gateway.bounces.settings import ImapSettings
from gateway.model import EventType, Secret
from tests.fixtures.bounces import bounce_config, dsn_text, wait_counter, wait_events
from tests.fixtures.dovecot import DovecotServer, dovecot_server, running_dovecot
from tests.fixtures.gateway import running_gateway
from tests.fixtures.policy import smtp_session
from tests.fixtures.sink import Sink
from tests.fixtures.tls import make_certs

ROOT = Path(__file__).resolve().parents[2]
__all__ = ["dovecot_server"]  # the fixture, imported for pytest


def _config(tmp_path: Path, sink: Sink, imap: DovecotServer, poll: str = "1s",
            processed_folder: str = "Processed") -> Path:
    (tmp_path / "imap.pass").write_text(imap.password)
    os.chmod(tmp_path / "imap.pass", 0o600)
    path = bounce_config(tmp_path, sink.port, route_extra="verp: false\n", bounces_extra=f"""\
        imap:
          host: 127.0.0.1
          port: {imap.port}
          tls: none
          username: {imap.user}
          password_file: imap.pass
          processed_folder: "{processed_folder}"
        """)
    return _with_poll(path, poll)


def _with_poll(path: Path, poll: str) -> Path:
    path.write_text(path.read_text().replace("poll_interval: 1s", f"poll_interval: {poll}"))
    return path


async def _relay_one(port: int, rcpt: str) -> str:
    """Relay one message; its queue id."""
    result = await smtp_session(port, [rcpt])
    assert result.data is not None and result.data[0] == 250
    return result.data[1].rsplit(" ", 1)[1]


async def test_imap_bounce_matched_by_message_id_suppresses_and_moves(
        tmp_path: Path, dovecot_server: DovecotServer) -> None:
    sink = Sink().start()
    imap = dovecot_server
    try:
        async with running_gateway(_config(tmp_path, sink, imap)) as gw:
            queue_id = await _relay_one(gw.ports["relay"], "gone@example.net")
            (got,) = await sink.await_for(1)
            assert got.mail_from == "app@example.com"  # verp: false on this route
            (accepted,) = await wait_events(gw, queue_id, EventType.ACCEPTED)
            assert accepted.message_id
            dsn = dsn_text("app@example.com", "gone@example.net", "5.1.1",
                           accepted.message_id)
            await asyncio.to_thread(imap.append, dsn.encode())
            assert await wait_counter(gw, "processed", 1) == 1
            (suppressed,) = await wait_events(gw, queue_id, EventType.SUPPRESSED)
            assert "source=imap" in (suppressed.detail or "")
            (bounced,) = await wait_events(gw, queue_id, EventType.BOUNCED)
            assert "matched_by=message-id" in (bounced.detail or "")
            for _ in range(200):  # the move follows the processing
                if await asyncio.to_thread(imap.count, "Processed") == 1:
                    break
                await asyncio.sleep(0.02)
            assert await asyncio.to_thread(imap.count, "INBOX") == 0
            assert await asyncio.to_thread(imap.count, "Processed") == 1
            again = await smtp_session(gw.ports["relay"], ["gone@example.net"])
            assert again.rcpt["gone@example.net"][0] == 550
    finally:
        sink.stop()


def test_mailbox_session_sees_post_login_capabilities(dovecot_server: DovecotServer) -> None:
    imap = dovecot_server
    settings = ImapSettings("127.0.0.1", imap.port, imap.user, Secret(imap.password), tls="none")
    box = ImapMailbox(settings)
    box.open()
    try:
        assert {"MOVE", "UIDPLUS"} <= box.capabilities  # so UID MOVE is used
        assert box.uidvalidity.isdigit() and box.new_uids() == []
    finally:
        box.close()


async def test_imap_flag_mode_leaves_message_flagged(tmp_path: Path,
                                                     dovecot_server: DovecotServer) -> None:
    sink = Sink().start()
    imap = dovecot_server
    try:
        config = _config(tmp_path, sink, imap, poll="1h", processed_folder="")
        await asyncio.to_thread(imap.append, b"From: someone@example.org\r\n"
                                b"Subject: hello\r\n\r\nNot a bounce.\r\n")
        async with running_gateway(config) as gw:
            (ingester,) = [i for i in gw.bounces.ingesters if i.source == "imap"]
            await ingester.run_once()  # after the poll at start, if that came first
            assert gw.bounces.counters.not_bounces == 1
            assert await ingester.run_once() == 0  # flagged: not fetched again
            assert gw.bounces.counters.not_bounces == 1
            assert gw.bounces.counters.duplicates == 0
            assert await asyncio.to_thread(imap.count, "INBOX") == 1
    finally:
        sink.stop()


async def test_crash_between_parse_and_move_counts_once(tmp_path: Path,
                                                        dovecot_server: DovecotServer) -> None:
    sink = Sink().start()
    imap = dovecot_server
    try:
        config = _config(tmp_path, sink, imap)
        async with running_gateway(config) as gw:
            queue_id = await _relay_one(gw.ports["relay"], "full@example.net")
            (accepted,) = await wait_events(gw, queue_id, EventType.ACCEPTED)
            await sink.await_for(1)
        dsn = dsn_text("app@example.com", "full@example.net", "5.1.1",
                       accepted.message_id or "")
        await asyncio.to_thread(imap.append, dsn.encode())
        # The ingesting process is killed (SIGKILL) after processing, before the move.
        proc = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "tests.fixtures.imap_crash_worker",
                             str(config)], cwd=ROOT, capture_output=True, timeout=60)
        assert proc.returncode == -9, proc.stdout + proc.stderr
        assert b"dying before the move" in proc.stdout
        assert await asyncio.to_thread(imap.count, "INBOX") == 1  # not moved
        async with running_gateway(config) as gw:  # restart
            assert await wait_counter(gw, "duplicates", 1) == 1
            for _ in range(200):
                if await asyncio.to_thread(imap.count, "Processed") == 1:
                    break
                await asyncio.sleep(0.02)
            assert await asyncio.to_thread(imap.count, "INBOX") == 0
            assert gw.bounces.counters.processed == 0  # nothing processed again
            ingested = await gw.bounces.store.ingested()
            assert [(src, out) for _, src, out in ingested] == [("imap", "processed")]
            assert re.fullmatch(r"imap:bounces@127\.0\.0\.1/INBOX:[1-9]\d*:1",
                                ingested[0][0]), ingested  # UIDVALIDITY:UID
            events = await gw.state.events.by_queue_id(queue_id)
            assert [e.type for e in events].count(EventType.SUPPRESSED) == 1
            assert [e.type for e in events].count(EventType.BOUNCED) == 1
            again = await smtp_session(gw.ports["relay"], ["full@example.net"])
            assert again.rcpt["full@example.net"][0] == 550
    finally:
        sink.stop()


@pytest.mark.parametrize("tls", ["implicit", "starttls"])
async def test_imap_over_tls_verifies_the_certificate(tmp_path: Path, tls: str) -> None:
    certs = make_certs(tmp_path / "certs")
    sink = Sink().start()
    try:
        with running_dovecot(certs) as imap:
            config = _config(tmp_path, sink, imap, poll="1h")
            port = imap.tls_port if tls == "implicit" else imap.port
            text = config.read_text().replace("tls: none\n    username",
                                              f"tls: {tls}\n    username")
            assert f"tls: {tls}" in text
            text = text.replace(f"port: {imap.port}\n", f"port: {port}\n")
            config.write_text(text)
            msg = b"From: someone@example.org\r\nSubject: hello\r\n\r\nNot a bounce.\r\n"
            await asyncio.to_thread(imap.append, msg)
            async with running_gateway(config) as gw:  # no trust anchor: refused
                (ingester,) = [i for i in gw.bounces.ingesters if i.source == "imap"]
                with pytest.raises(ssl.SSLCertVerificationError):
                    await ingester.run_once()
            config.write_text(text.replace("delivery:\n  helo_name",
                                           f"delivery:\n  ca_file: {certs.ca_file}\n"
                                           "  helo_name"))
            async with running_gateway(config) as gw:
                (ingester,) = [i for i in gw.bounces.ingesters if i.source == "imap"]
                # The poll at start may be first; polls take turns, so after this one
                # the message has been handled exactly once either way.
                await ingester.run_once()
                assert gw.bounces.counters.not_bounces == 1
                assert await asyncio.to_thread(imap.count, "Processed") == 1
    finally:
        sink.stop()
