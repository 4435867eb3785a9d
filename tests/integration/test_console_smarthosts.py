"""The overview's smarthosts over real HTTP and SMTP: a route whose first smarthost
refuses connections delivers through its backup (the test sink), and the console
shows each smarthost in order, the first one's breaker failures, what the backup
carried, and the failovers."""

from __future__ import annotations

import asyncio
import re
import smtplib
import textwrap
import time
from pathlib import Path

import aiohttp

from tests.fixtures.admin import TOKEN, admin_section
from tests.fixtures.gateway import running_gateway, write_config
from tests.fixtures.net import free_port
from tests.fixtures.sink import Sink


def send(port: int, rcpt: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.sendmail("app@example.com", [rcpt], b"Subject: hi\r\n\r\nhello\r\n")


def route(dead_port: int, sink_port: int) -> str:
    return textwrap.dedent(f"""\
        routes:
          - name: relays
            type: smarthost
            smarthosts:
              - {{name: primary, host: 127.0.0.1, port: {dead_port}, tls: none}}
              - {{name: backup, host: 127.0.0.1, port: {sink_port}, tls: none}}
            circuit_breaker: {{failures: 5, recovery: 1m}}
        """)


def cells(html: str, smarthost: str) -> list[str]:
    row = re.search(rf"<tr><td>relays</td><td>{smarthost}</td>(.*?)</tr>", html)
    assert row is not None, html
    return re.findall(r"<td[^>]*>(.*?)</td>", row.group(1))


async def test_overview_shows_failovers_to_the_backup_smarthost(tmp_path: Path) -> None:
    sink = Sink().start()
    config = write_config(tmp_path, sink.port, route=route(free_port(), sink.port),
                          extra=admin_section(tmp_path))
    try:
        async with running_gateway(config) as gw:
            assert gw.admin is not None
            for rcpt in ("a@example.net", "b@example.net"):
                await asyncio.to_thread(send, gw.ports["relay"], rcpt)
            await sink.await_for(2)
            base = f"http://127.0.0.1:{gw.admin.port}"
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
                async with http.post(f"{base}/console/login", data={"token": TOKEN}) as resp:
                    assert resp.status == 200
                deadline = time.monotonic() + 10
                while True:  # the delivered events are written in batches: a moment later
                    async with http.get(f"{base}/console/overview?window=hour") as resp:
                        html = await resp.text()
                    if "Failovers: <b>2</b> of 2" in html or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.1)
            assert "Failovers: <b>2</b> of 2 deliveries" in html, html
            # order, breaker, failures, retry at, delivered, deferred, bounced
            primary, backup = cells(html, "primary"), cells(html, "backup")
            assert primary[0] == "first" and primary[1] == "CLOSED" and primary[2] == "2"
            assert primary[4:] == ["0", "0", "0"]
            assert backup[0] == "backup 1" and backup[4:] == ["2", "0", "0"]
    finally:
        sink.stop()
