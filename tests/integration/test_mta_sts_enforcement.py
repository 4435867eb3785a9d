"""Delivery applying an MTA-STS policy (RFC 8461 section 5) to real SMTP servers found
through a real NSD; the policy comes from a fixed StsSource here (fetching and caching
policies over HTTPS is gateway/delivery/mta_sts.py's, tested end to end with it).

verify.test has one MX, mx-tls.test (127.0.0.7); pref.test has mx1.test and mx2.test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway import metrics
from gateway.clock import ManualClock
from gateway.delivery.deliver import Delivery
from gateway.delivery.tls_policy import PolicyType, StsLookup, StsMode, StsPolicy, TlsOutcome
from gateway.model import Route
from tests.fixtures import tls
from tests.fixtures.dns import NsdServer
from tests.fixtures.sink import Sink
from tests.fixtures.tls import make_certs
from tests.integration.test_mx_routing import (
    CONTENT,
    codes,
    config,
    job,
    mx_port,
    nsd_server,
    sinks,
)

__all__ = ["mx_port", "nsd_server", "sinks"]  # fixtures, imported for pytest


class FixedSts:
    """An StsSource that knows one answer per domain."""

    def __init__(self, answers: dict[str, StsLookup]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def lookup(self, domain: str) -> StsLookup:
        self.asked.append(domain)
        return self.answers.get(domain, StsLookup(None))


class Outcomes:
    def __init__(self) -> None:
        self.seen: list[TlsOutcome] = []

    def record(self, outcome: TlsOutcome) -> None:
        self.seen.append(outcome)

    def results(self) -> list[tuple[str, str, str]]:
        return [(o.policy_type.value, o.mx_host, o.result) for o in self.seen]


def policy(domain: str, mode: StsMode, *mx: str) -> StsLookup:
    text = "version: STSv1\nmode: {}\n{}max_age: 86400\n".format(
        mode.value, "".join(f"mx: {m}\n" for m in mx))
    return StsLookup(StsPolicy(domain, "id1", mode, mx, 86400, 0.0, text))


@pytest.fixture
def mx_certs(tmp_path: Path) -> tls.TestCerts:
    return make_certs(tmp_path / "good", ("mx-tls.test",))


@pytest.fixture
def tls_mx(mx_port: int, mx_certs: tls.TestCerts) -> Iterator[Sink]:
    sink = Sink("127.0.0.7", mx_port, tls_context=mx_certs.server_context()).start()
    yield sink
    sink.stop()


def sts_delivery(nsd: NsdServer, port: int, ca: Path, answers: dict[str, StsLookup]
                 ) -> tuple[Delivery, Outcomes]:
    outcomes = Outcomes()
    d = Delivery(config(nsd, port, ca_file=ca), ManualClock(), sts=FixedSts(answers),
                 outcomes=outcomes)
    return d, outcomes


def tls_count(policy_label: str, result: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "smtp_gateway_tls_outcomes_total", {"policy": policy_label, "result": result})
    return value or 0.0


async def test_enforce_delivers_to_a_matching_mx_with_a_valid_certificate(
        nsd_server: NsdServer, mx_port: int, mx_certs: tls.TestCerts, tls_mx: Sink) -> None:
    before = tls_count("sts", "success")
    d, outcomes = sts_delivery(nsd_server, mx_port, mx_certs.ca_file,
                               {"verify.test": policy("verify.test", StsMode.ENFORCE,
                                                      "*.test")})
    try:
        attempt = await d.deliver(job("u@verify.test"), CONTENT)
    finally:
        await d.close()
    assert codes(attempt) == [(250, "2.0.0")]
    assert tls_mx.messages[0].tls
    assert outcomes.results() == [("sts", "mx-tls.test", "success")]
    assert outcomes.seen[0].policy_domain == "verify.test"
    assert "mode: enforce" in outcomes.seen[0].policy_strings
    assert attempt.tls.startswith("policy=sts tls=TLSv1.")
    assert "cipher=" in attempt.tls
    assert tls_count("sts", "success") == before + 1


async def test_enforce_defers_when_the_mx_offers_no_starttls(
        nsd_server: NsdServer, mx_port: int, mx_certs: tls.TestCerts,
        sinks: dict[str, Sink]) -> None:
    plain = sinks["127.0.0.7"]
    d, outcomes = sts_delivery(nsd_server, mx_port, mx_certs.ca_file,
                               {"verify.test": policy("verify.test", StsMode.ENFORCE,
                                                      "mx-tls.test")})
    try:
        attempt = await d.deliver(job("u@verify.test"), CONTENT)
    finally:
        await d.close()
    assert codes(attempt) == [(451, "4.7.5")]
    assert "MTA-STS (verify.test)" in attempt.results[0].reply.text
    assert "not offered" in attempt.results[0].reply.text
    assert plain.count() == 0
    assert outcomes.results() == [("sts", "mx-tls.test", "starttls-not-supported")]
    assert attempt.tls == ""


async def test_enforce_defers_on_a_certificate_for_another_name(
        nsd_server: NsdServer, mx_port: int, tmp_path: Path) -> None:
    wrong = make_certs(tmp_path / "wrong", ("not-the-mx.test",))
    sink = Sink("127.0.0.7", mx_port, tls_context=wrong.server_context()).start()
    d, outcomes = sts_delivery(nsd_server, mx_port, wrong.ca_file,
                               {"verify.test": policy("verify.test", StsMode.ENFORCE,
                                                      "mx-tls.test")})
    try:
        attempt = await d.deliver(job("u@verify.test"), CONTENT)
    finally:
        await d.close()
        sink.stop()
    assert codes(attempt) == [(451, "4.7.5")]
    assert "MTA-STS" in attempt.results[0].reply.text
    assert sink.count() == 0
    assert outcomes.results() == [("sts", "mx-tls.test", "certificate-host-mismatch")]


async def test_enforce_defers_on_an_untrusted_certificate(
        nsd_server: NsdServer, mx_port: int, mx_certs: tls.TestCerts, tls_mx: Sink,
        tmp_path: Path) -> None:
    other_ca = make_certs(tmp_path / "other", ("mx-tls.test",)).ca_file
    d, outcomes = sts_delivery(nsd_server, mx_port, other_ca,
                               {"verify.test": policy("verify.test", StsMode.ENFORCE,
                                                      "mx-tls.test")})
    try:
        attempt = await d.deliver(job("u@verify.test"), CONTENT)
    finally:
        await d.close()
    assert codes(attempt) == [(451, "4.7.5")]
    assert tls_mx.count() == 0
    assert outcomes.results() == [("sts", "mx-tls.test", "certificate-not-trusted")]


async def test_enforce_never_uses_an_mx_host_the_policy_does_not_list(
        nsd_server: NsdServer, mx_port: int, mx_certs: tls.TestCerts,
        sinks: dict[str, Sink]) -> None:
    mx1, mx2 = sinks["127.0.0.2"], sinks["127.0.0.3"]
    d, outcomes = sts_delivery(nsd_server, mx_port, mx_certs.ca_file,
                               {"pref.test": policy("pref.test", StsMode.ENFORCE,
                                                    "mx.elsewhere.example")})
    try:
        attempt = await d.deliver(job("u@pref.test"), CONTENT)
    finally:
        await d.close()
    assert codes(attempt) == [(451, "4.7.5")]
    assert "does not match the policy's mx patterns" in attempt.results[0].reply.text
    assert mx1.connections == 0 and mx2.connections == 0
    assert outcomes.results() == [("sts", "mx1.test", "validation-failure"),
                                  ("sts", "mx2.test", "validation-failure")]
    assert outcomes.seen[0].detail == "mx-mismatch"


async def test_testing_mode_delivers_anyway_and_reports_the_failure(
        nsd_server: NsdServer, mx_port: int, tmp_path: Path) -> None:
    wrong = make_certs(tmp_path / "wrong", ("not-the-mx.test",))
    sink = Sink("127.0.0.7", mx_port, tls_context=wrong.server_context()).start()
    d, outcomes = sts_delivery(nsd_server, mx_port, wrong.ca_file,
                               {"verify.test": policy("verify.test", StsMode.TESTING,
                                                      "mx-tls.test")})
    try:
        attempt = await d.deliver(job("u@verify.test"), CONTENT)
    finally:
        await d.close()
        sink.stop()
    assert codes(attempt) == [(250, "2.0.0")]
    assert sink.messages[0].tls  # still encrypted, as before the policy
    assert outcomes.results() == [("sts", "mx-tls.test", "certificate-host-mismatch")]
    assert outcomes.seen[0].tls_version.startswith("TLSv1.")


async def test_route_testing_only_treats_an_enforce_policy_as_testing(
        nsd_server: NsdServer, mx_port: int, mx_certs: tls.TestCerts,
        sinks: dict[str, Sink]) -> None:
    plain = sinks["127.0.0.7"]
    d, outcomes = sts_delivery(nsd_server, mx_port, mx_certs.ca_file,
                               {"verify.test": policy("verify.test", StsMode.ENFORCE,
                                                      "mx-tls.test")})
    route = Route("relaxed", "mx", mta_sts="testing-only")
    try:
        attempt = await d.deliver(job("u@verify.test", route=route), CONTENT)
    finally:
        await d.close()
    assert codes(attempt) == [(250, "2.0.0")]
    assert not plain.messages[0].tls
    assert outcomes.results() == [("sts", "mx-tls.test", "starttls-not-supported")]
    assert attempt.tls == "policy=sts tls=none"


async def test_route_off_never_asks_for_a_policy(
        nsd_server: NsdServer, mx_port: int, mx_certs: tls.TestCerts,
        sinks: dict[str, Sink]) -> None:
    plain = sinks["127.0.0.7"]
    source = FixedSts({"verify.test": policy("verify.test", StsMode.ENFORCE, "mx-tls.test")})
    outcomes = Outcomes()
    d = Delivery(config(nsd_server, mx_port), ManualClock(), outcomes=outcomes)
    d.sts = source  # settable after construction, as the Gateway wires it
    try:
        attempt = await d.deliver(job("u@verify.test", route=Route("r", "mx", mta_sts="off")),
                                  CONTENT)
    finally:
        await d.close()
    assert codes(attempt) == [(250, "2.0.0")]
    assert plain.count() == 1
    assert source.asked == []
    assert outcomes.results() == [("no-policy-found", "mx-tls.test", "starttls-not-supported")]


async def test_a_fetch_error_is_recorded_and_the_cached_policy_still_applies(
        nsd_server: NsdServer, mx_port: int, mx_certs: tls.TestCerts,
        sinks: dict[str, Sink]) -> None:
    plain = sinks["127.0.0.7"]
    cached = policy("verify.test", StsMode.ENFORCE, "mx-tls.test").policy
    d, outcomes = sts_delivery(nsd_server, mx_port, mx_certs.ca_file,
                               {"verify.test": StsLookup(cached, "sts-policy-fetch-error")})
    try:
        attempt = await d.deliver(job("u@verify.test"), CONTENT)
    finally:
        await d.close()
    assert codes(attempt) == [(451, "4.7.5")]
    assert plain.count() == 0
    assert outcomes.results() == [("sts", "", "sts-policy-fetch-error"),
                                  ("sts", "mx-tls.test", "starttls-not-supported")]
    assert outcomes.seen[0].policy_type is PolicyType.STS


async def test_a_session_under_one_policy_is_not_reused_under_another(
        nsd_server: NsdServer, mx_port: int, mx_certs: tls.TestCerts,
        sinks: dict[str, Sink]) -> None:
    plain = sinks["127.0.0.7"]
    source = FixedSts({})
    d = Delivery(config(nsd_server, mx_port, ca_file=mx_certs.ca_file), ManualClock(),
                 sts=source)
    try:
        first = await d.deliver(job("u@verify.test"), CONTENT)  # no policy: plaintext
        source.answers["verify.test"] = policy("verify.test", StsMode.ENFORCE, "mx-tls.test")
        second = await d.deliver(job("v@verify.test"), CONTENT)
    finally:
        await d.close()
    assert codes(first) == [(250, "2.0.0")]
    assert codes(second) == [(451, "4.7.5")]
    assert plain.recipients() == ["u@verify.test"]


async def test_testing_mode_reports_a_session_to_an_unlisted_mx_once(
        nsd_server: NsdServer, mx_port: int, mx_certs: tls.TestCerts, tls_mx: Sink) -> None:
    d, outcomes = sts_delivery(nsd_server, mx_port, mx_certs.ca_file,
                               {"verify.test": policy("verify.test", StsMode.TESTING,
                                                      "mx.elsewhere.example")})
    try:
        attempt = await d.deliver(job("u@verify.test"), CONTENT)
    finally:
        await d.close()
    assert codes(attempt) == [(250, "2.0.0")]
    assert tls_mx.messages[0].tls
    assert outcomes.results() == [("sts", "mx-tls.test", "validation-failure")]
    assert outcomes.seen[0].detail == "mx-mismatch"
    assert outcomes.seen[0].tls_version.startswith("TLSv1.")
