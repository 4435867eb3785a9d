"""Our IP is on a blocklist: the guests did nothing wrong, and nobody is suppressed.

The destination is a real Postfix whose `check_client_access` refuses our
address citing a DNSBL, as an ISP's MX does when zen.spamhaus.org lists us:

1. synchronously: the gateway delivers to that Postfix and gets
   `554 5.7.1 … blocked using zen.spamhaus.org` at RCPT;
2. asynchronously: a second real Postfix relays for us, is refused the same
   way, and sends its own RFC 3464 DSN back to our VERP return path;
3. the issue's reproduction: that DSN, written as a relay reports it
   (`Status: 5.7.1`), fed to `smtp-gateway bounce ingest --apply` with the
   shipped policies/bounces.yaml.example.

Each way: reason `blocked`, no suppression although bounces.yaml suppresses
hard bounces, a `sender_fault` event naming the reason, and
smtp_gateway_bounce_verdicts_total{reason="blocked",domain="dest.test"}
counting it (the series SmtpGatewaySenderBlocked watches;
deploy/prometheus/alerts_test.yml shows it firing).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from gateway.metrics import REGISTRY
from gateway.model import EventType
from gateway.supervisor import Gateway
from tests.fixtures.bounces import BOUNCE_DOMAIN, bounce_config, wait_events
from tests.fixtures.gateway import running_gateway
from tests.fixtures.net import free_port
from tests.fixtures.policy import smtp_session
from tests.fixtures.postfix import DOMAIN, running_postfix
from tests.fixtures.sink import Sink

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_RULES = (ROOT / "policies" / "bounces.yaml.example").read_text()
LISTED = ("Service unavailable; Client host [127.0.0.1] blocked using zen.spamhaus.org; "
          "https://www.spamhaus.org/query/ip/127.0.0.1")
# A destination that refuses our IP, as Postfix does with a DNSBL hit (the braces around
# the pair let the value hold spaces and semicolons).
REFUSING = ("smtpd_client_restrictions = check_client_access "
            f"inline:{{ {{ 127.0.0.1 = REJECT {LISTED} }} }}\n")


def blocked_count(source: str) -> float:
    return REGISTRY.get_sample_value("smtp_gateway_bounce_verdicts_total", {
        "reason": "blocked", "action": "alert", "domain": DOMAIN, "source": source}) or 0.0


def queue_id_of(reply: tuple[int, str] | None) -> str:
    assert reply is not None and reply[0] == 250, reply
    return reply[1].rsplit(" ", 1)[1]


async def nobody_suppressed(gw: Gateway) -> None:
    await gw.bounces.actions.drain()
    assert await gw.state.suppressions.all() == []
    again = await smtp_session(gw.ports["relay"], [f"guest@{DOMAIN}"])
    assert again.rcpt[f"guest@{DOMAIN}"][0] == 250  # the guest still gets mail


async def test_refused_during_delivery_suppresses_nobody(tmp_path: Path) -> None:
    with running_postfix(main_cf=REFUSING) as destination:
        config = bounce_config(tmp_path, destination.port, bounces_yaml=SHIPPED_RULES)
        before = blocked_count("smtp-reply")
        async with running_gateway(config) as gw:
            first = await smtp_session(gw.ports["relay"], [f"guest@{DOMAIN}"])
            queue_id = queue_id_of(first.data)
            (bounced,) = await wait_events(gw, queue_id, EventType.BOUNCED)
            assert bounced.reply is not None and bounced.reply.code == 554
            assert "blocked using zen.spamhaus.org" in bounced.reply.text  # Postfix's reply
            (fault,) = await wait_events(gw, queue_id, EventType.SENDER_FAULT)
            assert fault.recipient == f"guest@{DOMAIN}"
            assert "reason=blocked" in (fault.detail or "")
            assert "source=smtp-reply" in (fault.detail or "")
            assert blocked_count("smtp-reply") == before + 1
            assert gw.bounces.counters.sender_faults >= 1 and gw.bounces.counters.hard == 0
            await nobody_suppressed(gw)


RELAYING = """\
virtual_mailbox_domains =
relay_domains = {domain}
default_transport = smtp
transport_maps = inline:{{ {domain}=smtp:[127.0.0.1]:{dest}, {bounce}=smtp:[127.0.0.1]:{mx} }}
smtp_host_lookup = native
"""


async def test_relay_dsn_back_to_verp_suppresses_nobody(tmp_path: Path) -> None:
    mx_port = free_port()  # the gateway's MX listener, where the relay sends its DSN
    with running_postfix(main_cf=REFUSING) as destination, running_postfix(
            main_cf=RELAYING.format(domain=DOMAIN, dest=destination.port,
                                          bounce=BOUNCE_DOMAIN, mx=mx_port)) as relay:
        config = bounce_config(tmp_path, relay.port, mx_port=mx_port,
                               bounces_yaml=SHIPPED_RULES)
        before = blocked_count("smtp")
        async with running_gateway(config) as gw:
            first = await smtp_session(gw.ports["relay"], [f"guest@{DOMAIN}"])
            queue_id = queue_id_of(first.data)
            # the relay takes it (250), is refused, and mails its DSN to our VERP address
            await wait_events(gw, queue_id, EventType.DELIVERED)
            for _ in range(1000):
                if gw.bounces.counters.processed >= 1:
                    break
                await asyncio.sleep(0.02)
            assert gw.bounces.counters.processed >= 1, relay.maillog()
            (fault,) = await wait_events(gw, queue_id, EventType.SENDER_FAULT)
            assert "reason=blocked" in (fault.detail or "")
            assert "report=dsn matched_by=verp" in (fault.detail or "")
            assert "blocked using zen.spamhaus.org" in (fault.detail or "")
            assert blocked_count("smtp") == before + 1
            await nobody_suppressed(gw)


def reproduction_dsn(message_id: str) -> str:
    """The issue's DSN: a relay reports our message refused for a DNSBL listing."""
    return f"""\
From: MAILER-DAEMON@relay.isp.example (Mail Delivery System)
To: app@example.com
Subject: Undelivered Mail Returned to Sender
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="R"

--R
Content-Type: text/plain

I'm sorry to have to inform you that your message could not be delivered.

--R
Content-Type: message/delivery-status

Reporting-MTA: dns; relay.isp.example

Final-Recipient: rfc822; guest@{DOMAIN}
Action: failed
Status: 5.7.1
Diagnostic-Code: smtp; 550 5.7.1 Service unavailable; Client host [203.0.113.5] blocked
    using zen.spamhaus.org

--R
Content-Type: text/rfc822-headers

From: App <app@example.com>
To: guest@{DOMAIN}
Message-ID: {message_id}
Subject: Your booking

--R--
""".replace("\n", "\r\n")


async def test_issue_reproduction_bounce_ingest_apply_suppresses_nobody(tmp_path: Path) -> None:
    sink = Sink().start()
    try:
        config = bounce_config(tmp_path, sink.port, bounces_yaml=SHIPPED_RULES,
                               route_extra="verp: false\n")
        async with running_gateway(config) as gw:
            first = await smtp_session(gw.ports["relay"], [f"guest@{DOMAIN}"])
            queue_id = queue_id_of(first.data)
            (accepted,) = await wait_events(gw, queue_id, EventType.ACCEPTED)
            await sink.await_for(1)
            eml = tmp_path / "dsn.eml"
            eml.write_text(reproduction_dsn(accepted.message_id or ""))
            parsed = await asyncio.to_thread(subprocess.run, [
                sys.executable, "-m", "gateway", "bounce", "parse", "--json", str(eml)],
                cwd=ROOT, capture_output=True, text=True, timeout=60)
            assert json.loads(parsed.stdout) == {"bounce": True, "recipients": [
                {"address": f"guest@{DOMAIN}", "status": "5.7.1", "kind": "soft",
                 "reason": "blocked"}]}
            applied = await asyncio.to_thread(subprocess.run, [
                sys.executable, "-m", "gateway", "bounce", "ingest", "--apply", "-c",
                str(config), str(eml)], cwd=ROOT, capture_output=True, text=True, timeout=60)
            assert applied.returncode == 0, applied.stderr
            (line,) = [json.loads(x) for x in applied.stdout.splitlines()]
            assert line["outcome"] == "processed"
            (fault,) = await wait_events(gw, queue_id, EventType.SENDER_FAULT)
            assert "reason=blocked" in (fault.detail or "") and "source=file" in (
                fault.detail or "")
            events = await gw.state.events.by_queue_id(queue_id)
            assert EventType.SUPPRESSED not in {e.type for e in events}
            await nobody_suppressed(gw)
    finally:
        sink.stop()
