"""Tracking tokens: what an open pixel or a wrapped link stands for, sealed so that it
carries nothing readable and cannot be forged or altered (no Postfix counterpart;
Postal's and Mailchimp's click tokens do the same job).

A token is base64url(tag ‖ ciphertext) of the fields (kind, queue id, recipient,
category, link): tag = HMAC-SHA256(mac key, version ‖ fields)[:16], and the fields
are encrypted with AES-128-CTR under the tag as counter block (SIV-style:
deterministic, so one link to one recipient always gets the same token). The
listener decrypts and recomputes the tag; any change to a token, or a token made
without the key, fails the comparison and gets 404 (gateway.tracking.listener).
So the recipient's address and the link never appear in clear in the message, and
a redirect only ever goes to a link that was in it.

Security: `open_token` reads untrusted input (the URL path); it bounds the length,
and compares tags in constant time before using any field.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import threading
from dataclasses import dataclass
from enum import StrEnum

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = ["MAX_TOKEN", "Hit", "HitKind", "TokenKeys", "open_token", "seal"]

VERSION = b"\x01"
TAG_BYTES = 16
MAX_TOKEN = 4096  # characters: a longer path is not ours (links are at most ~2,000)
_SEP = "\x00"
_MASK128 = (1 << 128) - 1


class HitKind(StrEnum):
    OPEN = "o"
    CLICK = "c"


@dataclass(frozen=True)
class Hit:
    """What a token says: which message and recipient, and for a click, the link."""

    kind: HitKind
    queue_id: str
    recipient: str
    category: str
    url: str = ""


class TokenKeys:
    """The MAC and encryption keys, derived from the configured secret."""

    def __init__(self, secret: bytes) -> None:
        self.mac = hmac.new(secret, b"smtp-gateway tracking mac", hashlib.sha256).digest()
        self.enc = hmac.new(secret, b"smtp-gateway tracking enc", hashlib.sha256).digest()[:16]
        self._local = threading.local()

    def keystream(self, counter: bytes, length: int) -> bytes:
        """AES-CTR's keystream from the counter block `counter`: the encryptions of
        counter, counter + 1, … (a 128-bit big-endian count, as CTR mode has it).

        Computed with one AES block cipher context per thread, made once: a CTR
        context per token (its IV differs each time) cost a third of a hit's token
        check. ECB is only the block cipher applied to distinct counter blocks here,
        which is what CTR is."""
        ecb = getattr(self._local, "ecb", None)
        if ecb is None:
            ecb = self._local.ecb = Cipher(algorithms.AES(self.enc), modes.ECB()).encryptor()
        first = int.from_bytes(counter, "big")
        blocks = b"".join(((first + i) & _MASK128).to_bytes(16, "big")
                          for i in range((length + 15) // 16))
        return bytes(ecb.update(blocks)[:length])

    def __repr__(self) -> str:
        return "<TokenKeys ***>"


def seal(keys: TokenKeys, hit: Hit) -> str:
    plain = _SEP.join((hit.kind.value, hit.queue_id, hit.recipient, hit.category,
                       hit.url)).encode("utf-8")
    tag = hmac.digest(keys.mac, VERSION + plain, "sha256")[:TAG_BYTES]
    sealed = tag + _ctr(keys, tag, plain)
    return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode("ascii")


def open_token(keys: TokenKeys, token: str) -> Hit | None:
    """The hit a token stands for; None for anything we did not seal with these keys."""
    if not 0 < len(token) <= MAX_TOKEN:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        return None
    if len(raw) <= TAG_BYTES:
        return None
    tag = raw[:TAG_BYTES]
    plain = _ctr(keys, tag, raw[TAG_BYTES:])
    expected = hmac.digest(keys.mac, VERSION + plain, "sha256")[:TAG_BYTES]
    if not hmac.compare_digest(tag, expected):
        return None
    fields = plain.decode("utf-8", "replace").split(_SEP)
    if len(fields) != 5 or fields[0] not in ("o", "c"):
        return None
    return Hit(HitKind(fields[0]), fields[1], fields[2], fields[3], fields[4])


def _ctr(keys: TokenKeys, counter: bytes, data: bytes) -> bytes:
    # CTR encrypts and decrypts alike; the tag (HMAC output) is the initial counter block.
    stream = keys.keystream(counter, len(data))
    return (int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")).to_bytes(
        len(data), "big")
