"""Envelope addresses as the client wrote them, and their syntax check (RFC 5321
4.1.2, RFC 6531 for UTF-8): shared by SMTP intake and the HTTP API.

Security: reads untrusted input (MAIL/RCPT arguments); checks syntax only, no DNS.
"""

from __future__ import annotations

import functools
import re

from email_validator import EmailNotValidError, validate_email

__all__ = ["address_problem", "envelope_path"]

_SOURCE_ROUTE = re.compile(r"^@[^:]*:")


def envelope_path(argument: str, keyword: str) -> str | None:
    """The address in a MAIL/RCPT argument exactly as the client wrote it.

    aiosmtpd's own parser is lenient (it turns `<a b@c>` into `"a b"@c`), so the
    syntax check must see the original. `<>` gives "". A source route
    (`<@relay:user@host>`) is dropped, as RFC 5321 4.1.1.3 says to.
    """
    if argument[: len(keyword)].upper() != keyword:
        return None
    text = argument[len(keyword):].strip()
    if not text.startswith("<"):
        return text.split(" ", 1)[0] or None
    quoted = escaped = False
    for index, char in enumerate(text[1:], 1):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == ">" and not quoted:
            return _SOURCE_ROUTE.sub("", text[1:index])
    return None


def address_problem(address: str, *, smtputf8: bool) -> str | None:
    """Why `address` is not a valid mailbox (syntax only), or None if it is."""
    return _address_problem(address, smtputf8)


# email-validator costs ~60 µs an address; an app's sender repeats with every message, and
# the HTTP API checks each address twice (its JSON error, then MAIL/RCPT). Bounded.
@functools.lru_cache(maxsize=4096)
def _address_problem(address: str, smtputf8: bool) -> str | None:
    try:
        address.encode("utf-8")
    except UnicodeEncodeError:
        return "the address is not valid UTF-8"
    try:
        validate_email(
            address,
            check_deliverability=False,
            allow_smtputf8=smtputf8,
            allow_quoted_local=True,
            allow_domain_literal=True,
            allow_display_name=False,
            # Syntax only: a dotless domain or a .test name is the operator's business.
            globally_deliverable=False,
            test_environment=True,
        )
    except EmailNotValidError as exc:
        return str(exc)
    return None
