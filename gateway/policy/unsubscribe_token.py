"""Signed unsubscribe tokens for List-Unsubscribe URLs (RFC 2369, RFC 8058 one-click).

Format (URL-safe, no padding):  v1.<base64url(category "\\n" address)>.<base64url(mac)>
where mac = HMAC-SHA256(key, "v1\\n" + category + "\\n" + address), first 16 bytes.

- Forgery: changing the address or category changes the MAC; without the key a
  valid MAC cannot be computed (128-bit tag).
- Enumeration: the token is not derived from a counter or a guessable id; a
  token for one address says nothing about another's.
- Verification compares MACs in constant time (hmac.compare_digest) and
  returns None for anything malformed, so the HTTP endpoint (the admin issue)
  can answer one way for every bad token.

Tokens do not expire: an unsubscribe link in a mail from last year must still
work (RFC 8058 asks for it to keep working for a reasonable time).

Security: verify() reads untrusted input (a token from a URL); it decodes at
most 2 KB and never raises on malformed data.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from gateway.core import secret_files

__all__ = ["MIN_KEY_BYTES", "TokenSigner", "UnsubscribeRequest", "read_key"]

MIN_KEY_BYTES = 32
_VERSION = "v1"
_MAC_BYTES = 16
_MAX_TOKEN = 2048


@dataclass(frozen=True)
class UnsubscribeRequest:
    """What a valid token says: this address wants no more mail of this category."""

    address: str
    category: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def read_key(path: Path) -> bytes:
    """The HMAC key: the file's bytes, whitespace around them dropped (at least 32; see
    gateway.core.secret_files). Raises ValueError with the reason."""
    return secret_files.read_key(path, min_bytes=MIN_KEY_BYTES, hex_ok=False, strip=True)


@dataclass(frozen=True)
class TokenSigner:
    key: bytes = field(repr=False)
    base_url: str = ""

    def _mac(self, address: str, category: str) -> bytes:
        msg = f"{_VERSION}\n{category}\n{address}".encode()
        return hmac.new(self.key, msg, hashlib.sha256).digest()[:_MAC_BYTES]

    def token(self, address: str, category: str) -> str:
        payload = _b64(f"{category}\n{address}".encode())
        return f"{_VERSION}.{payload}.{_b64(self._mac(address, category))}"

    def url(self, address: str, category: str) -> str:
        separator = "&" if "?" in self.base_url else "?"
        return f"{self.base_url}{separator}token={quote(self.token(address, category))}"

    def verify(self, token: str) -> UnsubscribeRequest | None:
        """The request a token carries, or None if it is malformed or forged."""
        if len(token) > _MAX_TOKEN:
            return None
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != _VERSION:
            return None
        try:
            category, sep, address = _unb64(parts[1]).decode("utf-8").partition("\n")
            mac = _unb64(parts[2])
        except (binascii.Error, ValueError):
            return None
        if not sep or not hmac.compare_digest(mac, self._mac(address, category)):
            return None
        return UnsubscribeRequest(address, category)

    def __repr__(self) -> str:
        return f"<TokenSigner base_url={self.base_url!r}>"
