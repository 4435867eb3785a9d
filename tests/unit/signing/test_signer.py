"""DkimSigner: which key signs, the fallbacks, failures, h= and what verifies.

Signatures are checked with dkimpy against the keys' TXT records served from a
dict; the trip through the real pipeline, DNS and Mail::DKIM is in
tests/integration/test_dkim_*.py.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import dkim
import pytest

from gateway.signing.keys import (
    PrivateKey,
    dns_record_value,
    generate_private_key,
    parse_private_key,
)
from gateway.signing.settings import DkimConfig, DkimKey
from gateway.signing.signer import DkimSigner, SigningCounters, SignOutcome, refusal_reply

Keys = dict[tuple[str, str], PrivateKey]

MESSAGE = (
    b"Received: from app.test ([127.0.0.1])\r\n\tby gateway.test with ESMTP id 01ABC\r\n"
    b"From: Booking <app@example.com>\r\nTo: guest@example.net\r\n"
    b"Subject: Your booking\r\nDate: Tue, 14 Nov 2023 22:13:20 +0000\r\n"
    b"Message-ID: <b-42@example.com>\r\n\r\nSee you soon.\r\n"
)


@pytest.fixture(scope="module")
def keys() -> Keys:
    made = {}
    for domain, selector, algorithm in (("example.com", "rsa1", "rsa"),
                                        ("example.com", "ed1", "ed25519"),
                                        ("example.com", "rsa0", "rsa"),
                                        ("example.org", "org1", "ed25519"),
                                        ("default.example", "def1", "ed25519")):
        made[(domain, selector)] = parse_private_key(generate_private_key(algorithm))
    return made


def dkim_config(keys: Keys, active: tuple[str, ...] = ("rsa1", "org1", "def1"),
                **kwargs: object) -> DkimConfig:
    entries = tuple(
        DkimKey(domain, selector, key.algorithm, Path(f"/nonexistent/{selector}"),
                selector in active, key)
        for (domain, selector), key in keys.items()
    )
    return replace(DkimConfig(keys=entries), **kwargs)  # type: ignore[arg-type]


def dnsfunc(keys: Keys) -> Callable[..., bytes | None]:
    records = {f"{s}._domainkey.{d}.".encode(): dns_record_value(k).encode()
               for (d, s), k in keys.items()}

    def get_txt(name: bytes, timeout: float = 5) -> bytes | None:
        return records.get(name if name.endswith(b".") else name + b".")

    return get_txt


def verifies(message: bytes, keys: Keys, idx: int = 0) -> bool:
    try:
        return bool(dkim.DKIM(message).verify(idx=idx, dnsfunc=dnsfunc(keys)))
    except dkim.DKIMException:
        return False


def tags(message: bytes, idx: int = 0) -> dict[bytes, bytes]:
    sigs = [v for n, v in dkim.DKIM(message).headers if n.lower() == b"dkim-signature"]
    return dict(dkim.util.parse_tag_value(sigs[idx]))


def with_from(value: bytes, message: bytes = MESSAGE) -> bytes:
    return message.replace(b"From: Booking <app@example.com>", b"From: " + value)


# -- which key -------------------------------------------------------------------------------


def test_signs_with_the_from_domains_active_key_and_leaves_content_unchanged(
        keys: Keys) -> None:
    signer = DkimSigner(dkim_config(keys))
    result = signer.sign(MESSAGE)
    assert result.outcome is SignOutcome.SIGNED
    assert (result.domain, result.selectors, result.reason) == ("example.com", ("rsa1",), "")
    assert result.content.startswith(b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;")
    assert result.content.endswith(MESSAGE)  # prepended, nothing else touched
    sig = tags(result.content)
    assert (sig[b"d"], sig[b"s"]) == (b"example.com", b"rsa1")
    assert verifies(result.content, keys)


def test_default_signed_headers_and_from_oversigned(keys: Keys) -> None:
    message = MESSAGE.replace(b"\r\n\r\n", b"\r\nCc: a@x.test\r\nReply-To: r@example.com\r\n"
                              b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
                              b"Content-Transfer-Encoding: 8bit\r\nList-Unsubscribe: <https://u>"
                              b"\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
                              b"X-Mailer: app\r\n\r\n", 1)
    result = DkimSigner(dkim_config(keys)).sign(message)
    signed = [h.strip() for h in tags(result.content)[b"h"].split(b":")]
    assert sorted(signed) == sorted([
        b"from", b"from", b"to", b"cc", b"subject", b"date", b"message-id", b"reply-to",
        b"mime-version", b"content-type", b"content-transfer-encoding", b"list-unsubscribe",
        b"list-unsubscribe-post"])  # not X-Mailer, not Received
    assert verifies(result.content, keys)
    second_from = result.content.replace(b"To: guest", b"From: evil@attacker.test\r\nTo: guest")
    assert not verifies(second_from, keys)  # the oversigned From: cannot be added


def test_headers_absent_from_the_message_are_not_signed_unless_oversigned(keys: Keys) -> None:
    config = dkim_config(keys, signed_headers=("From", "Subject", "X-Campaign"),
                         oversigned_headers=("From", "Reply-To"))
    result = DkimSigner(config).sign(MESSAGE)
    signed = [h.strip() for h in tags(result.content)[b"h"].split(b":")]
    assert sorted(signed) == [b"from", b"from", b"reply-to", b"subject"]
    assert verifies(result.content, keys)
    # A Reply-To added on the way breaks it; an added To: (not signed here) does not.
    assert not verifies(result.content.replace(b"\r\n\r\n", b"\r\nReply-To: x@y.test\r\n\r\n",
                                               1), keys)
    assert verifies(result.content.replace(b"Subject:", b"To: x@y.test\r\nSubject:"), keys)


@pytest.mark.parametrize("from_value", [
    b"app@EXAMPLE.com",
    b'"Booking, Ltd" <app@example.com>',
    b"=?utf-8?q?B=C3=BCro?= <app@example.com>",
    b"Booking\r\n <app@example.com>",  # folded
    b"app@example.com (comment)",
])
def test_from_domain_is_found_in_any_address_form(keys: Keys, from_value: bytes) -> None:
    result = DkimSigner(dkim_config(keys)).sign(with_from(from_value))
    assert (result.outcome, result.domain) == (SignOutcome.SIGNED, "example.com")
    assert verifies(result.content, keys)


def test_domain_map_exact_then_longest_suffix(keys: Keys) -> None:
    config = dkim_config(keys, domain_map=(
        (".example.com", "example.com"), (".eu.example.com", "example.org"),
        ("brand.test", "example.org")))
    signer = DkimSigner(config)
    assert signer.signing_domain("example.com") == "example.com"
    assert signer.signing_domain("news.example.com") == "example.com"
    assert signer.signing_domain("shop.eu.example.com") == "example.org"
    assert signer.signing_domain("brand.test") == "example.org"
    assert signer.signing_domain("sub.brand.test") is None
    assert signer.signing_domain("notexample.com") is None
    result = signer.sign(with_from(b"app@News.Example.com"))
    assert (result.domain, result.selectors) == ("example.com", ("rsa1",))
    assert verifies(result.content, keys)


def test_idn_from_domain_signs_with_its_a_label_key() -> None:
    key = parse_private_key(generate_private_key("ed25519"))
    idn = "xn--bcher-kva.example"
    config = DkimConfig(keys=(DkimKey(idn, "s1", "ed25519", Path("/x"), True, key),))
    result = DkimSigner(config).sign(with_from("app@Bücher.example".encode()))
    assert result.domain == idn
    assert verifies(result.content, {(idn, "s1"): key})


# -- fallbacks and failures -------------------------------------------------------------------


@pytest.mark.parametrize(("fallback", "outcome"), [
    ("sign_with_default", SignOutcome.SIGNED),
    ("unsigned", SignOutcome.UNSIGNED),
    ("refuse", SignOutcome.REFUSED),
])
def test_fallback_for_a_domain_without_a_key(keys: Keys, fallback: str,
                                             outcome: SignOutcome) -> None:
    config = dkim_config(keys, fallback=fallback, default_domain="default.example")
    signer = DkimSigner(config)
    message = with_from(b"app@other.test")
    result = signer.sign(message)
    assert result.outcome is outcome
    assert result.reason == "no DKIM key for other.test"
    if outcome is SignOutcome.SIGNED:
        assert (result.domain, result.selectors) == ("default.example", ("def1",))
        assert verifies(result.content, keys)
    else:
        assert result.content == message
    assert (signer.counters.signed, signer.counters.unsigned, signer.counters.refused,
            signer.counters.failed) == (outcome is SignOutcome.SIGNED,
                                        outcome is SignOutcome.UNSIGNED,
                                        outcome is SignOutcome.REFUSED, 0)


def test_refusal_is_550_5_7_1_with_the_reason(keys: Keys) -> None:
    result = DkimSigner(dkim_config(keys, fallback="refuse")).sign(with_from(b"a@other.test"))
    reply = refusal_reply(result)
    assert (reply.code, reply.enhanced) == (550, "5.7.1")
    assert "no DKIM key for other.test" in reply.text


@pytest.mark.parametrize(("message", "reason"), [
    (MESSAGE.replace(b"From: Booking <app@example.com>\r\n", b""), "no From: header"),
    (MESSAGE.replace(b"To:", b"From: second@example.com\r\nTo:"), "2 From: headers"),
    (with_from(b"undisclosed-recipients:;"), "no address in From:"),
    (with_from(b"app@[192.0.2.1]"), "the From: address has no usable domain"),
])
def test_messages_without_one_from_domain_take_the_fallback(keys: Keys, message: bytes,
                                                            reason: str) -> None:
    config = dkim_config(keys, fallback="sign_with_default", default_domain="default.example")
    result = DkimSigner(config).sign(message)
    assert (result.outcome, result.domain, result.reason) == (
        SignOutcome.SIGNED, "default.example", reason)
    assert verifies(result.content, keys)


def test_a_failing_key_follows_the_fallback_and_is_counted(keys: Keys) -> None:
    broken = PrivateKey("rsa", b"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA "
                        b"PRIVATE KEY-----\n", keys[("example.com", "rsa1")].public_key, 2048)
    base = dkim_config(keys, fallback="sign_with_default", default_domain="default.example")
    config = replace(base, keys=tuple(
        replace(k, private_key=broken) if k.selector == "rsa1" else k for k in base.keys))
    signer = DkimSigner(config)
    result = signer.sign(MESSAGE)
    assert (result.outcome, result.domain) == (SignOutcome.SIGNED, "default.example")
    assert result.reason == "signing for example.com failed"
    assert verifies(result.content, keys)
    assert (signer.counters.signed, signer.counters.failed) == (1, 1)

    # Without a default to sign with, a key that should have signed and could not is a
    # 451 (the app keeps the message), never "unsigned" nor a 5xx (issue 16).
    for fallback in ("unsigned", "refuse"):
        result = DkimSigner(replace(config, fallback=fallback)).sign(MESSAGE)
        assert (result.outcome, result.content, result.domain) == (
            SignOutcome.TEMPFAIL, MESSAGE, "example.com")
        reply = refusal_reply(result)
        assert (reply.code, reply.enhanced) == (451, "4.7.0")
        assert "signing for example.com failed" in reply.text


def test_an_unparsable_header_is_never_relayed_unsigned_by_surprise(keys: Keys) -> None:
    # The cleanup stage repairs this before signing; the signer must still not let it
    # through unsigned when a key should sign it: the From: domain's, or the default.
    message = b"From: app@example.com\r\nnot a header line\r\n\r\nbody\r\n"
    counters = SigningCounters()
    for fallback in ("unsigned", "refuse", "sign_with_default"):
        config = dkim_config(keys, fallback=fallback, default_domain="default.example")
        result = DkimSigner(config, counters).sign(message)
        assert (result.outcome, result.content) == (SignOutcome.TEMPFAIL, message)
        assert result.reason == "its header cannot be parsed"
    assert (counters.tempfail, counters.failed) == (3, 3)
    # A From: domain without a key, no default: what the fallback says, counted.
    other = message.replace(b"app@example.com", b"app@other.test")
    config = dkim_config(keys, fallback="unsigned")
    assert DkimSigner(config, counters).sign(other).outcome is SignOutcome.UNSIGNED
    refused = DkimSigner(replace(config, fallback="refuse"), counters).sign(other)
    assert refused.outcome is SignOutcome.REFUSED
    assert (counters.unsigned, counters.refused, counters.failed) == (1, 1, 5)
    # ... unless the default domain should sign it.
    config = dkim_config(keys, fallback="sign_with_default", default_domain="default.example")
    assert DkimSigner(config, counters).sign(other).outcome is SignOutcome.TEMPFAIL


def test_counters_are_shared_across_signers_and_shown_in_repr(keys: Keys) -> None:
    counters = SigningCounters()
    DkimSigner(dkim_config(keys), counters).sign(MESSAGE)
    signer = DkimSigner(dkim_config(keys), counters)  # as after a reload
    signer.sign(with_from(b"x@other.test"))
    assert (counters.signed, counters.unsigned) == (1, 1)
    assert repr(signer) == ("<DkimSigner domains=3 fallback=unsigned signed=1 unsigned=1 "
                            "refused=0 failed=0>")


def test_key_material_never_shows_in_reprs(keys: Keys) -> None:
    config = dkim_config(keys)
    key = keys[("example.com", "rsa1")]
    secret = key.material.decode().splitlines()[1]
    for text in (repr(config), str(config), repr(key), repr(DkimSigner(config))):
        assert secret not in text
        assert "PRIVATE KEY" not in text


# -- algorithms, dual signing, canonicalization ---------------------------------------------


def test_ed25519_signature_rfc8463(keys: Keys) -> None:
    result = DkimSigner(dkim_config(keys, active=("ed1",))).sign(MESSAGE)
    sig = tags(result.content)
    assert (sig[b"a"], sig[b"s"]) == (b"ed25519-sha256", b"ed1")
    assert len(base64.b64decode(b"".join(sig[b"b"].split()))) == 64
    assert verifies(result.content, keys)


def test_dual_signing_puts_rsa_first_and_both_verify(keys: Keys) -> None:
    config = dkim_config(keys, active=("ed1", "rsa1"), dual_sign=True)
    result = DkimSigner(config).sign(MESSAGE)
    assert result.selectors == ("rsa1", "ed1")
    assert [tags(result.content, i)[b"a"] for i in (0, 1)] == [b"rsa-sha256",
                                                               b"ed25519-sha256"]
    assert verifies(result.content, keys, 0) and verifies(result.content, keys, 1)
    assert result.content.endswith(MESSAGE)


@pytest.mark.parametrize("canonicalization", ["relaxed/relaxed", "relaxed/simple",
                                              "simple/relaxed", "simple/simple"])
def test_canonicalization_is_configurable(keys: Keys, canonicalization: str) -> None:
    result = DkimSigner(dkim_config(keys, canonicalization=canonicalization)).sign(MESSAGE)
    assert tags(result.content)[b"c"] == canonicalization.encode()
    assert verifies(result.content, keys)


# -- the message forms of the issue (the signer only ever sees CRLF) ---------------------------


CASES = {
    "8-bit UTF-8 body": MESSAGE.replace(b"See you soon.", "Bis bald, schöne Grüße 👋".encode()),
    "long folded header": MESSAGE.replace(
        b"Subject: Your booking", b"Subject: " + b" ".join([b"word"] * 150).replace(
            b"word word word word word word word word word word word word word word ",
            b"word word word word word word word word word word word word word word\r\n ")),
    "long unfolded header": MESSAGE.replace(
        b"\r\n\r\n",
        b"\r\nList-Unsubscribe: <https://example.com/u/" + b"x" * 940 + b">\r\n\r\n", 1),
    "trailing whitespace": MESSAGE.replace(b"See you soon.", b"See you soon.  \t\r\nnext \t"),
    "header trailing whitespace": MESSAGE.replace(b"Subject: Your booking",
                                                  b"Subject:   Your   booking  \t"),
    "empty body": MESSAGE.split(b"\r\n\r\n")[0] + b"\r\n\r\n",
    "no body at all": MESSAGE.split(b"\r\n\r\n")[0] + b"\r\n",
    "trailing empty lines": MESSAGE + b"\r\n\r\n\r\n",
    "dot lines": MESSAGE.replace(b"See you soon.", b".\r\n..\r\n.leading dot"),
    "large attachment": MESSAGE.replace(
        b"\r\n\r\nSee you soon.\r\n",
        b"\r\nMIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        + b"\r\n".join([base64.b64encode(bytes(range(256)) * 3)[:76]] * 40_000) + b"\r\n"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_message_forms_verify(keys: Keys, name: str) -> None:
    config = dkim_config(keys, active=("rsa1", "ed1", "org1", "def1"), dual_sign=True)
    result = DkimSigner(config).sign(CASES[name])
    assert result.outcome is SignOutcome.SIGNED
    assert verifies(result.content, keys, 0) and verifies(result.content, keys, 1)


def test_missing_final_line_ending_still_verifies_once_transport_adds_it(keys: Keys) -> None:
    message = MESSAGE.removesuffix(b"\r\n")
    result = DkimSigner(dkim_config(keys)).sign(message)
    # SMTP can only carry it with a CRLF before the final dot; both canonicalizations
    # treat a missing final CRLF as present (RFC 6376 3.4.3, 3.4.4).
    assert verifies(result.content, keys)
    assert verifies(result.content + b"\r\n", keys)


def test_refuses_to_build_from_a_config_whose_keys_were_not_read(keys: Keys) -> None:
    config = dkim_config(keys)
    unread = replace(config, keys=tuple(replace(k, private_key=None) for k in config.keys))
    with pytest.raises(ValueError, match="was not read"):
        DkimSigner(unread)


def test_openssl_rsa_step_gives_dkimpys_exact_signature() -> None:
    """PKCS#1 v1.5 is deterministic: OpenSSL must produce dkimpy's own bytes."""
    import hashlib

    import dkim
    import dkim.crypto
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa as crsa

    from gateway.signing.signer import _openssl_rsa_sign, use_openssl_rsa

    pem = crsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption())
    parsed = dkim.crypto.parse_pem_private_key(pem)
    digest = hashlib.sha256(b"a header hash")
    assert _openssl_rsa_sign(digest, parsed) == dkim.crypto.RSASSA_PKCS1_v1_5_sign(digest, parsed)
    use_openssl_rsa()
    assert dkim.RSASSA_PKCS1_v1_5_sign is _openssl_rsa_sign


def test_a_from_field_dkimpy_skips_is_not_taken_for_no_from(keys: Keys) -> None:
    # dkimpy reads "From : ..." as an mbox "From " line and drops it: the message would
    # look From-less and go out unsigned. Cleanup repairs the syntax, except in a
    # message the app signed with simple canonicalization; there the key that should
    # sign cannot, and that is a 451, not an unsigned message.
    message = MESSAGE.replace(b"From:", b"From :")
    result = DkimSigner(dkim_config(keys)).sign(message)
    assert (result.outcome, result.reason) == (SignOutcome.TEMPFAIL,
                                               "its From: field cannot be parsed")
    other = message.replace(b"app@example.com", b"app@other.test")
    assert DkimSigner(dkim_config(keys)).sign(other).outcome is SignOutcome.UNSIGNED
