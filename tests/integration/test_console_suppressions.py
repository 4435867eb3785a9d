"""Suppressions in the console over real SMTP and HTTP: a recipient the destination
refuses (550 5.1.1) is suppressed by the bounce verdicts, the console's entry links
to the bounce behind it (that message's trace, with the SMTP reply), and the CSV
export holds the entry with its note, audited."""

from __future__ import annotations

import asyncio
import csv
import html
import io
import re
import smtplib
import time
from pathlib import Path

import aiohttp

from gateway.state.suppressions import SUPPRESSION_FIELDS
from tests.fixtures.admin import TOKEN, admin_section
from tests.fixtures.bounces import bounce_config
from tests.fixtures.gateway import running_gateway
from tests.fixtures.sink import Sink

GONE = "gone@example.net"


def send(port: int, rcpt: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.sendmail("app@example.com", [rcpt], b"Subject: booking\r\n\r\nhello\r\n")


async def test_suppression_links_its_bounce_and_exports_as_csv(tmp_path: Path) -> None:
    sink = Sink().start()
    sink.replies[GONE] = "550 5.1.1 no such user"
    config = bounce_config(tmp_path, sink.port)
    config.write_text(config.read_text() + admin_section(tmp_path))
    try:
        async with running_gateway(config) as gw:
            assert gw.admin is not None
            await asyncio.to_thread(send, gw.ports["relay"], GONE)
            deadline = time.monotonic() + 20
            while not await gw.state.suppressions.lookup((GONE,), gw.clock.now()):
                assert time.monotonic() < deadline, "the bounce never suppressed the address"
                await asyncio.sleep(0.05)
            base = f"http://127.0.0.1:{gw.admin.port}"
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
                async with http.post(f"{base}/console/login", data={"token": TOKEN}) as resp:
                    assert resp.status == 200
                async with http.get(f"{base}/console/suppressions", params={"q": GONE}) as resp:
                    page = await resp.text()
                found = re.search(r'<a href="(/console/trace\?by=queue_id&amp;q=([^"]+))">', page)
                assert found is not None, page
                queue_id = found.group(2)
                async with http.get(base + html.unescape(found.group(1))) as resp:
                    trace = await resp.text()
                assert f'id="m-{queue_id}"' in trace
                assert "<strong>bounced</strong>" in trace and "550 5.1.1 no such user" in trace

                async with http.get(f"{base}/console/suppressions.csv") as resp:
                    assert resp.status == 200 and resp.content_type == "text/csv"
                    assert "attachment" in resp.headers["Content-Disposition"]
                    rows = list(csv.reader(io.StringIO(await resp.text())))
            assert tuple(rows[0]) == SUPPRESSION_FIELDS
            (gone,) = [dict(zip(SUPPRESSION_FIELDS, r, strict=True)) for r in rows[1:]
                       if r[0] == GONE]
            assert f"queue id {queue_id}" in gone["note"] and gone["scope"] == "all"
            actions = [e.action for e in await gw.state.audit.entries(20)]
            assert "suppress.export" in actions
    finally:
        sink.stop()
