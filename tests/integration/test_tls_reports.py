"""TLS reports (RFC 8460) for a day of outcomes, from the running gateway: built from the
counts in the state store, validated against the RFC's JSON schema, and delivered to
the destinations a real NSD publishes in `_smtp._tls` TXT records — by mail through the
gateway's own queue to a test sink, DKIM-signed (verified against the key in NSD), and
by HTTPS POST to a test endpoint whose certificate comes from a test CA."""

from __future__ import annotations

import asyncio
import gzip
import json
import textwrap
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from email.policy import default
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from gateway.clock import ManualClock
from gateway.delivery.tls_policy import PolicyType, TlsOutcome
from gateway.delivery.tlsrpt import TlsReporter, day_of
from gateway.state.tls import TlsStore
from tests.fixtures.admin import Api, admin_section
from tests.fixtures.dkim import KeySet, dkim_section, verify_dkimpy
from tests.fixtures.dns import NsdServer, running_nsd
from tests.fixtures.gateway import running_gateway, write_config
from tests.fixtures.mta_sts import ExampleZone, PolicyServer
from tests.fixtures.sink import Sink
from tests.fixtures.tls import TestCerts as Certs
from tests.fixtures.tls import make_certs

SCHEMA = json.loads((Path(__file__).parents[1] / "data" / "tlsrpt-schema.json").read_text())
STS_LINES = ("version: STSv1", "mode: enforce", "mx: mx.rpt.example", "max_age: 86400")
START = 1_796_515_200.0 + 10 * 3600  # 2026-12-06 10:00 UTC


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("rpt-certs"), ("127.0.0.1",))


@pytest.fixture(scope="module")
def web(certs: Certs) -> Iterator[PolicyServer]:
    with PolicyServer(certs) as server:
        yield server


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeySet:
    keys = KeySet(tmp_path_factory.mktemp("rpt-keys"))
    keys.add("gateway.test", "rpt1", "rsa")
    return keys


@pytest.fixture(scope="module")
def nsd(tmp_path_factory: pytest.TempPathFactory, keys: KeySet, web: PolicyServer
        ) -> Iterator[NsdServer]:
    zone = ExampleZone()
    zone.set_txt("_smtp._tls.rpt.example", "v=TLSRPTv1; rua=mailto:tls@reports.example,"
                 f"https://127.0.0.1:{web.port}/tlsrpt/v1")
    zone.set_txt("_smtp._tls.two.example", "v=TLSRPTv1; rua=mailto:a@reports.example",
                 "v=TLSRPTv1; rua=mailto:b@reports.example")  # two records: none
    with running_nsd(tmp_path_factory.mktemp("rpt-nsd"), {**keys.zones(), **zone.zones()}
                     ) as server:
        yield server


@pytest.fixture
def sink() -> Iterator[Sink]:
    sink = Sink().start()
    yield sink
    sink.stop()


def config(tmp_path: Path, sink: Sink, nsd: NsdServer, certs: Certs, keys: KeySet) -> Path:
    path = write_config(tmp_path, sink.port, extra=dkim_section(keys, ["rpt1"]))
    text = path.read_text().replace("delivery:\n", "delivery:\n" + textwrap.indent(
        textwrap.dedent(f"""\
            dns: {{nameservers: [127.0.0.1], port: {nsd.port}, timeout: 3s}}
            ca_file: {certs.ca_file}
            tls_reports:
              enabled: true
              organization: Example Hotels
              contact: mailto:postmaster@gateway.test
            """), "  "), 1)
    path.write_text(text)
    return path


def outcome(result: str, *, domain: str = "rpt.example", mx: str = "mx.rpt.example",
            ip: str = "192.0.2.25", detail: str = "") -> TlsOutcome:
    return TlsOutcome(PolicyType.STS, domain, STS_LINES, mx, ip, result, detail)


def attachment(message: Message) -> tuple[str, bytes]:
    for part in message.walk():
        if part.get_content_type() == "application/tlsrpt+gzip":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            return str(part.get_filename()), payload
    raise AssertionError("no application/tlsrpt+gzip part")


async def test_a_days_outcomes_are_reported_by_mail_and_https(
        tmp_path: Path, sink: Sink, nsd: NsdServer, certs: Certs, keys: KeySet,
        web: PolicyServer) -> None:
    clock = ManualClock(START)
    async with running_gateway(config(tmp_path, sink, nsd, certs, keys), clock) as gw:
        reporter = gw.tls_reports
        assert reporter is not None
        for _ in range(40):
            reporter.record(outcome("success"))
        for _ in range(3):
            reporter.record(outcome("starttls-not-supported", detail="no STARTTLS offered"))
        reporter.record(outcome("certificate-host-mismatch", mx="mx2.rpt.example",
                                ip="192.0.2.26", detail="certificate is for other.example"))
        reporter.record(outcome("success", domain="two.example"))
        reporter.record(outcome("success", domain="quiet.example"))  # no TXT at all
        assert await reporter.flush() == 5
        # The same day, later: not yet due; the next day before `send_after`: not yet.
        assert await reporter.send_due() == []
        clock.set(START + 14 * 3600 + 1800)  # 00:30 UTC the next day
        assert await reporter.send_due() == []
        # An hour later the gateway's own daily job sends them (the supervisor runs it).
        clock.advance(3600)
        day = day_of(START)
        reports = await settled_reports(gw.state.tls, day, 3)
        assert sorted(reporter.sent) == [
            f"{day} rpt.example https://127.0.0.1:{web.port}/tlsrpt/v1",
            f"{day} rpt.example mailto:tls@reports.example (queue id {queued_id(reporter)})"]
        (got,) = await sink.await_for(1)
        assert await reporter.send_due() == []  # once per day and domain
    assert reports["quiet.example"] == reports["two.example"] == "no tlsrpt record"
    assert reports["rpt.example"].startswith("sent mailto:tls@reports.example")

    # By mail: RFC 8460 section 5.3, signed with the gateway's key.
    assert got.rcpt_tos == ["tls@reports.example"]
    assert got.mail_from == "tls-reports@gateway.test"
    message = message_from_bytes(got.data, policy=default)
    assert message.get_content_type() == "multipart/report"
    assert message.get_param("report-type") == "tlsrpt"
    assert message["TLS-Report-Domain"] == "rpt.example"
    assert message["TLS-Report-Submitter"] == "gateway.test"
    assert message["TLS-Required"] == "No"  # delivered despite TLS failures (section 5.3)
    assert str(message["Subject"]).startswith(
        "Report Domain: rpt.example Submitter: gateway.test Report-ID: <")
    name, gzipped = attachment(message)
    begin = int(START - 10 * 3600)
    assert name.startswith(f"gateway.test!rpt.example!{begin}!{begin + 86399}!")
    assert name.endswith(".json.gz")
    assert verify_dkimpy(got.data, nsd) == [True]
    assert b"d=gateway.test" in got.data.split(b"\r\n\r\n", 1)[0]

    # The document.
    document = json.loads(gzip.decompress(gzipped))
    jsonschema.validate(document, SCHEMA)
    check_document(document, day)

    # By HTTPS: the same report, as application/tlsrpt+gzip.
    (posted,) = [p for p in web.posts if p.path == "/tlsrpt/v1"]
    assert posted.headers["Content-Type"] == "application/tlsrpt+gzip"
    assert json.loads(gzip.decompress(posted.body)) == document


def queued_id(reporter: TlsReporter) -> str:
    (mail,) = [s for s in reporter.sent if " mailto:" in s]
    return mail.rsplit(" ", 1)[1].rstrip(")")


async def settled_reports(store: TlsStore, day: str, count: int) -> dict[str, str]:
    for _ in range(1000):
        reports = await store.reports(day)
        if len(reports) == count and "sending" not in reports.values():
            return reports
        await asyncio.sleep(0.01)
    raise AssertionError(f"reports not sent: {reports}")


def check_document(document: dict[str, Any], day: str) -> None:
    assert document["organization-name"] == "Example Hotels"
    assert document["contact-info"] == "mailto:postmaster@gateway.test"
    assert document["date-range"] == {"start-datetime": f"{day}T00:00:00Z",
                                      "end-datetime": f"{day}T23:59:59Z"}
    (entry,) = document["policies"]
    assert entry["policy"] == {"policy-type": "sts", "policy-domain": "rpt.example",
                               "policy-string": list(STS_LINES),
                               "mx-host": ["mx.rpt.example"]}
    assert entry["summary"] == {"total-successful-session-count": 40,
                                "total-failure-session-count": 4}
    details = {d["result-type"]: d for d in entry["failure-details"]}
    assert details["starttls-not-supported"] == {
        "result-type": "starttls-not-supported", "failed-session-count": 3,
        "receiving-mx-hostname": "mx.rpt.example", "receiving-ip": "192.0.2.25",
        "failure-reason-code": "no STARTTLS offered"}
    assert details["certificate-host-mismatch"]["receiving-mx-hostname"] == "mx2.rpt.example"


def test_the_schema_refuses_a_broken_report() -> None:
    # The schema itself must be able to fail.
    broken = {"organization-name": "x", "contact-info": "y", "report-id": "z",
              "date-range": {"start-datetime": "yesterday", "end-datetime": "today"},
              "policies": [{"policy": {"policy-type": "sts"}, "summary": {}}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, SCHEMA)


async def test_the_admin_api_sends_the_reports_at_once(
        tmp_path: Path, sink: Sink, nsd: NsdServer, certs: Certs, keys: KeySet) -> None:
    clock = ManualClock(START)
    path = config(tmp_path, sink, nsd, certs, keys)
    path.write_text(path.read_text() + admin_section(tmp_path))
    async with running_gateway(path, clock) as gw:
        assert gw.tls_reports is not None and gw.admin is not None
        gw.tls_reports.record(outcome("success", domain="quiet.example"))
        await gw.tls_reports.flush()
        clock.set(START + 14 * 3600 + 600)  # 00:10 UTC: before send_after (1h)
        api = Api(gw.admin.port)
        first = await api.post("/v1/tls-reports/send")
        again = await api.post("/v1/tls-reports/send")
        entries = await gw.state.audit.entries()
    assert (first.status, first.json) == (200, {"sent": ["2026-12-06 quiet.example"]})
    assert (again.status, again.json) == (200, {"sent": []})
    assert [e.action for e in entries].count("tls_reports.send") == 2


async def test_the_admin_api_says_when_tls_reports_are_off(tmp_path: Path, sink: Sink) -> None:
    path = write_config(tmp_path, sink.port, extra=admin_section(tmp_path))
    async with running_gateway(path) as gw:
        assert gw.admin is not None
        result = await Api(gw.admin.port).post("/v1/tls-reports/send")
    assert (result.status, result.error_code) == (409, "tls_reports_off")
