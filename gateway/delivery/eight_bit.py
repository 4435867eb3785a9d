"""What one server may be sent: 8-bit content only with 8BITMIME (RFC 6152),
UTF-8 header fields and addresses only with SMTPUTF8 (RFC 6531) (Postfix:
smtp(8)'s `smtp_mime_downgrade` and its "SMTPUTF8 is required" bounce).

Cleanup makes every message it may re-encode 7-bit before signing (see
gateway/cleanup/stage.py), so what is still 8-bit here is a message signed by
the app itself (whose bytes cleanup keeps) or one with raw 8-bit in a
structured header field. For a server without 8BITMIME its parts are
re-encoded now, as Postfix does: the app's signature then no longer verifies,
which is logged and counted (`smtp_gateway_cleanup_repairs_total{repair=
"downgraded_at_delivery"}`), because the alternative is not delivering at
all. What even that cannot make 7-bit (8-bit header octets) is refused with
5.6.3 and bounces. A message that needs SMTPUTF8 (the client asked for it and
an address or a header field is UTF-8) is never downgraded: a server without
SMTPUTF8 gets nothing and the message bounces with 5.6.7, never mangled.

Security: reads message content we stored (from untrusted clients), through
the stdlib parser (gateway.cleanup).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from gateway import metrics
from gateway.cleanup import seven_bit
from gateway.model import Reply

__all__ = ["content_for"]

log = logging.getLogger(__name__)


def content_for(content: bytes, addresses: tuple[str, ...], smtputf8: bool,
                extensions: Mapping[str, str], server: str) -> bytes | Reply:
    """The bytes to send `server` (which offered `extensions`), or why it gets none."""
    if smtputf8 and "SMTPUTF8" not in extensions and _needs_smtputf8(content, addresses):
        return Reply(550, "5.6.7", f"SMTPUTF8 is required, but was not offered by {server}")
    if "8BITMIME" in extensions or content.isascii():
        return content  # the usual case: one C-speed check
    converted = seven_bit(content)
    if converted is None or not converted.isascii():
        return Reply(554, "5.6.3", f"the message has 8-bit header fields and {server} "
                     "does not offer 8BITMIME: it cannot be converted")
    metrics.record_cleanup_repair("downgraded_at_delivery")
    if b"\r\ndkim-signature:" in b"\r\n" + _header(content).lower():
        log.warning("8-bit message converted to 7-bit for %s (no 8BITMIME): its DKIM "
                    "signatures no longer verify", server)
    else:
        log.info("8-bit message converted to 7-bit for %s (no 8BITMIME)", server)
    return converted


def _needs_smtputf8(content: bytes, addresses: tuple[str, ...]) -> bool:
    return not all(a.isascii() for a in addresses) or not _header(content).isascii()


def _header(content: bytes) -> bytes:
    end = content.find(b"\r\n\r\n")
    return content if end < 0 else content[:end]
