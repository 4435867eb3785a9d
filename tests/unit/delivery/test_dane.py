"""dane.py: which TLSA records are usable for SMTP and how a chain matches them
(RFC 7672 section 3, RFC 6698 section 2.1)."""

from __future__ import annotations

import datetime
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from gateway.delivery.dane import Tlsa, check_chain, parse_tlsa, usable

NOW = datetime.datetime(2026, 12, 7, tzinfo=datetime.UTC)


def _name(text: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


def _cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str,
          issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool = False,
          names: tuple[str, ...] = (), days: tuple[int, int] = (-1, 30)) -> x509.Certificate:
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(NOW + datetime.timedelta(days=days[0]))
               .not_valid_after(NOW + datetime.timedelta(days=days[1])))
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
    if names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
    return builder.sign(issuer_key, hashes.SHA256())


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


def spki(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


CA_KEY = ec.generate_private_key(ec.SECP256R1())
LEAF_KEY = ec.generate_private_key(ec.SECP256R1())
CA = _cert("Test CA", CA_KEY, "Test CA", CA_KEY, ca=True)
LEAF = _cert("mx.example", LEAF_KEY, "Test CA", CA_KEY, names=("mx.example", "*.pool.example"))
CHAIN = [der(LEAF), der(CA)]


@pytest.mark.parametrize(("selector", "matching", "data"), [
    (0, 0, der(LEAF)),
    (0, 1, hashlib.sha256(der(LEAF)).digest()),
    (0, 2, hashlib.sha512(der(LEAF)).digest()),
    (1, 0, spki(LEAF)),
    (1, 1, hashlib.sha256(spki(LEAF)).digest()),
    (1, 2, hashlib.sha512(spki(LEAF)).digest()),
])
def test_dane_ee_matches_every_selector_and_matching_type(
        selector: int, matching: int, data: bytes) -> None:
    assert check_chain((Tlsa(3, selector, matching, data),), CHAIN, "mx.example", NOW) is None


def test_dane_ee_checks_neither_name_nor_dates() -> None:
    expired = _cert("other", LEAF_KEY, "Test CA", CA_KEY, days=(-60, -30))
    record = Tlsa(3, 1, 1, hashlib.sha256(spki(expired)).digest())
    assert check_chain((record,), [der(expired)], "mx.example", NOW) is None


def test_a_record_matching_nothing_is_a_validation_failure() -> None:
    record = Tlsa(3, 1, 1, bytes(32))
    result, reason = check_chain((record,), CHAIN, "mx.example", NOW) or ("", "")
    assert result == "validation-failure"
    assert "no TLSA record matches" in reason


def test_dane_ta_matches_the_issuer_in_the_chain_and_checks_the_name() -> None:
    ta = (Tlsa(2, 0, 1, hashlib.sha256(der(CA)).digest()),)
    assert check_chain(ta, CHAIN, "mx.example", NOW) is None
    assert check_chain(ta, CHAIN, "a.pool.example", NOW) is None  # wildcard, one label
    assert check_chain(ta, CHAIN, "a.b.pool.example", NOW) == (
        "certificate-host-mismatch", "DANE-TA: the certificate does not name a.b.pool.example")


def test_dane_ta_needs_the_anchor_in_the_chain_the_server_sent() -> None:
    ta = (Tlsa(2, 1, 1, hashlib.sha256(spki(CA)).digest()),)
    assert check_chain(ta, CHAIN, "mx.example", NOW) is None
    assert check_chain(ta, [der(LEAF)], "mx.example", NOW) is not None


def test_dane_ta_refuses_a_leaf_the_anchor_did_not_sign() -> None:
    other_key = ec.generate_private_key(ec.SECP256R1())
    forged = _cert("mx.example", LEAF_KEY, "Test CA", other_key, names=("mx.example",))
    ta = (Tlsa(2, 0, 1, hashlib.sha256(der(CA)).digest()),)
    assert check_chain(ta, [der(forged), der(CA)], "mx.example", NOW) == (
        "validation-failure", "DANE-TA: the chain does not lead to the trust anchor")


def test_dane_ta_refuses_an_expired_leaf() -> None:
    old = _cert("mx.example", LEAF_KEY, "Test CA", CA_KEY, names=("mx.example",),
                days=(-60, -1))
    ta = (Tlsa(2, 0, 1, hashlib.sha256(der(CA)).digest()),)
    result = check_chain(ta, [der(old), der(CA)], "mx.example", NOW)
    assert result is not None and result[0] == "certificate-expired"


def test_pkix_usages_and_unknown_types_are_unusable() -> None:
    records = ("0 0 1 " + "00" * 32, "1 1 1 " + "00" * 32, "3 2 1 00", "3 1 3 00",
               "3 1 1 " + "ab" * 32, "2 0 1 ABCD EF01", "x y z", "3 1 1 zz")
    assert [str(t) for t in usable(records)] == ["3 1 1 " + "ab" * 32, "2 0 1 abcdef01"]


def test_parse_tlsa_joins_split_hex() -> None:
    assert parse_tlsa("3 1 1 ab cd") == Tlsa(3, 1, 1, b"\xab\xcd")
    assert parse_tlsa("3 1") is None
