"""DKIM keys: private key files and the DNS record to publish (the key part of
KumoMTA's `kumo.dkim.rsa_sha256_signer { key = … }`; the `dkim` CLI verbs that make,
list and check keys are in gateway.signing.keytool).

Key files are PEM, as `openssl genpkey` writes them (PKCS#8; PKCS#1 RSA files
work too), or, for Ed25519, the base64 32-byte seed that dkimpy's `dknewkey`
writes. `keygen` makes an RSA 2048 (default) or Ed25519 (RFC 8463) key at the
path the configuration expects: `dkim.keys_dir/<domain>.<selector>.key`, or the
selector's `key_file`. The TXT record to publish goes to
`<selector>._domainkey.<domain>`; `check` looks it up and compares it with the
private key, catching the usual deployment mistakes: record missing, truncated
by a DNS web form (a 2048-bit key does not fit one 255-octet string), or still
the old key after a rotation.

Security: handles private keys. Only public keys and fingerprints are printed
or logged; `PrivateKey`'s repr hides the material. Files are written 0600 and
the configuration refuses key files that group or others may read.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import stat
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

__all__ = [
    "ALGORITHMS",
    "KeyFileError",
    "PrivateKey",
    "RecordStatus",
    "compare_record",
    "dns_record_value",
    "generate_private_key",
    "normalize_domain",
    "parse_private_key",
    "permission_problem",
    "read_private_key",
    "record_name",
    "valid_selector",
    "write_private_key",
    "zone_record",
]

ALGORITHMS = ("rsa", "ed25519")
MIN_RSA_BITS = 1024  # RFC 8301 3.2: verifiers must reject smaller keys
DEFAULT_RSA_BITS = 2048
_LABEL = r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}"
_SELECTOR = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")


class KeyFileError(ValueError):
    """A key file that cannot be used; the message says why, never what is in it."""


@dataclass(frozen=True)
class PrivateKey:
    """A signing key, in the form dkimpy takes, with its public half for DNS."""

    algorithm: str  # rsa | ed25519
    material: bytes = field(repr=False)  # RSA: PKCS#1 PEM; Ed25519: base64 seed (dkimpy's forms)
    public_key: str  # the p= value: base64 SubjectPublicKeyInfo (RSA) or raw key (Ed25519)
    bits: int

    @property
    def fingerprint(self) -> str:
        """A short name for the key pair, from the public key only (safe to show)."""
        return hashlib.sha256(base64.b64decode(self.public_key)).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"<PrivateKey {self.algorithm} {self.bits} bits sha256:{self.fingerprint}>"

    __str__ = __repr__


# -- names --------------------------------------------------------------------------------


def normalize_domain(text: str) -> str:
    """Lower-case A-label form of a domain ('Bücher.Example.' → 'xn--bcher-kva.example').

    DKIM's d= and the DNS names are ASCII, while a From: domain may be a U-label.
    Raises ValueError for something that is not a domain name.
    """
    name = text.strip().rstrip(".").lower()
    if not name or ".." in name or name.startswith("."):
        raise ValueError(f"'{text}' is not a domain name")
    try:
        ascii_name = name.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise ValueError(f"'{text}' is not a domain name") from exc
    if any(c in ascii_name for c in " @<>[]()\\,;:\"") or len(ascii_name) > 253:
        raise ValueError(f"'{text}' is not a domain name")
    return ascii_name


def valid_selector(selector: str) -> bool:
    """RFC 6376 3.1: one or more dot-separated DNS labels."""
    return bool(_SELECTOR.match(selector))


def record_name(selector: str, domain: str) -> str:
    return f"{selector}._domainkey.{domain}"


# -- reading and making keys ----------------------------------------------------------------


def permission_problem(path: Path) -> str | None:
    """Why a private key file is too open, or None; group and others get nothing."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return (f"'{path}' is open to other users (mode {stat.S_IMODE(mode):04o}): "
                "chmod 600 it")
    return None


def read_private_key(path: Path) -> PrivateKey:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"'{path}': no such file") from None
    except OSError as exc:
        raise KeyFileError(f"'{path}': cannot read: {exc.strerror}") from None
    try:
        return parse_private_key(data)
    except KeyFileError as exc:
        raise KeyFileError(f"'{path}': {exc}") from None


def parse_private_key(data: bytes) -> PrivateKey:
    """A PEM key (RSA or Ed25519), or a bare base64 Ed25519 seed."""
    if b"-----BEGIN" not in data:
        return _ed25519_seed(data)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise KeyFileError("the key is encrypted; DKIM keys must be unencrypted") from None
    except (ValueError, UnsupportedAlgorithm):
        raise KeyFileError("not a PEM private key") from None
    if isinstance(key, rsa.RSAPrivateKey):
        return _rsa(key)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return _ed25519(key)
    raise KeyFileError("not an RSA or Ed25519 key (DKIM signs with those two)")


def _rsa(key: rsa.RSAPrivateKey) -> PrivateKey:
    if key.key_size < MIN_RSA_BITS:
        raise KeyFileError(f"RSA key of {key.key_size} bits: DKIM needs at least "
                           f"{MIN_RSA_BITS} (RFC 8301), {DEFAULT_RSA_BITS} is usual")
    material = key.private_bytes(serialization.Encoding.PEM,
                                 serialization.PrivateFormat.TraditionalOpenSSL,
                                 serialization.NoEncryption())
    spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    return PrivateKey("rsa", material, base64.b64encode(spki).decode(), key.key_size)


def _ed25519(key: ed25519.Ed25519PrivateKey) -> PrivateKey:
    seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                             serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.Raw,
                                           serialization.PublicFormat.Raw)
    return PrivateKey("ed25519", base64.b64encode(seed), base64.b64encode(public).decode(), 256)


def _ed25519_seed(data: bytes) -> PrivateKey:
    try:
        seed = base64.b64decode(b"".join(data.split()), validate=True)
    except binascii.Error:
        seed = b""
    if len(seed) != 32:
        raise KeyFileError("neither a PEM private key nor a base64 Ed25519 seed")
    return _ed25519(ed25519.Ed25519PrivateKey.from_private_bytes(seed))


def generate_private_key(algorithm: str, bits: int = DEFAULT_RSA_BITS) -> bytes:
    """A new key as PKCS#8 PEM."""
    key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    if algorithm == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    elif algorithm == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
    else:
        raise ValueError(f"unknown algorithm {algorithm!r}")
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def write_private_key(path: Path, pem: bytes, *, overwrite: bool = False) -> None:
    """Write with mode 0600 from the first byte, then rename into place.

    The temporary file is created 0600 (never briefly world-readable, whatever
    the umask), fsynced, and renamed, so a reader sees the old key or the new
    one, never half a key.
    """
    if path.exists() and not overwrite:
        raise FileExistsError(f"'{path}' exists: it may be a key in use (--force replaces it)")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


# -- the DNS record -------------------------------------------------------------------------


def dns_record_value(key: PrivateKey) -> str:
    return f"v=DKIM1; k={key.algorithm}; p={key.public_key}"


def zone_record(selector: str, domain: str, value: str, ttl: int = 3600) -> str:
    """A zone-file line; the value is cut into strings of at most 255 octets (RFC 1035
    3.3.14), which a resolver joins back: an RSA 2048 record does not fit in one."""
    chunks = [value[i:i + 255] for i in range(0, len(value), 255)]
    strings = " ".join(f'"{c}"' for c in chunks)
    return f"{record_name(selector, domain)}. {ttl} IN TXT ( {strings} )"


class RecordStatus(StrEnum):
    OK = "ok"
    MISSING = "missing"  # no TXT record at selector._domainkey.domain
    MISMATCH = "mismatch"  # a different key: an old one, or another server's
    TRUNCATED = "truncated"  # the start of our key only
    REVOKED = "revoked"  # p= is empty (RFC 6376 3.6.1)
    WRONG_ALGORITHM = "wrong-algorithm"  # k= names another key type
    MALFORMED = "malformed"  # not a DKIM key record
    DNS_ERROR = "dns-error"  # SERVFAIL, timeout: the answer is unknown

    @property
    def ok(self) -> bool:
        return self is RecordStatus.OK


def _tags(text: str) -> dict[str, str] | None:
    """RFC 6376 3.2 tag=value list, whitespace removed from values; None if malformed."""
    tags: dict[str, str] = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or not name or name in tags:
            return None
        tags[name] = "".join(value.split())
    return tags


def compare_record(text: str, key: PrivateKey) -> tuple[RecordStatus, str]:
    """Does a published TXT value carry this key's public half?"""
    tags = _tags(text)
    if tags is None or tags.get("v", "DKIM1") != "DKIM1" or (
            "v" in tags and not text.lstrip().startswith("v")):
        return RecordStatus.MALFORMED, "not a DKIM key record (v=DKIM1; k=…; p=…)"
    if "p" not in tags:
        return RecordStatus.MALFORMED, "the record has no p= (public key) tag"
    algorithm = tags.get("k", "rsa")
    if algorithm != key.algorithm:
        return RecordStatus.WRONG_ALGORITHM, f"the record says k={algorithm}, the key is " \
                                             f"{key.algorithm}"
    published = tags["p"]
    if published == key.public_key:
        return RecordStatus.OK, "the record matches the private key"
    if not published:
        return RecordStatus.REVOKED, "the record is revoked (empty p=)"
    if key.public_key.startswith(published):
        return RecordStatus.TRUNCATED, (
            f"the record holds only the first {len(published)} of {len(key.public_key)} "
            "characters of the key: publish every string of the TXT record")
    return RecordStatus.MISMATCH, "the record is for another key (an old one?): publish " \
                                  "the record `dkim keygen` printed for this key"


# -- list and keygen ------------------------------------------------------------------------


