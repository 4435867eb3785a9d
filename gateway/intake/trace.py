"""The Received: trace field intake prepends to every message (RFC 5321 4.4; the `with`
keywords of RFC 3848 and RFC 6531).

Security: the client's HELO name is untrusted; it is reduced to safe characters before
it goes into the field.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import re
from datetime import UTC, datetime
from email.utils import format_datetime

from gateway.model import Envelope, QueueId

__all__ = ["received_header"]

_HELO_UNSAFE = re.compile(r"[^A-Za-z0-9.\-_:\[\]]")


def received_header(envelope: Envelope, hostname: str, queue_id: QueueId, *, esmtp: bool) -> str:
    """The RFC 5321 4.4 trace field for this hop, folded, ending in CRLF.

        Received: from client.example ([192.0.2.1])
                by gateway.example with ESMTPSA id 01JD5Q8W3K7H2M9XQ4RT
                for <user@example.org>; Tue, 14 Nov 2023 22:13:20 +0000
    """
    client = envelope.client
    helo = _HELO_UNSAFE.sub("_", client.helo)[:255] or "unknown"
    protocol = _with_protocol(esmtp, envelope.smtputf8, client.tls, client.auth_user is not None)
    lines = [
        f"Received: from {helo} ({_address_literal(client.address)})",
        f"\tby {hostname} with {protocol} id {queue_id}",
    ]
    date = _rfc5322_date(envelope.received_at)
    if len(envelope.recipients) == 1:
        # Only a single recipient is named: listing them all would disclose Bcc's.
        lines.append(f"\tfor <{envelope.recipients[0]}>; {date}")
    else:
        lines[-1] += ";"
        lines.append(f"\t{date}")
    return "\r\n".join(lines) + "\r\n"


def _with_protocol(esmtp: bool, smtputf8: bool, tls: bool, authenticated: bool) -> str:
    """The `with` keyword: RFC 3848 (ESMTP[S][A]) and RFC 6531 (UTF8SMTP[S][A])."""
    if not esmtp:
        return "SMTP"
    return ("UTF8SMTP" if smtputf8 else "ESMTP") + ("S" if tls else "") + (
        "A" if authenticated else ""
    )


@functools.lru_cache(maxsize=1024)  # once per client address, not per message
def _address_literal(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return "unknown"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # a dual-stack socket's view of an IPv4 client
    return f"[IPv6:{ip}]" if ip.version == 6 else f"[{ip}]"


def _rfc5322_date(timestamp: float) -> str:
    return _date_of_second(math.floor(timestamp))


# The field shows whole seconds, and a busy intake formats the same second many times.
@functools.lru_cache(maxsize=4)
def _date_of_second(second: int) -> str:
    return format_datetime(datetime.fromtimestamp(second, UTC))
