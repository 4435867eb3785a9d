"""DKIM-Signature fields computed on bytes (RFC 6376 3.4, 3.5, 3.7; RFC 8463 for
Ed25519), byte for byte what dkimpy's `DKIM.sign()` writes (OpenDKIM's
libopendkim does this for Postfix's milter).

Why not dkimpy's sign() for every message: per signature it splits the whole
message into lines and joins the body again, re-parses the header, and parses
the PEM private key's ASN.1 in pure Python (the profile in BENCHMARKS.md,
issue 15). Here the header block comes parsed (gateway.core.headers, shared
with policies and idempotency), the body is hashed in place with bytes
methods, at most two regex substitutions (relaxed, and only when the body has
tabs, double spaces or trailing spaces) and hashlib, and the key is loaded
into OpenSSL (`cryptography`) once. dkimpy keeps what it does well: its `fold`
lays out the field and its b= pattern blanks the signature for the header
hash, so the layout cannot drift from its own.

Only for what it knows: the final message with CRLF line ends, whose header
block is well-formed fields ended by an empty line (`fast_path_applies`);
signer.py hands anything else to dkimpy as before. Signatures are
deterministic (RSASSA-PKCS1-v1_5 and Ed25519), so the equality is tested:
tests/unit/signing/test_signature.py signs with both, for RSA and Ed25519,
relaxed and simple.

Security: reads untrusted content (the header fields named in h=, the body as
octets); never interprets it beyond canonicalization. Holds private keys:
SigningKey's repr shows no material.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from dataclasses import dataclass, field

import dkim
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from gateway.core.headers import HeaderSection

__all__ = ["SigningKey", "body_hash", "fast_path_applies", "load_key", "sign"]

_NAME = b"DKIM-Signature"
_WSP_RUN = re.compile(rb"[\t ]+")
_TRAILING_WSP = re.compile(rb"[\t ]+\r\n")
_CRLF = b"\r\n"
_RSA = b"rsa-sha256"
_ED25519 = b"ed25519-sha256"
_PREHASHED = Prehashed(hashes.SHA256())
_PKCS1 = padding.PKCS1v15()
SHOULD_NOT_SIGN = frozenset(dkim.DKIM.SHOULD_NOT)


@dataclass(frozen=True)
class SigningKey:
    selector: bytes
    domain: bytes
    algorithm: bytes  # dkimpy's a= value: rsa-sha256 or ed25519-sha256
    material: bytes = field(repr=False)  # as dkimpy takes it (PEM; base64 seed)
    # None: OpenSSL would not load it; each signature then fails (and is counted), as
    # dkimpy's would, rather than the whole configuration.
    private: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey | None = field(repr=False,
                                                                          compare=False)


def load_key(selector: bytes, domain: bytes, algorithm: bytes, material: bytes) -> SigningKey:
    """The key in OpenSSL, parsed once (dkimpy parses it for every signature)."""
    private: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey | None = None
    try:
        if algorithm == _ED25519:
            private = ed25519.Ed25519PrivateKey.from_private_bytes(base64.b64decode(material))
        else:
            loaded = serialization.load_pem_private_key(material, password=None)
            private = loaded if isinstance(loaded, rsa.RSAPrivateKey) else None
    except ValueError:
        private = None
    return SigningKey(selector, domain, algorithm, material, private)


def fast_path_applies(content: bytes, header: HeaderSection, *, crlf: bool = False) -> bool:
    """CRLF lines only (dkimpy turns a bare LF into CRLF) and a header block of fields
    ended by the empty line (dkimpy refuses other lines, or skips mbox `From `).
    `crlf`: the caller has made every line end in CRLF (intake has), so the scan for a
    bare LF is skipped."""
    return header.separated(content) and (
        crlf or content.count(b"\n") == content.count(_CRLF))


def body_hash(content: bytes, start: int, relaxed: bool) -> bytes:
    """base64 SHA-256 of the canonical body (RFC 6376 3.4.3, 3.4.4): content[start:],
    hashed in place unless relaxed canonicalization has whitespace to rewrite."""
    body, low = content, start
    if relaxed and (content.find(b"\t", start) >= 0 or content.find(b"  ", start) >= 0
                    or content.find(b" \r\n", start) >= 0):
        body, low = _WSP_RUN.sub(b" ", _TRAILING_WSP.sub(_CRLF, content[start:])), 0
    end = len(body)
    while end - low >= 2 and body.endswith(_CRLF, low, end):  # empty lines at the end
        end -= 2
    digest = hashlib.sha256()
    view = memoryview(body)
    if end == len(body):  # no CRLF at the end: the canonical body gets one
        digest.update(view[low:])
        if end > low or not relaxed:
            digest.update(_CRLF)
    elif not (relaxed and end == low):  # relaxed: a body of empty lines is empty
        digest.update(view[low:end + 2])
    return base64.b64encode(digest.digest())


def sign(content: bytes, header: HeaderSection, key: SigningKey, include: list[bytes],
         relaxed_header: bool, relaxed_body: bool, timestamp: int | None = None) -> bytes:
    """The DKIM-Signature field (name to final CRLF) for `content` with `key`."""
    if b"from" not in include:
        raise ValueError("The From header field MUST be signed")
    forbidden = SHOULD_NOT_SIGN.intersection(include)
    if forbidden:
        raise ValueError(f"The {min(forbidden)!r} header field SHOULD NOT be signed")
    canon = (b"relaxed" if relaxed_header else b"simple") + b"/" + (
        b"relaxed" if relaxed_body else b"simple")
    when = int(time.time()) if timestamp is None else timestamp
    fields = [
        (b"v", b"1"), (b"a", key.algorithm), (b"c", canon), (b"d", key.domain),
        (b"i", b"@" + key.domain), (b"q", b"dns/txt"), (b"s", key.selector),
        (b"t", str(when).encode("ascii")), (b"h", b" : ".join(include)),
        (b"bh", body_hash(content, header.end + 2, relaxed_body)),
        # As dkimpy: a placeholder b= folds onto its own line, so that the real value
        # does not move the tags before it.
        (b"b", b"0" * 60),
    ]
    folded: bytes = dkim.fold(b"; ".join(b"=".join(f) for f in fields), namelen=len(_NAME))
    unsigned: bytes = dkim.RE_BTAG.sub(b"\\1", folded)
    digest = hashlib.sha256()
    for name, value in _selected(content, header, include, relaxed_header):
        digest.update(name)
        digest.update(b":")
        digest.update(value)
    name, value = _canonical(_NAME, b" " + unsigned, relaxed_header)
    digest.update(name)
    digest.update(b":")
    digest.update(value.rstrip())  # hashed without its CRLF (RFC 6376 3.7)
    private = key.private
    if private is None:
        raise ValueError("the private key could not be loaded")
    if isinstance(private, rsa.RSAPrivateKey):
        signature = private.sign(digest.digest(), _PKCS1, _PREHASHED)
    else:
        signature = private.sign(digest.digest())
    fields[-1] = (b"b", base64.b64encode(signature))
    laid_out: bytes = dkim.fold(b"; ".join(b"=".join(f) for f in fields) + _CRLF,
                                namelen=len(_NAME))
    return _NAME + b": " + laid_out


def _selected(content: bytes, header: HeaderSection, include: list[bytes], relaxed: bool
              ) -> list[tuple[bytes, bytes]]:
    """The fields h= names, each occurrence taken from the bottom up (RFC 6376 5.4.2),
    canonicalized; a name with no field left contributes nothing."""
    names = [n.encode("ascii") for n, _, _, _ in header.fields]
    out = []
    last: dict[bytes, int] = {}
    for wanted in include:
        i = last.get(wanted, len(names))
        while i > 0:
            i -= 1
            if names[i] == wanted:
                _, _, start, end = header.fields[i]
                # The field as sent: its name, the colon, and the value to its CRLF.
                out.append(_canonical(content[start:start + len(wanted)],
                                      content[start + len(wanted) + 1:end], relaxed))
                break
        last[wanted] = i
    return out


def _canonical(name: bytes, value: bytes, relaxed: bool) -> tuple[bytes, bytes]:
    """RFC 6376 3.4.1 / 3.4.2 (value: after the colon, with its final CRLF)."""
    if not relaxed:
        return name, value
    unfolded = value.replace(_CRLF, b"").replace(b"\n", b"")
    return name.lower().rstrip(), _WSP_RUN.sub(b" ", unfolded).strip() + _CRLF
