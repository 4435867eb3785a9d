"""Every reply intake sends, by name, and the mapping that gives aiosmtpd's own
replies an enhanced status code (aiosmtpd's `statuscodes.py`, Postfix smtpd's
reply table).

We advertise ENHANCEDSTATUSCODES (RFC 2034), which promises a `x.y.z` code on
every reply except the greeting, the HELO/EHLO answer and the 334/354
intermediate replies. aiosmtpd writes many replies itself ("250 OK",
"503 Error: need RCPT command"), so `enhance()` rewrites those on their way out.
"""

from __future__ import annotations

import re

from gateway.model import QueueId, Reply

__all__ = [
    "AUTH_LOCKED",
    "AUTH_REQUIRED",
    "DISK_FULL",
    "INTERNAL_ERROR",
    "MESSAGE_TOO_BIG",
    "RECIPIENT_OK",
    "RELAY_DENIED",
    "SENDER_OK",
    "SHUTTING_DOWN",
    "SPOOL_FAILED",
    "STATE_UNAVAILABLE",
    "TIMEOUT",
    "TLS_ALREADY_ACTIVE",
    "TOO_MANY_RECIPIENTS",
    "TOO_MANY_SESSIONS",
    "TOO_MANY_SESSIONS_FROM_IP",
    "bad_recipient",
    "bad_sender",
    "enhance",
    "non_ascii_address",
    "printable_line",
    "queued",
    "queued_id",
]

# -- AUTH ------------------------------------------------------------------------------------
AUTH_LOCKED = Reply(454, "4.7.0", "Too many failed authentication attempts, try again later")

# -- MAIL / RCPT ------------------------------------------------------------------------------
SENDER_OK = Reply(250, "2.1.0", "Sender OK")
RECIPIENT_OK = Reply(250, "2.1.5", "Recipient OK")
AUTH_REQUIRED = Reply(530, "5.7.0", "Authentication required")
RELAY_DENIED = Reply(554, "5.7.1", "Relay access denied")
TOO_MANY_RECIPIENTS = Reply(452, "4.5.3", "Too many recipients")

# -- DATA -------------------------------------------------------------------------------------
MESSAGE_TOO_BIG = Reply(552, "5.3.4", "Message size exceeds fixed maximum message size")
SPOOL_FAILED = Reply(451, "4.3.0", "Temporary failure storing the message, try again later")
DISK_FULL = Reply(452, "4.3.1", "Insufficient system storage, try again later")
INTERNAL_ERROR = Reply(451, "4.3.0", "Internal error, try again later")
STATE_UNAVAILABLE = Reply(451, "4.3.0",
                          "Temporary failure (state store unavailable), try again later")

# -- session ----------------------------------------------------------------------------------
TIMEOUT = Reply(421, "4.4.2", "Error: timeout exceeded, closing connection")
TOO_MANY_SESSIONS = Reply(421, "4.7.0", "Too many connections, try again later")
TOO_MANY_SESSIONS_FROM_IP = Reply(
    421, "4.7.0", "Too many connections from your address, try again later"
)
SHUTTING_DOWN = Reply(421, "4.3.2", "Service shutting down, closing connection")
TLS_ALREADY_ACTIVE = Reply(503, "5.5.1", "TLS already active")
# RFC 8689 section 4: REQUIRETLS is only offered, and taken, inside TLS.
REQUIRETLS_NEEDS_TLS = Reply(530, "5.7.10", "REQUIRETLS needs a TLS session: STARTTLS first")


def _printable(text: str) -> str:
    """Reply text goes to a client that may not have negotiated SMTPUTF8: ASCII only."""
    return "".join(ch if " " <= ch <= "~" else "?" for ch in text)


def queued(queue_id: QueueId) -> Reply:
    return Reply(250, "2.0.0", f"Ok: queued as {queue_id}")


def queued_id(reply: Reply) -> QueueId | None:
    """The queue id a queued() reply names, or None."""
    prefix = "Ok: queued as "
    return reply.text[len(prefix):] if reply.code == 250 and reply.text.startswith(prefix) \
        else None


def bad_sender(reason: str) -> Reply:
    return Reply(501, "5.1.7", f"Bad sender address syntax: {_printable(reason)}")


def bad_recipient(reason: str) -> Reply:
    return Reply(553, "5.1.3", f"Bad recipient address syntax: {_printable(reason)}")


def non_ascii_address() -> Reply:
    # RFC 6531 3.6.2: an internationalized address needs the SMTPUTF8 MAIL parameter.
    return Reply(553, "5.6.7", "Non-ASCII address requires the SMTPUTF8 MAIL FROM parameter")


# -- aiosmtpd's own replies -------------------------------------------------------------------
_HAS_ENHANCED = re.compile(r"^\d{3}[ -][245]\.\d{1,3}\.\d{1,3}(?: |$)")
_INTERMEDIATE = ("334", "354")

# aiosmtpd texts that deserve more than a generic code (exact reply lines).
_BY_TEXT: dict[str, Reply] = {
    "250 OK": Reply(250, "2.0.0", "OK"),
    "221 Bye": Reply(221, "2.0.0", "Bye"),
    "220 Ready to start TLS": Reply(220, "2.0.0", "Ready to start TLS"),
    "454 TLS not available": Reply(454, "4.7.0", "TLS not available"),
    "530 Must issue a STARTTLS command first": Reply(
        530, "5.7.0", "Must issue a STARTTLS command first"
    ),
    "252 Cannot VRFY user, but will accept message and attempt delivery": Reply(
        252, "2.5.2", "Cannot VRFY user, but will accept message and attempt delivery"
    ),
    # Size: the SIZE= parameter, the running total in DATA, and a "line" longer than
    # the raised DATA read limit (which is the size limit, see IntakeSMTP.smtp_DATA).
    "552 Error: message size exceeds fixed maximum message size": MESSAGE_TOO_BIG,
    "552 Error: Too much mail data": MESSAGE_TOO_BIG,
    "500 Line too long (see RFC5321 4.5.3.1.6)": MESSAGE_TOO_BIG,
}

# aiosmtpd says "553 5.1.3 Error: malformed address" for MAIL and RCPT alike; for the
# sender RFC 3463 has 5.1.7 and RFC 5321 the 501 syntax code.
_MALFORMED = "553 5.1.3 Error: malformed address"
_BY_VERB: dict[tuple[str, str], Reply] = {
    ("MAIL", _MALFORMED): bad_sender("cannot parse the address"),
    ("RCPT", _MALFORMED): bad_recipient("cannot parse the address"),
}

# RFC 3463 codes for the rest, by reply code.
_BY_CODE: dict[int, str] = {
    221: "2.0.0",
    250: "2.0.0",
    421: "4.3.0",
    451: "4.3.0",
    454: "4.7.0",
    500: "5.5.2",
    501: "5.5.4",
    502: "5.5.1",
    503: "5.5.1",
    504: "5.5.4",
    530: "5.7.0",
    535: "5.7.8",
    538: "5.7.11",
    550: "5.0.0",
    552: "5.3.4",
    553: "5.1.3",
    554: "5.5.0",
    555: "5.5.4",
}


_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")


def printable_line(line: str) -> str:
    """A reply line as it may go on the wire: printable ASCII only.

    aiosmtpd echoes parts of the client's input in its replies (`500 Error: command
    "X" not recognized`); a NUL, a bare CR or LF, or 8-bit octets from the client
    must not reach the reply, where a bare CR or LF would even forge a reply line.
    """
    if line.isascii() and line.isprintable():
        return line
    return _UNPRINTABLE.sub("?", line)


def enhance(line: str, *, verb: str = "", helo: bool = False) -> str:
    """Give a reply line an enhanced status code if it lacks one.

    `verb` is the command being answered (for replies aiosmtpd words the same way
    for different commands); `helo` is true while answering HELO/EHLO, whose 250
    lines are exempt (RFC 2034 section 3), as is the greeting.
    """
    code = line[:3]
    if not code.isdigit():
        return line
    mapped = _BY_VERB.get((verb, line))
    if mapped is not None:
        return str(mapped)
    if _HAS_ENHANCED.match(line) or code in _INTERMEDIATE or (helo and code == "250"):
        return line
    if code == "220" and line != "220 Ready to start TLS":
        return line  # the greeting
    mapped = _BY_TEXT.get(line)
    if mapped is not None:
        return str(mapped)
    enhanced = _BY_CODE.get(int(code), f"{code[0]}.0.0")
    rest = line[4:] if len(line) > 3 else ""
    separator = line[3:4] or " "
    return f"{code}{separator}{enhanced} {rest}".rstrip()
