"""Maildir ingestion (new/ → cur/, once) and file ingestion with actions
(`smtp-gateway bounce ingest --apply`), both acting on the gateway's state."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from gateway.bounces.maildir import Maildir
from gateway.model import EventType
from tests.fixtures.bounces import bounce_config, dsn_text, wait_counter, wait_events
from tests.fixtures.gateway import running_gateway
from tests.fixtures.policy import smtp_session
from tests.fixtures.sink import Sink

ROOT = Path(__file__).resolve().parents[2]
ARF = """\
From: feedback@fbl.example.net
To: abuse@example.com
Subject: complaint
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="F"

--F
Content-Type: text/plain

This is an abuse report.

--F
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: fbl/1.0
Version: 1
Original-Rcpt-To: {rcpt}

--F
Content-Type: text/rfc822-headers

From: App <app@example.com>
To: {rcpt}
Message-ID: {message_id}
Subject: News

--F--
"""


async def _relay(port: int, rcpt: str) -> str:
    result = await smtp_session(port, [rcpt])
    assert result.data is not None and result.data[0] == 250
    return result.data[1].rsplit(" ", 1)[1]


async def test_maildir_new_to_cur_once(tmp_path: Path) -> None:
    sink = Sink().start()
    try:
        maildir = Maildir(tmp_path / "bounce-mail")
        maildir.create()
        config = bounce_config(tmp_path, sink.port, bounces_extra="maildir: bounce-mail\n")
        async with running_gateway(config) as gw:
            queue_id = await _relay(gw.ports["relay"], "fan@example.net")
            (accepted,) = await wait_events(gw, queue_id, EventType.ACCEPTED)
            await sink.await_for(1)
            arf = ARF.format(rcpt="fan@example.net", message_id=accepted.message_id)
            name = maildir.deliver(arf.replace("\n", "\r\n").encode())
            assert await wait_counter(gw, "processed", 1) == 1
            (complained,) = await wait_events(gw, queue_id, EventType.COMPLAINED)
            assert "feedback_type=abuse" in (complained.detail or "")
            (suppressed,) = await wait_events(gw, queue_id, EventType.SUPPRESSED)
            assert "reason=complaint scope=marketing" in (suppressed.detail or "")
            (entry,) = await gw.state.suppressions.lookup(("fan@example.net",), 0.0)
            assert entry.scope == "marketing"
            assert os.listdir(maildir.path / "new") == []
            assert os.listdir(maildir.path / "cur") == [f"{name}:2,S"]
            # The same file back in new/ (a crash before the move): counted once.
            shutil.copy(maildir.path / "cur" / f"{name}:2,S", maildir.path / "new" / name)
            (ingester,) = [i for i in gw.bounces.ingesters if i.source == "maildir"]
            await ingester.run_once()
            assert gw.bounces.counters.duplicates == 1
            assert gw.bounces.counters.processed == 1
            events = await gw.state.events.by_queue_id(queue_id)
            assert [e.type for e in events].count(EventType.COMPLAINED) == 1
    finally:
        sink.stop()


async def test_bounce_ingest_apply_acts_once(tmp_path: Path) -> None:
    sink = Sink().start()
    try:
        config = bounce_config(tmp_path, sink.port, route_extra="verp: false\n")
        async with running_gateway(config) as gw:
            queue_id = await _relay(gw.ports["relay"], "old@example.net")
            (accepted,) = await wait_events(gw, queue_id, EventType.ACCEPTED)
            await sink.await_for(1)
            eml = tmp_path / "bounce.eml"
            eml.write_text(dsn_text("app@example.com", "old@example.net", "5.1.1",
                                    accepted.message_id or ""))
            stray = tmp_path / "stray.eml"  # about mail we never sent: changes nothing
            stray.write_text(dsn_text("app@example.com", "who@example.net", "5.1.1",
                                      "<never@example.com>"))
            cmd = [sys.executable, "-m", "gateway", "bounce", "ingest", "--apply", "-c",
                   str(config), str(eml), str(stray)]
            first = await asyncio.to_thread(subprocess.run, cmd, cwd=ROOT,
                                            capture_output=True, text=True, timeout=60)
            assert first.returncode == 0, first.stderr
            lines = [json.loads(line) for line in first.stdout.splitlines()]
            assert [line["outcome"] for line in lines] == ["processed", "unmatched"]
            second = await asyncio.to_thread(subprocess.run, cmd, cwd=ROOT,
                                             capture_output=True, text=True, timeout=60)
            assert [json.loads(line)["outcome"] for line in second.stdout.splitlines()] == [
                "duplicate", "duplicate"]
            (suppressed,) = await wait_events(gw, queue_id, EventType.SUPPRESSED)
            assert "source=file" in (suppressed.detail or "")
            again = await smtp_session(gw.ports["relay"], ["old@example.net"])
            assert again.rcpt["old@example.net"][0] == 550
            assert [e.target for e in await gw.state.suppressions.all()] == ["old@example.net"]
    finally:
        sink.stop()
