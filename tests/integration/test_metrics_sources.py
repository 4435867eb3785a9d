"""The other metric sources: DKIM signing at intake, bounces (`bounce ingest`, and
over SMTP to the bounce domain, forged VERP tokens too), policy reloads, webhook
deliveries (recorded through the function the webhook outbox calls)."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest

from gateway import metrics
from gateway.cli import main
from gateway.webhooks.dispatcher import RESULTS
from tests.fixtures.bounces import bounce_config, dsn_text, wait_counter
from tests.fixtures.dkim import KeySet, dkim_section, send_raw
from tests.fixtures.gateway import running_gateway, write_config
from tests.fixtures.metrics import promtool_check_metrics, scrape
from tests.fixtures.policy import smtp_session, write_policy
from tests.fixtures.sink import Sink
from tests.fixtures.webhook_receiver import Receiver

BOUNCES = Path(__file__).resolve().parents[1] / "data" / "bounces"
HEAD = (b"From: Booking <app@example.com>\r\nTo: guest@example.net\r\n"
        b"Subject: Your booking\r\n")


async def test_dkim_signings_by_result(tmp_path: Path) -> None:
    keys = KeySet(tmp_path)
    keys.add("example.com", "rsa1", "rsa")
    sink = Sink().start()
    section = dkim_section(keys, ["rsa1"], fallback="refuse")
    try:
        async with running_gateway(write_config(tmp_path, sink.port, extra=section)) as gw:
            before = scrape()
            port = gw.ports["relay"]
            assert (await asyncio.to_thread(send_raw, port, HEAD + b"\r\nHi\r\n")).startswith("250")
            other = HEAD.replace(b"app@example.com", b"app@elsewhere.test") + b"\r\nHi\r\n"
            assert (await asyncio.to_thread(send_raw, port, other)).startswith("550 5.7.1")
            await sink.await_for(1)
            after = scrape()
    finally:
        sink.stop()
    for result, moved in (("signed", 1), ("refused", 1), ("unsigned", 0), ("error", 0)):
        assert after.delta(before, "smtp_gateway_dkim_signatures_total", result=result) == moved
    assert after.delta(before, "smtp_gateway_messages_rejected_total", rule="dkim",
                       stage="data", reply_class="5xx") == 1


def test_bounce_ingest_counts_kinds_and_complaints(capsys: pytest.CaptureFixture[str]) -> None:
    before = scrape()
    assert main(["bounce", "ingest", str(BOUNCES / "dsn_01.eml"),
                 str(BOUNCES / "arf_01.eml")]) == 0
    assert capsys.readouterr().out.count("\n") == 2
    after = scrape()
    assert after.delta(before, "smtp_gateway_bounces_parsed_total", kind="hard",
                       source="file") == 1
    assert after.delta(before, "smtp_gateway_bounces_parsed_total", kind="complaint",
                       source="file") == 1
    assert after.delta(before, "smtp_gateway_complaints_total", source="file") == 1
    promtool_check_metrics(after.text)


async def test_policy_reloads_by_result(tmp_path: Path) -> None:
    policy = write_policy(tmp_path, "suppression.yaml", "entries: []\n")
    sink = Sink().start()
    try:
        async with running_gateway(write_config(tmp_path, sink.port)) as gw:
            before = scrape()
            policy.write_text("entries: [{address: 5}]\n")
            assert not gw.policy.reload()
            policy.write_text("entries: [{address: a@example.net, reason: manual}]\n")
            assert gw.policy.reload()
            after = scrape()
    finally:
        sink.stop()
    assert after.delta(before, "smtp_gateway_reloads_total", kind="policy",
                       result="failure") == 1
    assert after.delta(before, "smtp_gateway_reloads_total", kind="policy",
                       result="success") == 1


def test_webhook_results_are_the_dispatchers() -> None:
    assert metrics.WEBHOOK_RESULTS == RESULTS


def test_webhook_results_stay_a_bounded_set() -> None:
    before = scrape()
    metrics.record_webhook_delivery("success")
    metrics.record_webhook_delivery("timeout")
    metrics.record_webhook_delivery("<script>")  # a caller's mistake is not a new series
    after = scrape()
    assert after.delta(before, "smtp_gateway_webhook_deliveries_total", result="success") == 1
    assert after.delta(before, "smtp_gateway_webhook_deliveries_total", result="timeout") == 1
    assert after.delta(before, "smtp_gateway_webhook_deliveries_total", result="other") == 1
    assert not after.has("smtp_gateway_webhook_deliveries_total", result="<script>")


async def test_bounces_over_smtp_by_kind_and_forged_tokens(tmp_path: Path) -> None:
    """Returned mail to the bounce domain: a DSN with a valid VERP token is a hard
    bounce from source smtp; one whose token was tampered with is counted as forged."""
    sink = Sink().start()
    try:
        async with running_gateway(bounce_config(tmp_path, sink.port)) as gw:
            before = scrape()
            relay, mx = gw.ports["relay"], gw.ports["mx"]
            await smtp_session(relay, ["gone@example.net"])
            (got,) = await sink.await_for(1)
            verp = got.mail_from
            dsn = dsn_text(verp, "gone@example.net", "5.1.1", "<x@example.com>")
            assert (await smtp_session(mx, [verp], dsn, sender="")).data is not None
            forged = verp[: verp.index("@") - 4] + "aaaa" + verp[verp.index("@"):]
            dsn = dsn_text(forged, "gone@example.net", "5.1.1", "<x@example.com>")
            assert (await smtp_session(mx, [forged], dsn, sender="")).data is not None
            assert await wait_counter(gw, "processed", 2) == 2
            after = scrape()
    finally:
        sink.stop()
    assert after.delta(before, "smtp_gateway_bounces_parsed_total", kind="hard",
                       source="smtp") == 1
    assert after.delta(before, "smtp_gateway_verp_forged_total", source="smtp") == 1


async def test_webhook_posts_are_counted_by_result(tmp_path: Path) -> None:
    """A receiver that answers 410 Gone, then (after a reload) 200: one of each."""
    receiver = Receiver("s" * 32).start()
    receiver.statuses = [410]
    sink = Sink().start()
    (tmp_path / "hook.secret").write_text("s" * 32)
    (tmp_path / "hook.secret").chmod(0o600)  # secrets are refused when others may read them
    config = write_config(tmp_path, sink.port, extra=textwrap.dedent(f"""\
        webhooks:
          - name: app
            url: {receiver.url}
            secret_file: hook.secret
            poll_interval: 50ms
        """))
    try:
        async with running_gateway(config) as gw:
            before = scrape()
            await smtp_session(gw.ports["relay"], ["one@example.net"])
            for _ in range(500):  # bounded: 10 s
                if gw.webhooks.senders["app"].paused:
                    break
                await asyncio.sleep(0.02)
            assert gw.reload()  # resumes the paused webhook
            await receiver.await_events(lambda ev: len(ev) >= 1)
            after = scrape()
    finally:
        sink.stop()
        receiver.stop()
    assert after.delta(before, "smtp_gateway_webhook_deliveries_total", result="gone") == 1
    assert after.delta(before, "smtp_gateway_webhook_deliveries_total", result="success") >= 1
