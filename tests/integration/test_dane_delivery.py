"""DANE (RFC 7672) end to end: a DNSSEC-signed zone (ldns-signzone) served by NSD, a
validating Unbound trusting its key, and real Postfix destinations, one with STARTTLS on
127.0.0.7 and one without on 127.0.0.8, both on the same port.

Zone `signed.` (secure):  good (TLSA 3 1 1 of the server's key), wrong (a TLSA that
matches nothing), ta (TLSA 2 0 1 of the issuing CA), pkix (only a PKIX-EE record:
unusable), tlsabogus (its TLSA signature broken), mxbogus (its MX signature broken),
notls (a matching TLSA on the server without STARTTLS), none (no TLSA, plaintext server).
Zone `unsigned.` (insecure): plain, whose MX has a wrong TLSA that must be ignored.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.clock import ManualClock
from gateway.delivery.deliver import Delivery
from gateway.delivery.mx import MxResolver
from gateway.delivery.settings import DeliveryConfig, DnsConfig
from gateway.delivery.tls_policy import StsMode, TlsOutcome
from gateway.errors import TempFail
from gateway.model import Attempt, Client, DeliveryJob, Envelope, QueuedMessage, Route
from tests.fixtures.dns import TEST_ZONE, running_nsd
from tests.fixtures.dnssec import running_unbound, sign_zone, tamper_rrsig
from tests.fixtures.postfix import PostfixServer, running_postfix
from tests.fixtures.tls import make_certs
from tests.integration.test_mta_sts_enforcement import FixedSts, policy
from tests.integration.test_mx_routing import common_port

CONTENT = b"From: a@src.test\r\nTo: u@dest\r\nSubject: dane\r\n\r\nhello\r\n"
NAMES = ("mx-good.signed", "mx-wrong.signed", "mx-ta.signed", "mx-pkix.signed",
         "mx-tlsabogus.signed", "mx-notls.signed", "mx.unsigned")
DOMAINS = ("good.signed", "wrong.signed", "ta.signed", "pkix.signed", "tlsabogus.signed",
           "mxbogus.signed", "notls.signed", "none.signed", "plain.unsigned")
NOTHING = "0" * 64


@dataclass(frozen=True)
class World:
    port: int
    resolver_port: int
    tls_mx: PostfixServer
    plain_mx: PostfixServer


def signed_zone(port: int, good: str, ca: str) -> str:
    records = {"good": ("7", f"3 1 1 {good}"), "wrong": ("7", f"3 1 1 {NOTHING}"),
               "ta": ("7", f"2 0 1 {ca}"), "pkix": ("7", f"1 1 1 {NOTHING}"),
               "tlsabogus": ("7", f"3 1 1 {good}"), "notls": ("8", f"3 1 1 {good}"),
               "none": ("8", None)}
    lines = ["$ORIGIN signed.", "$TTL 300",
             "@ IN SOA ns.signed. hostmaster.signed. 1 3600 600 86400 60",
             "@ IN NS ns.signed.", "ns IN A 127.0.0.1",
             "mxbogus IN MX 10 mx-good.signed."]
    for name, (last_octet, tlsa) in records.items():
        lines += [f"{name} IN MX 10 mx-{name}.signed.", f"mx-{name} IN A 127.0.0.{last_octet}"]
        if tlsa:
            lines.append(f"_{port}._tcp.mx-{name} IN TLSA {tlsa}")
    return "\n".join(lines) + "\n"


def unsigned_zone(port: int) -> str:
    return (f"$ORIGIN unsigned.\n$TTL 300\n@ IN SOA ns.unsigned. h.unsigned. 1 3600 600 86400 60\n"
            f"@ IN NS ns.unsigned.\nns IN A 127.0.0.1\nplain IN MX 10 mx.unsigned.\n"
            f"mx IN A 127.0.0.7\n_{port}._tcp.mx IN TLSA 3 1 1 {NOTHING}\n")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = tmp_path_factory.mktemp("dane")
    certs = make_certs(base / "certs", NAMES)
    leaf = x509.load_pem_x509_certificate(certs.cert_file.read_bytes())
    ca = x509.load_pem_x509_certificate(certs.ca_file.read_bytes())
    spki = leaf.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    chain = base / "chain.pem"
    chain.write_bytes(certs.cert_file.read_bytes() + certs.ca_file.read_bytes())
    port = common_port(("127.0.0.7", "127.0.0.8"))
    signed, ds = sign_zone(base, "signed.", signed_zone(
        port, hashlib.sha256(spki).hexdigest(),
        hashlib.sha256(ca.public_bytes(Encoding.DER)).hexdigest()))
    signed = tamper_rrsig(signed, f"_{port}._tcp.mx-tlsabogus.signed.", "TLSA")
    signed = tamper_rrsig(signed, "mxbogus.signed.", "MX")
    zones: dict[str, str | None] = {"test.": TEST_ZONE, "signed.": signed,
                                    "unsigned.": unsigned_zone(port)}
    with running_postfix(address="127.0.0.7", port=port, domains=DOMAINS,
                         tls=(certs.key_file, chain)) as tls_mx, \
            running_postfix(address="127.0.0.8", port=port, domains=DOMAINS) as plain_mx, \
            running_nsd(base / "nsd", zones) as nsd, \
            running_unbound(base / "unbound", nsd.port, anchors=[ds], insecure=["unsigned."],
                            stubs=["signed.", "unsigned."]) as unbound:
        yield World(port, unbound.port, tls_mx, plain_mx)


class Outcomes:
    def __init__(self) -> None:
        self.seen: list[TlsOutcome] = []

    def record(self, outcome: TlsOutcome) -> None:
        self.seen.append(outcome)

    def results(self) -> list[tuple[str, str]]:
        return [(o.policy_type.value, o.result) for o in self.seen]


def dane_delivery(world: World, *, dane: bool = True, sts: FixedSts | None = None
                  ) -> tuple[Delivery, Outcomes]:
    dns = DnsConfig(("127.0.0.1",), world.resolver_port, 3.0, dnssec="validating-resolver")
    config = DeliveryConfig("gw.test", mx_port=world.port, dns=dns, dane=dane,
                            connect_timeout=2, command_timeout=10, data_timeout=10)
    outcomes = Outcomes()
    return Delivery(config, ManualClock(), outcomes=outcomes, sts=sts), outcomes


def job(recipient: str, *, requiretls: bool = False) -> DeliveryJob:
    env = Envelope("a@src.test", (recipient,), Client("relay", "127.0.0.1"), 0.0,
                   requiretls=requiretls)
    return DeliveryJob(QueuedMessage("Q1", env, len(CONTENT)), (recipient,),
                       Route("direct", "mx"), recipient.rpartition("@")[2], 1)


async def send(world: World, recipient: str, **kwargs: bool) -> tuple[Attempt, Outcomes]:
    d, outcomes = dane_delivery(world, **kwargs)
    try:
        return await d.deliver(job(recipient), CONTENT), outcomes
    finally:
        await d.close()


def arrived(server: PostfixServer, recipient: str, timeout: float = 20.0) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in server.messages():
            if f"<{recipient}>".encode() in message:
                return message
        time.sleep(0.05)
    raise AssertionError(f"{recipient} never arrived; maillog:\n{server.maillog()}")


def seen_by_postfix(world: World, recipient: str) -> bool:
    """Whether either Postfix took `recipient` (its log names every recipient it queued)."""
    needle = f"<{recipient}>"
    return any(needle in server.maillog() or any(needle.encode() in m for m in server.messages())
               for server in (world.tls_mx, world.plain_mx))


def reply_of(attempt: Attempt) -> tuple[int, str]:
    return attempt.results[0].reply.code, attempt.results[0].reply.enhanced


async def test_a_matching_dane_ee_record_delivers_over_tls(world: World) -> None:
    attempt, outcomes = await send(world, "first@good.signed")
    assert reply_of(attempt) == (250, "2.0.0"), attempt.results[0].reply
    stored = await asyncio.to_thread(arrived, world.tls_mx, "first@good.signed")
    assert b"using TLS" in stored  # Postfix's Received: says how it came
    assert attempt.tls.startswith("policy=dane tls=TLSv1.")
    assert outcomes.results() == [("tlsa", "success")]
    assert outcomes.seen[0].policy_domain == "mx-good.signed"


async def test_a_dane_ta_record_for_the_issuing_ca_delivers(world: World) -> None:
    attempt, outcomes = await send(world, "u@ta.signed")
    assert reply_of(attempt) == (250, "2.0.0"), attempt.results[0].reply
    assert outcomes.results() == [("tlsa", "success")]


async def test_a_tlsa_record_that_matches_nothing_defers_and_never_sends(world: World) -> None:
    attempt, outcomes = await send(world, "u@wrong.signed")
    assert reply_of(attempt) == (451, "4.7.5")
    assert "DANE" in attempt.results[0].reply.text
    assert outcomes.results() == [("tlsa", "validation-failure")]
    assert not seen_by_postfix(world, "u@wrong.signed")


async def test_a_server_without_starttls_is_not_used_in_plaintext(world: World) -> None:
    attempt, outcomes = await send(world, "u@notls.signed")
    assert reply_of(attempt) == (451, "4.7.5")
    assert outcomes.results() == [("tlsa", "starttls-not-supported")]
    assert not seen_by_postfix(world, "u@notls.signed")


async def test_a_bogus_tlsa_signature_defers(world: World) -> None:
    attempt, outcomes = await send(world, "u@tlsabogus.signed")
    assert reply_of(attempt) == (451, "4.7.5")
    assert "TLSA lookup" in attempt.results[0].reply.text
    assert outcomes.results() == [("tlsa", "dnssec-invalid")]


async def test_a_bogus_mx_signature_defers(world: World) -> None:
    attempt, _ = await send(world, "u@mxbogus.signed")
    assert reply_of(attempt) == (451, "4.4.3")


async def test_only_unusable_records_still_make_tls_mandatory(world: World) -> None:
    attempt, outcomes = await send(world, "u@pkix.signed")
    assert reply_of(attempt) == (250, "2.0.0"), attempt.results[0].reply
    assert attempt.tls.startswith("policy=dane tls=TLSv1.")
    assert outcomes.results() == [("tlsa", "success")]


async def test_a_secure_host_without_tlsa_delivers_opportunistically(world: World) -> None:
    attempt, outcomes = await send(world, "u@none.signed")
    assert reply_of(attempt) == (250, "2.0.0")
    assert attempt.tls == "policy=none tls=none"
    assert outcomes.results() == [("no-policy-found", "starttls-not-supported")]


async def test_an_unsigned_zone_ignores_its_tlsa_records(world: World) -> None:
    attempt, outcomes = await send(world, "u@plain.unsigned")
    assert reply_of(attempt) == (250, "2.0.0"), attempt.results[0].reply
    assert attempt.tls.startswith("policy=none tls=TLSv1.")
    assert outcomes.results() == [("no-policy-found", "success")]


async def test_with_dane_off_a_wrong_record_is_ignored(world: World) -> None:
    attempt, _ = await send(world, "u@wrong.signed", dane=False)
    assert reply_of(attempt) == (250, "2.0.0")


async def test_dane_wins_over_an_mta_sts_policy_for_the_same_host(world: World) -> None:
    # The enforce policy names another MX and the gateway does not trust the test CA:
    # under MTA-STS alone this would defer; DANE decides for a host with TLSA records.
    sts = FixedSts({"good.signed": policy("good.signed", StsMode.ENFORCE, "elsewhere.example")})
    d, outcomes = dane_delivery(world, sts=sts)
    try:
        attempt = await d.deliver(job("u@good.signed"), CONTENT)
    finally:
        await d.close()
    assert reply_of(attempt) == (250, "2.0.0"), attempt.results[0].reply
    assert outcomes.results() == [("tlsa", "success")]
    assert sts.asked == ["good.signed"]


async def test_requiretls_bounces_at_a_dane_host_that_does_not_offer_it(world: World) -> None:
    d, _ = dane_delivery(world)
    try:
        attempt = await d.deliver(job("u@good.signed", requiretls=True), CONTENT)
    finally:
        await d.close()
    assert reply_of(attempt) == (550, "5.7.30")
    assert attempt.results[0].state == "bounced"



async def test_tlsa_answers_are_cached_for_their_ttl(tmp_path: Path) -> None:
    clock = ManualClock()
    zones: dict[str, str | None] = {"test.": TEST_ZONE, "unsigned.": unsigned_zone(25)}
    with running_nsd(tmp_path, zones) as nsd:
        resolver = MxResolver(DnsConfig(("127.0.0.1",), nsd.port, 0.5), clock)
        records = await resolver.tlsa("mx.unsigned", 25)
        assert records == (f"3 1 1 {NOTHING}",)
        assert await resolver.tlsa("mx.unsigned", 587) == ()  # NXDOMAIN, cached too
        assert not resolver.is_secure("_25._tcp.mx.unsigned", "TLSA")  # dnssec: off
    # NSD is gone: within the TTL (300 s; NXDOMAIN: the SOA minimum, 60 s) the cache answers.
    clock.advance(59)
    assert await resolver.tlsa("mx.unsigned", 25) == records
    assert await resolver.tlsa("mx.unsigned", 587) == ()
    clock.advance(2)
    with pytest.raises(TempFail):
        await resolver.tlsa("mx.unsigned", 587)
    clock.advance(240)
    with pytest.raises(TempFail):
        await resolver.tlsa("mx.unsigned", 25)
