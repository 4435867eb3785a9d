"""MTA-STS end to end: the running gateway fetches each recipient domain's policy over
HTTPS (a test server on 127.0.0.1, certificates from a test CA the gateway trusts via
`delivery.ca_file`), finds the MX hosts in a real NSD, and delivers to real Postfix
instances — one with STARTTLS and a certificate for mx.good.example (which is also
mx.wrongcert.example, so that name gets a certificate for another), one without
STARTTLS — on one port, at 127.0.0.21 and .22. The TLS outcomes then come back in the
next day's TLS reports.

    good.example      enforce, mx.good.example (TLS, right certificate)  → delivered
    plain.example     enforce, mx.plain.example (no STARTTLS)            → deferred 4.7.5
    wrongcert.example enforce, mx.wrongcert.example (certificate for
                      another name)                                      → deferred 4.7.5
    testing.example   testing, mx.plain.example (no STARTTLS)            → delivered, reported
"""

from __future__ import annotations

import asyncio
import gzip
import json
import smtplib
import textwrap
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest

from gateway.clock import ManualClock
from gateway.model import EventType, QueueState
from gateway.supervisor import Gateway
from tests.fixtures.dns import NsdServer, running_nsd
from tests.fixtures.gateway import running_gateway, write_config
from tests.fixtures.mta_sts import ExampleZone, PolicyServer, policy_text
from tests.fixtures.postfix import PostfixServer, running_postfix
from tests.fixtures.tls import TestCerts as Certs
from tests.fixtures.tls import make_certs
from tests.integration.test_mx_routing import common_port
from tests.integration.test_tls_reports import SCHEMA, settled_reports

GOOD, PLAIN = "127.0.0.21", "127.0.0.22"
START = 1_796_515_200.0 + 10 * 3600  # 2026-12-06 10:00 UTC
DOMAINS = ("good", "plain", "wrongcert", "testing")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    # One test CA (the gateway's ca_file) and one certificate: for the policy hosts and
    # mx.good.example. mx.wrongcert.example presents it too, which is not valid for it.
    names = (*(f"mta-sts.{d}.example" for d in DOMAINS), "mx.good.example", "127.0.0.1")
    return make_certs(tmp_path_factory.mktemp("sts-e2e-certs"), names)


@pytest.fixture(scope="module")
def mx_port() -> int:
    return common_port((GOOD, PLAIN))


@pytest.fixture(scope="module")
def postfixes(mx_port: int, certs: Certs) -> Iterator[dict[str, PostfixServer]]:
    with running_postfix("good.example", address=GOOD, port=mx_port,
                         domains=("wrongcert.example",),
                         tls=(certs.key_file, certs.cert_file)) as good, \
            running_postfix("plain.example", address=PLAIN, port=mx_port,
                            domains=("testing.example",)) as plain:
        yield {"good": good, "plain": plain}


@pytest.fixture(scope="module")
def web(certs: Certs) -> Iterator[PolicyServer]:
    with PolicyServer(certs) as server:
        for d in ("good", "plain", "wrongcert"):
            server.serve(f"mta-sts.{d}.example", policy_text("enforce", [f"mx.{d}.example"]))
        server.serve("mta-sts.testing.example", policy_text("testing", ["mx.plain.example"]))
        yield server


@pytest.fixture(scope="module")
def nsd(tmp_path_factory: pytest.TempPathFactory, web: PolicyServer) -> Iterator[NsdServer]:
    zone = ExampleZone()
    for name, address in (("good", GOOD), ("plain", PLAIN), ("wrongcert", GOOD)):
        zone.add(f"mx.{name}.example", f"A {address}")
    for d in DOMAINS:
        zone.add(f"mta-sts.{d}.example", "A 127.0.0.1")
        zone.set_txt(f"_mta-sts.{d}.example", f"v=STSv1; id={d}20261206")
        mx = "mx.plain.example" if d == "testing" else f"mx.{d}.example"
        zone.add(f"{d}.example", f"MX 10 {mx}.")
        # good.example's reports also go by mail to plain.example, whose enforced policy
        # its MX (no STARTTLS) fails: a report is delivered anyway (RFC 8460 5.3).
        mail = "mailto:tls@plain.example," if d == "good" else ""
        zone.set_txt(f"_smtp._tls.{d}.example",
                     f"v=TLSRPTv1; rua={mail}https://127.0.0.1:{web.port}/reports/{d}")
    with running_nsd(tmp_path_factory.mktemp("sts-e2e-nsd"), zone.zones()) as server:
        yield server


def gateway_config(tmp_path: Path, nsd: NsdServer, web: PolicyServer, mx_port: int,
                   ca_file: Path) -> Path:
    route = textwrap.dedent("""\
        routes:
          - name: direct
            type: mx
            tls: opportunistic
            retry: {delays: [10m], repeat: 10m}
        """)
    path = write_config(tmp_path, 1, route=route)
    text = path.read_text().replace("delivery:\n", "delivery:\n" + textwrap.indent(
        textwrap.dedent(f"""\
            mx_port: {mx_port}
            dns: {{nameservers: [127.0.0.1], port: {nsd.port}, timeout: 3s}}
            ca_file: {ca_file}
            mta_sts: {{port: {web.port}, fetch_timeout: 5s}}
            tls_reports: {{enabled: true, organization: Example Hotels}}
            """), "  "), 1)
    path.write_text(text)
    return path


def send(port: int, recipient: str) -> None:
    body = (f"From: app@gateway.test\r\nTo: {recipient}\r\nSubject: booking\r\n"
            "Message-ID: <x@gateway.test>\r\n\r\nYour booking.\r\n")
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail("app@gateway.test", [recipient], body)


async def test_policies_are_enforced_on_real_postfix_and_reported(
        tmp_path: Path, nsd: NsdServer, web: PolicyServer, mx_port: int,
        certs: Certs, postfixes: dict[str, PostfixServer]) -> None:
    clock = ManualClock(START)
    config = gateway_config(tmp_path, nsd, web, mx_port, certs.ca_file)
    async with running_gateway(config, clock) as gw:
        port = gw.ports["relay"]
        for domain in DOMAINS:
            await asyncio.to_thread(send, port, f"guest@{domain}.example")
        # Enforce with a matching MX and a valid certificate: delivered over TLS.
        (good,) = await asyncio.to_thread(postfixes["good"].wait_for, 1)
        assert b"(using TLSv1." in good  # Postfix's Received: field says TLS was used
        # Testing mode: delivered over plain SMTP anyway.
        (testing,) = await asyncio.to_thread(postfixes["plain"].wait_for, 1)
        assert b"guest@testing.example" in testing and b"using TLS" not in testing
        # Enforce without STARTTLS, or with a certificate for another name: deferred,
        # and the reason says why.
        plain = await deferred_reply(gw, "guest@plain.example")
        assert plain.startswith("451 4.7.5 MTA-STS (plain.example)")
        assert "TLS is required, but was not offered by mx.plain.example" in plain
        wrong = await deferred_reply(gw, "guest@wrongcert.example")
        assert wrong.startswith("451 4.7.5 MTA-STS (wrongcert.example)")
        assert "certificate" in wrong.lower()
        assert len(postfixes["plain"].messages()) == 1  # never plain.example's
        assert len(postfixes["good"].messages()) == 1  # never wrongcert.example's
        # The policies came over HTTPS once each and are in the state store.
        assert all(web.requests[f"mta-sts.{d}.example"] == 1 for d in DOMAINS)
        stored = await gw.state.tls.policy("good.example")
        assert stored is not None and stored.policy_id == "good20261206"
        # The next day, 01:30 UTC: the daily job reports the outcomes.
        clock.set(START + 15.5 * 3600)
        reports = await settled_reports(gw.state.tls, "2026-12-06", 4)
        mailed = await asyncio.to_thread(postfixes["plain"].wait_for, 2)
    assert reports["good.example"].startswith("sent mailto:tls@plain.example"), reports
    assert all(reports[f"{d}.example"].startswith("sent https://")
               for d in ("plain", "wrongcert", "testing")), reports
    (report_mail,) = [m for m in mailed if b"TLS-Report-Domain: good.example" in m]
    assert b"using TLS" not in report_mail  # over plain SMTP, policy set aside
    documents = {p.path.rsplit("/", 1)[1]: json.loads(gzip.decompress(p.body))
                 for p in web.posts if p.path.startswith("/reports/")}
    for document in documents.values():
        jsonschema.validate(document, SCHEMA)
    assert summary(documents["good"]) == (1, 0, [])
    assert summary(documents["testing"]) == (0, 1, ["starttls-not-supported"])
    assert summary(documents["plain"]) == (0, 1, ["starttls-not-supported"])
    assert summary(documents["wrongcert"]) == (0, 1, ["certificate-host-mismatch"])
    (entry,) = documents["testing"]["policies"]
    assert entry["policy"]["policy-string"] == policy_text(
        "testing", ["mx.plain.example"]).splitlines()
    assert entry["failure-details"][0]["receiving-mx-hostname"] == "mx.plain.example"
    assert entry["failure-details"][0]["receiving-ip"] == PLAIN


async def deferred_reply(gw: Gateway, recipient: str) -> str:
    for _ in range(1500):
        for queue_id in gw.spool.files.ids(QueueState.DEFERRED):
            for event in await gw.state.events.by_queue_id(queue_id):
                if event.recipient == recipient and event.type is EventType.DEFERRED:
                    return str(event.reply)
        await asyncio.sleep(0.01)
    raise AssertionError(f"{recipient} was not deferred")


def summary(document: dict[str, object]) -> tuple[int, int, list[str]]:
    (entry,) = document["policies"]  # type: ignore[misc]
    counts = entry["summary"]
    results = sorted(d["result-type"] for d in entry.get("failure-details", []))
    return (counts["total-successful-session-count"], counts["total-failure-session-count"],
            results)
