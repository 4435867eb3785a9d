"""The fast DKIM path (gateway/signing/signature.py) writes byte for byte the field
dkimpy's own DKIM.sign() writes: RSA-2048 and Ed25519, every canonicalization, over
messages chosen for what canonicalization changes (folding, whitespace runs, trailing
spaces and empty lines, repeated and oversigned fields, an empty body, 8-bit values).

Signatures are deterministic (RSASSA-PKCS1-v1_5, Ed25519), so equality is exact; t= is
read from dkimpy's field and handed to ours. dkimpy then verifies our signatures."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable

import dkim
import pytest

from gateway.core.headers import HeaderSection
from gateway.signing.keys import (
    PrivateKey,
    dns_record_value,
    generate_private_key,
    parse_private_key,
)
from gateway.signing.signature import body_hash, fast_path_applies, load_key, sign

ALGORITHMS = {"rsa": b"rsa-sha256", "ed25519": b"ed25519-sha256"}
CANONICALIZATIONS = [(b"relaxed", b"relaxed"), (b"relaxed", b"simple"),
                     (b"simple", b"simple"), (b"simple", b"relaxed")]

HEAD = (b"Received: from app.test ([127.0.0.1])\r\n\tby gateway.test with ESMTP id 01ABC\r\n"
        b"From: Booking <app@example.com>\r\nTo: guest@example.net\r\n"
        b"Subject: Your booking\r\nDate: Tue, 14 Nov 2023 22:13:20 +0000\r\n"
        b"Message-ID: <b-42@example.com>\r\n")
MESSAGES = {
    "plain": HEAD + b"\r\nSee you soon.\r\n",
    "folded and spaced header": (
        b"From:   \"Booking  Desk\"\r\n  <app@example.com>  \r\n"
        b"Subject:\tYour\t\tbooking   for\r\n\tMonday \r\n"
        b"TO: guest@example.net\r\nDate: Tue, 14 Nov 2023 22:13:20 +0000\r\n\r\nhi\r\n"),
    "repeated fields": (HEAD + b"To: second@example.net\r\nSubject: again\r\n"
                        b"Reply-To: a@example.com\r\nReply-To: b@example.com\r\n\r\nbody\r\n"),
    "body whitespace": (HEAD + b"\r\nline  with   runs \r\n\ttabbed\t line\t\r\n \r\n"
                        b"trailing spaces   \r\n\r\n\r\n\r\n"),
    "empty body": HEAD + b"\r\n",
    "only empty lines": HEAD + b"\r\n\r\n\r\n\r\n",
    "no final CRLF": HEAD + b"\r\nlast line without end",
    "trailing space without CRLF": HEAD + b"\r\nlast line \t",
    "8-bit": (HEAD.replace(b"Your booking", "Ihre Buchung für Zürich".encode())
              + b"\r\nGr\xc3\xbc\xc3\x9fe aus Z\xc3\xbcrich\r\n"),
    "long body": HEAD + b"\r\n" + b"".join(
        f"{i:05d} {'x' * 70}  y\t\r\n".encode() for i in range(700)),
}
INCLUDE = [b"from", b"to", b"subject", b"date", b"message-id", b"reply-to", b"reply-to",
           b"to", b"from", b"cc"]  # repeated, missing (cc) and oversigned names


@pytest.fixture(scope="module")
def keys() -> dict[str, PrivateKey]:
    return {algo: parse_private_key(generate_private_key(algo)) for algo in ALGORITHMS}


def dnsfunc(key: PrivateKey, selector: bytes) -> Callable[..., bytes | None]:
    def get_txt(name: bytes, timeout: float = 5) -> bytes | None:
        wanted = selector + b"._domainkey.example.com"
        return dns_record_value(key).encode() if name.rstrip(b".") == wanted else None
    return get_txt


@pytest.mark.parametrize("canonicalize", CANONICALIZATIONS, ids=lambda c: b"/".join(c).decode())
@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("name", MESSAGES)
def test_signature_is_byte_identical_to_dkimpys(keys: dict[str, PrivateKey], name: str,
                                                algorithm: str,
                                                canonicalize: tuple[bytes, bytes]) -> None:
    message = MESSAGES[name]
    key = keys[algorithm]
    selector = b"sel-" + algorithm.encode()
    theirs = dkim.DKIM(message, linesep=b"\r\n").sign(
        selector, b"example.com", key.material, signature_algorithm=ALGORITHMS[algorithm],
        canonicalize=canonicalize, include_headers=INCLUDE)
    found = re.search(rb"\bt=(\d+);", theirs)
    assert found is not None
    header = HeaderSection.parse(message)
    assert fast_path_applies(message, header)
    ours = sign(message, header, load_key(selector, b"example.com", ALGORITHMS[algorithm],
                                          key.material),
                INCLUDE, canonicalize[0] == b"relaxed", canonicalize[1] == b"relaxed",
                timestamp=int(found.group(1)))
    assert ours == theirs
    assert dkim.DKIM(ours + message).verify(dnsfunc=dnsfunc(key, selector))


@pytest.mark.parametrize("message", [
    b"From: a@example.com\r\nSubject: no body separator\r\n",
    b"From: a@example.com\r\nnot a header line\r\n\r\nbody\r\n",
    b"From a@example.com Tue Nov 14 22:13:20 2023\r\nFrom: a@example.com\r\n\r\nbody\r\n",
    b" continuation first\r\nFrom: a@example.com\r\n\r\nbody\r\n",
    b"From: a@example.com\r\n\r\nbare\nline feed\r\n",
    b"\r\nbody only\r\n",
])
def test_what_the_fast_path_does_not_take(message: bytes) -> None:
    """These go to dkimpy (signer.py): its own parser decides what they mean."""
    assert not fast_path_applies(message, HeaderSection.parse(message))


def test_body_hash_skips_the_regexes_only_when_they_change_nothing() -> None:
    header = HeaderSection.parse(MESSAGES["body whitespace"])
    start = header.end + 2
    policy = dkim.CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
    for body in (b"a b\r\n", b"a  b\r\n", b"a\tb\r\n", b"a \r\n", b"a\r\n\r\n", b""):
        content = MESSAGES["body whitespace"][:start] + body
        expected = base64.b64encode(hashlib.sha256(policy.canonicalize_body(body)).digest())
        assert body_hash(content, start, relaxed=True) == expected, body
