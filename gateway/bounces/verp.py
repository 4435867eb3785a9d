"""VERP return paths: `b+<token>@<bounce domain>`, signed so bounces cannot be forged.

Mailman counterpart: `StandardVERP` (which is not signed); KumoMTA leaves this
to policy. The token names one recipient of one queued message:

    <queue id, lower case, 18 chars> - <recipient index, base 32> - <MAC, 16 chars>

e.g. `b+01hf7yat00ghxcjx9q-2-cxxt4bcoczjkl2kj@bounces.example.com` (39
characters of local part; RFC 5321 allows 64). The MAC is HMAC-SHA256 over
"<queue id>:<index>" with the configured key, truncated to 80 bits and written
in lower-case RFC 4648 base 32 without padding. Everything is lower case and
from [a-z0-9-], because some receivers fold the case of local parts and
because `-` and `+` survive every MTA we know of unquoted.

Security: decodes addresses from untrusted mail. A token is accepted only
when its MAC verifies (compared in constant time); anything else is reported
as forged, and the caller must ignore the bounce (and count it).
"""

from __future__ import annotations

import base64
import hmac
import re
from dataclasses import dataclass

from gateway.model import Secret
from gateway.spool.queue_id import is_queue_id

__all__ = ["ReturnPaths", "VerpCodec", "VerpError", "VerpRef"]

_MAC_BYTES = 10  # 80 bits: forging needs ~2^80 tries, each one a mail we would see
_B32 = "0123456789abcdefghijklmnopqrstuv"  # base-32 digits for the index
_TOKEN = re.compile(r"^([0-9a-hjkmnp-tv-z]{18})-([0-9a-v]{1,7})-([a-z2-7]{16})$")


class VerpError(ValueError):
    """The address is not ours, malformed, or its MAC does not verify (forged)."""


@dataclass(frozen=True)
class VerpRef:
    """What a verified token names: a queued message and the index of a recipient."""

    queue_id: str
    recipient_index: int


class VerpCodec:
    """Encodes and verifies VERP return paths for one bounce domain and one key.

    The key comes from configuration (a secret file), never from a global;
    the prefix is the local part before `+` (default `b`).
    """

    def __init__(self, key: Secret | bytes, domain: str, prefix: str = "b") -> None:
        raw = key.value.encode() if isinstance(key, Secret) else key
        if len(raw) < 16:
            raise ValueError("VERP key must be at least 16 bytes")
        self._key = raw
        self.domain = domain.lower().rstrip(".")
        self.prefix = prefix.lower()

    def __repr__(self) -> str:
        return f"<VerpCodec {self.prefix}+…@{self.domain}>"

    def encode(self, queue_id: str, recipient_index: int) -> str:
        """The return path for recipient number `recipient_index` of `queue_id`."""
        if not is_queue_id(queue_id):
            raise ValueError(f"not a queue id: {queue_id!r}")
        if not 0 <= recipient_index < 32**7:
            raise ValueError(f"recipient index out of range: {recipient_index}")
        qid = queue_id.lower()
        index = _to_b32(recipient_index)
        return f"{self.prefix}+{qid}-{index}-{self._mac(qid, index)}@{self.domain}"

    def is_ours(self, address: str) -> bool:
        """True when `address` is on our bounce domain with our prefix (verified or not)."""
        local, _, domain = address.strip().strip("<>").rpartition("@")
        return (domain.lower().rstrip(".") == self.domain
                and local.lower().startswith(self.prefix + "+"))

    def decode(self, address: str) -> VerpRef:
        """The reference a VERP address carries; VerpError unless it verifies."""
        if not self.is_ours(address):
            raise VerpError(f"not a VERP address of {self.domain}")
        local = address.strip().strip("<>").rpartition("@")[0].lower()
        m = _TOKEN.match(local[len(self.prefix) + 1:])
        if m is None:
            raise VerpError("malformed VERP token")
        qid, index, mac = m.groups()
        if not hmac.compare_digest(mac, self._mac(qid, index)):
            raise VerpError("VERP token does not verify (forged or tampered)")
        if index != _to_b32(int(index, 32)):
            raise VerpError("non-canonical recipient index")  # e.g. leading zeros
        return VerpRef(qid.upper(), int(index, 32))

    def _mac(self, qid: str, index: str) -> str:
        digest = hmac.digest(self._key, f"{qid}:{index}".encode(), "sha256")
        return base64.b32encode(digest[:_MAC_BYTES]).decode().lower()


def _to_b32(value: int) -> str:
    digits = []
    while True:
        value, rem = divmod(value, 32)
        digits.append(_B32[rem])
        if not value:
            return "".join(reversed(digits))


class ReturnPaths:
    """Which envelope sender each recipient's transaction gets (the delivery stage asks).

    With a codec, mail on routes without `verp: false` goes out with
    `b+<token>@<bounce domain>` — one token, so one transaction, per recipient —
    and the null sender stays null (a DSN must never get a return path).
    """

    def __init__(self, codec: VerpCodec | None) -> None:
        self.codec = codec

    def __repr__(self) -> str:
        return f"<ReturnPaths {self.codec!r}>"

    def applies(self, route_verp: bool | None, mail_from: str) -> bool:
        return self.codec is not None and mail_from != "" and route_verp is not False

    def for_recipient(self, queue_id: str, recipients: tuple[str, ...], recipient: str) -> str:
        assert self.codec is not None
        return self.codec.encode(queue_id, recipients.index(recipient))
