"""REQUIRETLS (RFC 8689) over real sockets: intake offers and takes it only inside TLS and
keeps it in the queue file; delivery sends such a message only over validated TLS (an
enforced MTA-STS policy, DANE, a verified smarthost) to a server that offers REQUIRETLS,
with REQUIRETLS on its MAIL FROM, and bounces it otherwise; `TLS-Required: No` sets the
recipient's policies aside.
"""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.clock import ManualClock
from gateway.delivery.deliver import Delivery
from gateway.delivery.settings import DeliveryConfig
from gateway.delivery.tls_policy import StsMode
from gateway.model import Client, DeliveryJob, Envelope, QueuedMessage, Route, Smarthost
from gateway.spool.store import decode_header, encode_header
from tests.fixtures import tls
from tests.fixtures.dns import NsdServer
from tests.fixtures.intake import IntakeHarness, relay_listener
from tests.fixtures.sink import Sink
from tests.fixtures.tls import make_certs
from tests.integration.test_mta_sts_enforcement import FixedSts, policy
from tests.integration.test_mx_routing import (
    CONTENT,
    codes,
    config,
    mx_port,
    nsd_server,
    sinks,
)

__all__ = ["mx_port", "nsd_server", "sinks"]  # fixtures, imported for pytest


# -- intake ---------------------------------------------------------------------------------


@pytest.fixture
def certs(tmp_path: Path) -> tls.TestCerts:
    return make_certs(tmp_path / "certs")


def test_requiretls_is_offered_and_taken_only_inside_tls(tmp_path: Path,
                                                         certs: tls.TestCerts) -> None:
    listener = relay_listener(tls="starttls", certs=certs)
    with IntakeHarness(tmp_path, listener) as gw, \
            smtplib.SMTP("127.0.0.1", gw.port) as client:
        client.ehlo()
        assert not client.has_extn("requiretls")
        code, text = client.docmd("MAIL FROM:<app@src.test> REQUIRETLS")
        assert (code, text) == (530, b"5.7.10 REQUIRETLS needs a TLS session: STARTTLS first")
        client.starttls(context=certs.client_context())
        client.ehlo()
        assert client.has_extn("requiretls")
        assert client.mail("app@src.test", ["REQUIRETLS"]) == (250, b"2.1.0 Sender OK")
        assert client.rcpt("guest@dest.test")[0] == 250
        assert client.data(b"Subject: booking\r\n\r\nconfirmed\r\n")[0] == 250
        [(qm, _)] = gw.wait_stored(1)
    assert qm.envelope.requiretls
    assert not qm.envelope.tls_optional


def test_tls_required_no_header_is_kept_with_the_message(tmp_path: Path) -> None:
    with IntakeHarness(tmp_path, relay_listener()) as gw, \
            smtplib.SMTP("127.0.0.1", gw.port) as client:
        client.sendmail("app@src.test", ["guest@dest.test"],
                        b"TLS-Required: No\r\nSubject: newsletter\r\n\r\nhi\r\n")
        client.sendmail("app@src.test", ["guest@dest.test"], b"Subject: plain\r\n\r\nhi\r\n")
        stored = gw.wait_stored(2)
    flags = sorted((qm.envelope.tls_optional, qm.envelope.requiretls) for qm, _ in stored)
    assert flags == [(False, False), (True, False)]


def test_queue_files_keep_the_flags_and_old_files_read_as_without() -> None:
    env = Envelope("a@src.test", ("u@dest.test",), Client("relay", "127.0.0.1"), 1.0,
                   requiretls=True)
    header = encode_header(QueuedMessage("Q1", env, 10))
    assert decode_header(header)[0].envelope.requiretls
    plain = encode_header(QueuedMessage("Q2", Envelope("a@src.test", ("u@dest.test",),
                                                       Client("relay", "127.0.0.1"), 1.0), 10))
    assert b"requiretls" not in plain and b"tls_optional" not in plain  # format unchanged
    assert not decode_header(plain)[0].envelope.requiretls


# -- delivery -------------------------------------------------------------------------------


def job(recipient: str, *, requiretls: bool = False, tls_optional: bool = False,
        route: Route | None = None) -> DeliveryJob:
    env = Envelope("a@src.test", (recipient,), Client("relay", "127.0.0.1"), 0.0,
                   requiretls=requiretls, tls_optional=tls_optional)
    return DeliveryJob(QueuedMessage("Q1", env, len(CONTENT)), (recipient,),
                       route or Route("direct", "mx"), recipient.rpartition("@")[2], 1)


@pytest.fixture
def mx_certs(tmp_path: Path) -> tls.TestCerts:
    return make_certs(tmp_path / "mx", ("mx-tls.test",))


def requiretls_mx(port: int, certs: tls.TestCerts, *, offers: bool = True) -> Sink:
    return Sink("127.0.0.7", port, tls_context=certs.server_context(),
                requiretls=offers).start()


@pytest.fixture
def enforcing(nsd_server: NsdServer, mx_port: int, mx_certs: tls.TestCerts
              ) -> Iterator[Delivery]:
    sts = FixedSts({"verify.test": policy("verify.test", StsMode.ENFORCE, "mx-tls.test")})
    d = Delivery(config(nsd_server, mx_port, ca_file=mx_certs.ca_file), ManualClock(), sts=sts)
    yield d


async def test_requiretls_goes_over_enforced_sts_with_the_parameter(
        enforcing: Delivery, mx_port: int, mx_certs: tls.TestCerts) -> None:
    sink = requiretls_mx(mx_port, mx_certs)
    try:
        attempt = await enforcing.deliver(job("u@verify.test", requiretls=True), CONTENT)
    finally:
        await enforcing.close()
        sink.stop()
    assert codes(attempt) == [(250, "2.0.0")]
    assert sink.messages[0].tls
    assert "REQUIRETLS" in sink.messages[0].mail_options


async def test_an_ordinary_message_does_not_carry_the_parameter(
        enforcing: Delivery, mx_port: int, mx_certs: tls.TestCerts) -> None:
    sink = requiretls_mx(mx_port, mx_certs)
    try:
        attempt = await enforcing.deliver(job("u@verify.test"), CONTENT)
    finally:
        await enforcing.close()
        sink.stop()
    assert codes(attempt) == [(250, "2.0.0")]
    assert "REQUIRETLS" not in sink.messages[0].mail_options


async def test_requiretls_bounces_when_the_server_does_not_offer_it(
        enforcing: Delivery, mx_port: int, mx_certs: tls.TestCerts) -> None:
    sink = requiretls_mx(mx_port, mx_certs, offers=False)
    try:
        attempt = await enforcing.deliver(job("u@verify.test", requiretls=True), CONTENT)
    finally:
        await enforcing.close()
        sink.stop()
    assert codes(attempt) == [(550, "5.7.30")]
    assert attempt.results[0].state == "bounced"
    assert sink.count() == 0


async def test_requiretls_bounces_without_a_policy_that_validates_the_mx(
        nsd_server: NsdServer, mx_port: int, mx_certs: tls.TestCerts) -> None:
    # TLS and REQUIRETLS are there, but nothing vouches for the MX name (no STS, no DANE).
    sink = requiretls_mx(mx_port, mx_certs)
    d = Delivery(config(nsd_server, mx_port, ca_file=mx_certs.ca_file), ManualClock())
    try:
        attempt = await d.deliver(job("u@verify.test", requiretls=True), CONTENT)
    finally:
        await d.close()
        sink.stop()
    assert codes(attempt) == [(550, "5.7.10")]
    assert sink.count() == 0


async def test_tls_required_no_sets_an_enforced_policy_aside(
        enforcing: Delivery, mx_port: int, sinks: dict[str, Sink]) -> None:
    plain = sinks["127.0.0.7"]  # no STARTTLS: the enforced policy would defer
    try:
        ordinary = await enforcing.deliver(job("u@verify.test"), CONTENT)
        optional = await enforcing.deliver(job("v@verify.test", tls_optional=True), CONTENT)
        # REQUIRETLS wins over the header (RFC 8689 section 5).
        both = await enforcing.deliver(job("w@verify.test", tls_optional=True, requiretls=True),
                                       CONTENT)
    finally:
        await enforcing.close()
    assert codes(ordinary) == [(451, "4.7.5")]
    assert codes(optional) == [(250, "2.0.0")]
    assert codes(both) == [(451, "4.7.5")]
    assert plain.recipients() == ["v@verify.test"]


def smarthost_route(port: int, *, verify: bool) -> Route:
    return Route("relay", "smarthost", smarthosts=(
        Smarthost("hub", "localhost", port, tls="starttls", verify_cert=verify),))


async def test_requiretls_over_a_smarthost_needs_a_verified_certificate(
        tmp_path: Path) -> None:
    certs = make_certs(tmp_path / "hub", ("localhost",))
    sink = Sink("127.0.0.1", 0, tls_context=certs.server_context(), requiretls=True).start()
    d = Delivery(DeliveryConfig("gw.test", ca_file=certs.ca_file, connect_timeout=2,
                                command_timeout=5, data_timeout=5), ManualClock())
    try:
        verified = await d.deliver(job("u@dest.test", requiretls=True,
                                       route=smarthost_route(sink.port, verify=True)), CONTENT)
        unverified = await d.deliver(job("v@dest.test", requiretls=True,
                                         route=smarthost_route(sink.port, verify=False)),
                                     CONTENT)
    finally:
        await d.close()
        sink.stop()
    assert codes(verified) == [(250, "2.0.0")]
    assert "REQUIRETLS" in sink.messages[0].mail_options
    assert codes(unverified) == [(550, "5.7.10")]
    assert sink.recipients() == ["u@dest.test"]
