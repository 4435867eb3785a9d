"""Engagement tracking over real wires: smtplib → gateway (DKIM on, tracking on) → sink;
the delivered bytes are checked (pixel, wrapped links, the unsubscribe link kept,
DKIM verified by Perl's Mail::DKIM against NSD), then the pixel and a link are
fetched over real HTTP from the tracking listener, which records events that the
webhooks deliver. Without the tracking purpose, or for transactional mail, the
message is untouched by tracking, byte for byte.
"""

from __future__ import annotations

import asyncio
import re
import smtplib
import textwrap
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from gateway.model import ConsentRecord, EventType
from gateway.supervisor import Gateway
from tests.fixtures.dkim import KeySet, dkim_section, verify_perl
from tests.fixtures.dns import NsdServer, running_nsd
from tests.fixtures.gateway import running_gateway, write_config
from tests.fixtures.net import free_port
from tests.fixtures.policy import events_of_type, write_policy
from tests.fixtures.sink import Sink
from tests.fixtures.webhook_receiver import Receiver

SECRET = "webhook-secret-for-the-tracking-test"
CONSENT = """\
    categories:
      transactional: {basis: contract}
      marketing: {basis: consent, tracking: true}
    """
UNSUBSCRIBE = "https://shop.example/unsubscribe?u=42"
OFFER = "https://shop.example/offers/spring?ref=mail&amp;lang=en"
BROWSER = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
           "Chrome/120.0 Safari/537.36")


def newsletter(to: str, category: str, n: int) -> bytes:
    html = (f'<html><body><p>Spring offers!</p><a href="{OFFER}">See them</a><br>'
            f'<a href="https://shop.example/b">Shop</a> <a href="{UNSUBSCRIBE}">'
            "Unsubscribe</a></body></html>")
    return textwrap.dedent(f"""\
        From: Shop <app@example.com>
        To: {to}
        Subject: Spring offers
        Message-ID: <offer-{n}@example.com>
        Date: Tue, 14 Nov 2023 22:13:20 +0000
        X-Gateway-Category: {category}
        List-Unsubscribe: <{UNSUBSCRIBE}>
        List-Unsubscribe-Post: List-Unsubscribe=One-Click
        MIME-Version: 1.0
        Content-Type: multipart/alternative; boundary="alt-1"

        --alt-1
        Content-Type: text/plain; charset=utf-8

        Spring offers: https://shop.example/offers/spring
        --alt-1
        Content-Type: text/html; charset=utf-8
        Content-Transfer-Encoding: 7bit

        {html}
        --alt-1--
        """).replace("\n", "\r\n").encode()


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeySet:
    keys = KeySet(tmp_path_factory.mktemp("dkim-keys"))
    keys.add("example.com", "rsa1", "rsa")
    return keys


@pytest.fixture(scope="module")
def nsd(keys: KeySet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NsdServer]:
    with running_nsd(tmp_path_factory.mktemp("nsd"), keys.zones()) as server:
        yield server


def tracking_config(tmp_path: Path, sink: Sink, keys: KeySet, hooks: Receiver, port: int
                    ) -> Path:
    key = tmp_path / "tracking.key"
    key.write_bytes(b"k" * 16 + bytes(range(32)))
    key.chmod(0o600)
    (tmp_path / "hook.secret").write_text(SECRET)
    (tmp_path / "hook.secret").chmod(0o600)  # secrets are refused when others may read them
    write_policy(tmp_path, "consent.yaml", CONSENT)
    return write_config(tmp_path, sink.port, extra=dkim_section(keys, ["rsa1"]) + textwrap.dedent(
        f"""\
        tracking:
          url: http://127.0.0.1:{port}
          address: 127.0.0.1
          port: {port}
          key_file: tracking.key
        webhooks:
          - name: engagement
            url: {hooks.url}
            secret_file: hook.secret
            events: [opened, clicked]
            poll_interval: 50ms
        """))


def send(port: int, rcpt: str, data: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.sendmail("app@example.com", [rcpt], data)


async def grant(gw: Gateway, address: str, purposes: tuple[str, ...]) -> None:
    await gw.state.consent.record([ConsentRecord(address, "marketing", True, 1.0,
                                                 purposes=purposes)], "test", 1.0)


async def test_tracked_for_consent_untouched_otherwise_and_hits_become_events(
        tmp_path: Path, keys: KeySet, nsd: NsdServer) -> None:
    sink, hooks = Sink().start(), Receiver(SECRET).start()
    tracking_port = free_port()
    base = f"http://127.0.0.1:{tracking_port}"
    config = tracking_config(tmp_path, sink, keys, hooks, tracking_port)
    try:
        async with running_gateway(config) as gw:
            await grant(gw, "fan@example.net", ("tracking",))
            await grant(gw, "quiet@example.net", ())
            port = gw.ports["relay"]
            sent = {"fan@example.net": newsletter("fan@example.net", "marketing", 1),
                    "quiet@example.net": newsletter("quiet@example.net", "marketing", 2),
                    "guest@example.net": newsletter("guest@example.net", "transactional", 3)}
            for rcpt, data in sent.items():
                await asyncio.to_thread(send, port, rcpt, data)
            got = {r.rcpt_tos[0]: r.data for r in await sink.await_for(3)}

            tracked = got["fan@example.net"]
            assert [r.result for r in verify_perl(tracked, nsd)] == ["pass"]
            body = tracked.decode()
            assert f'<a href="{UNSUBSCRIBE}">' in body  # never wrapped
            assert f"List-Unsubscribe: <{UNSUBSCRIBE}>" in body
            assert "shop.example/offers" not in body.split("text/html", 1)[1]
            assert "fan@example.net" not in body.split("\r\n\r\n", 1)[1]  # nothing in clear
            links = re.findall(rf'href="({re.escape(base)}/c/[A-Za-z0-9_-]+)"', body)
            (pixel,) = re.findall(rf'src="({re.escape(base)}/o/[A-Za-z0-9_-]+)"', body)
            assert len(links) == 2
            # The text part and every other byte but the HTML part are as sent.
            assert "Spring offers: https://shop.example/offers/spring\r\n--alt-1" in body

            for rcpt in ("quiet@example.net", "guest@example.net"):
                signature_and_trace, _, rest = got[rcpt].partition(b"From: Shop")
                # As sent, byte for byte, but for the category header the policy stage
                # takes out (consent.yaml keep_header: false), tracking or not.
                expected = re.sub(rb"X-Gateway-Category: \w+\r\n", b"", sent[rcpt])
                assert b"From: Shop" + rest == expected, rcpt
                assert b"/o/" not in signature_and_trace

            await hits(gw, base, pixel, links, hooks)
    finally:
        sink.stop()
        hooks.stop()


async def hits(gw: Gateway, base: str, pixel: str, links: list[str], hooks: Receiver) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(pixel, headers={"User-Agent": BROWSER}) as resp:
            assert (resp.status, resp.content_type) == (200, "image/gif")
            assert "no-store" in resp.headers["Cache-Control"]
        async with http.get(pixel, headers={
                "User-Agent": "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 "
                              "(via ggpht.com GoogleImageProxy)"}) as resp:
            assert resp.status == 200
        async with http.get(links[0], headers={"User-Agent": BROWSER},
                            allow_redirects=False) as resp:
            assert resp.status == 302
            assert resp.headers["Location"] == OFFER.replace("&amp;", "&")
        token = links[1].rsplit("/", 1)[1]
        altered = token[:10] + ("A" if token[10] != "A" else "B") + token[11:]
        for forged in (f"{base}/c/{altered}", f"{base}/c/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                       f"{base}/o/{token}", f"{base}/c/" + "x" * 5000):
            async with http.get(forged, allow_redirects=False) as resp:
                assert resp.status == 404, forged
                assert "Location" not in resp.headers
    queue_id = (await gw.state.events.by_message_id("<offer-1@example.com>"))[0].queue_id
    opened = await events_of_type(gw, queue_id, EventType.OPENED, 2)
    assert [e.recipient for e in opened] == ["fan@example.net"] * 2
    assert opened[0].detail == "machine=no ip=127.0.0.0/24"
    assert opened[1].detail == "machine=yes why=proxy:google ip=127.0.0.0/24"
    (clicked,) = await events_of_type(gw, queue_id, EventType.CLICKED, 1)
    assert clicked.detail == f"machine=no ip=127.0.0.0/24 link={OFFER.replace('&amp;', '&')}"
    await hooks.await_events(lambda evs: len(evs) >= 3)
    assert sorted(e["type"] for e in hooks.events()) == ["clicked", "opened", "opened"]
    assert {e["recipient"] for e in hooks.events()} == {"fan@example.net"}

    # Tracking consent withdrawn (a newer record without the purpose): the pixel still
    # answers, the link still redirects, but nothing more is recorded about the guest.
    await gw.state.consent.record([ConsentRecord("fan@example.net", "marketing", True, 2.0)],
                                  "test", 2.0)
    async with aiohttp.ClientSession() as http:
        async with http.get(pixel, headers={"User-Agent": BROWSER}) as resp:
            assert resp.status == 200
        async with http.get(links[0], allow_redirects=False) as resp:
            assert resp.status == 302
    await gw.state.events.flush()
    kinds = [e.type for e in await gw.state.events.by_queue_id(queue_id)]
    assert (kinds.count(EventType.OPENED), kinds.count(EventType.CLICKED)) == (2, 1)
