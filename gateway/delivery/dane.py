"""DANE for SMTP (RFC 7672, RFC 6698, RFC 7671): which TLSA records count, and whether
a server's certificate chain matches them.

Postfix counterpart: `tls/tls_dane.c`; KumoMTA's DANE support in its SMTP dispatcher.

- Only DANE-TA(2) and DANE-EE(3) are usable for SMTP; PKIX-TA(0) and PKIX-EE(1) are
  not (RFC 7672 3.1.3). Selectors 0 (certificate) and 1 (SubjectPublicKeyInfo),
  matching types 0 (exact), 1 (SHA-256) and 2 (SHA-512).
- DANE-EE: the leaf matches, nothing else is checked: not the name, not the dates
  (RFC 7672 3.1.1).
- DANE-TA: a certificate the server sent above the leaf matches; the chain from the
  leaf up to it must verify signature by signature, the leaf must be in its validity
  period, and it must carry the MX host name (RFC 7672 3.1.2, 3.2.2). The TA must be
  in the chain the server sends (RFC 7671 5.2.2 asks servers to include it); a bare
  "2 1 x" key the server leaves out does not match.
- A secure TLSA RRset without one usable record still makes TLS mandatory, unauthenticated
  (RFC 7672 2.2).

The chain comes from smtp_client (tls_checks.peer_chain): on Python 3.11 through
the ssl module's private `get_unverified_chain`, since ssl offers no verify callback.

Security: parses TLSA records (from DNS) and certificates (from the remote server);
malformed ones are unusable, never an error that escapes.
"""

from __future__ import annotations

import datetime
import hashlib
import itertools
from dataclasses import dataclass
from functools import lru_cache

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = ["DANE_EE", "DANE_TA", "Tlsa", "check_chain", "parse_tlsa", "usable"]

DANE_TA = 2
DANE_EE = 3
_DIGESTS = {1: hashlib.sha256, 2: hashlib.sha512}


@dataclass(frozen=True)
class Tlsa:
    usage: int
    selector: int
    matching: int
    data: bytes

    def __str__(self) -> str:
        return f"{self.usage} {self.selector} {self.matching} {self.data.hex()}"

    @property
    def usable(self) -> bool:
        return (self.usage in (DANE_TA, DANE_EE) and self.selector in (0, 1)
                and self.matching in (0, 1, 2))

    def matches(self, cert: x509.Certificate, der: bytes) -> bool:
        if self.selector == 0:
            subject = der
        else:
            subject = cert.public_key().public_bytes(Encoding.DER,
                                                     PublicFormat.SubjectPublicKeyInfo)
        if self.matching == 0:
            return subject == self.data
        return _DIGESTS[self.matching](subject).digest() == self.data


def parse_tlsa(text: str) -> Tlsa | None:
    """ "3 1 1 ab12 cd34" (dnspython's text, hex maybe split) → Tlsa; None if malformed."""
    parts = text.split()
    try:
        usage, selector, matching = (int(p) for p in parts[:3])
        return Tlsa(usage, selector, matching, bytes.fromhex("".join(parts[3:])))
    except ValueError:
        return None


@lru_cache(maxsize=4096)
def usable(records: tuple[str, ...]) -> tuple[Tlsa, ...]:
    """The usable records of an RRset; memoized, since a cached RRset is asked on every
    message to its host."""
    return tuple(t for t in (parse_tlsa(r) for r in records) if t is not None and t.usable)


def check_chain(records: tuple[Tlsa, ...], chain: list[bytes], host: str,
                now: datetime.datetime | None = None) -> tuple[str, str] | None:
    """None when the chain (DER, leaf first) matches a record; else (RFC 8460 result,
    reason)."""
    certs = _load(chain)
    if not certs:
        return "validation-failure", "DANE: the server sent no certificate"
    leaf, leaf_der = certs[0]
    if any(t.usage == DANE_EE and t.matches(leaf, leaf_der) for t in records):
        return None
    anchors = [t for t in records if t.usage == DANE_TA]
    for depth, (cert, der) in enumerate(certs[1:], start=1):
        if any(t.matches(cert, der) for t in anchors):
            return _below_anchor(certs[: depth + 1], host, now)
    shown = ", ".join(str(t)[:40] for t in records)
    return "validation-failure", f"DANE: no TLSA record matches the certificate chain ({shown})"


def _below_anchor(certs: list[tuple[x509.Certificate, bytes]], host: str,
                  now: datetime.datetime | None) -> tuple[str, str] | None:
    """The leaf chains up to the matched trust anchor, is current, and names the host."""
    for (child, _), (issuer, _) in itertools.pairwise(certs):
        try:
            child.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature):
            return "validation-failure", "DANE-TA: the chain does not lead to the trust anchor"
    leaf = certs[0][0]
    moment = now or datetime.datetime.now(datetime.UTC)
    if not leaf.not_valid_before_utc <= moment <= leaf.not_valid_after_utc:
        return "certificate-expired", "DANE-TA: the server certificate is outside its validity"
    if not _names_host(leaf, host):
        return "certificate-host-mismatch", f"DANE-TA: the certificate does not name {host}"
    return None


def _names_host(cert: x509.Certificate, host: str) -> bool:
    """RFC 6125 matching of DNS names (one leftmost wildcard label), as RFC 7672 3.2.3."""
    try:
        names = cert.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = [str(a.value) for a in cert.subject.get_attributes_for_oid(
            x509.oid.NameOID.COMMON_NAME)]
    wanted = host.rstrip(".").lower()
    for name in names:
        name = name.rstrip(".").lower()
        if name == wanted:
            return True
        if name.startswith("*."):
            label, _, rest = wanted.partition(".")
            if label and rest == name[2:]:
                return True
    return False


def _load(chain: list[bytes]) -> list[tuple[x509.Certificate, bytes]]:
    loaded = []
    for der in chain:
        try:
            loaded.append((x509.load_der_x509_certificate(der), der))
        except ValueError:
            break  # what follows a broken certificate cannot be chained
    return loaded
