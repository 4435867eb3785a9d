"""Line endings and line lengths of a message as received (Postfix: smtpd(8)'s
`smtpd_forbid_bare_newline = normalize` and cleanup(8)'s
`cleanup_replace_stray_cr_lf = yes`).

A bare LF ends a line, as the app that wrote Unix line endings meant it to: it
becomes CRLF. A bare CR (one not followed by LF) is not a line ending anywhere
today; it is a "stray" character and becomes a space, as in Postfix, which
keeps the words on either side apart without inventing a line break the app did
not write. Either way nothing bare is ever relayed, so a `<LF>.<LF>` or
`<CR>.<CR>` can never become an end of data on the next hop (SMTP smuggling).

One difference from Postfix: CRs right before a CRLF (`<CR><CR><LF>`, what a
second LF → CRLF conversion makes of CRLF text) are dropped, not made spaces.
Both keep the visible text, but Postfix's space turns such a message's empty
separator line into a line holding one space — a folded header line — so the
header section never ends where the app ended it, and its body's first line
would become part of the header.

Security: reads untrusted message content (bytes only, no parsing).
"""

from __future__ import annotations

import re

__all__ = ["MAX_LINE_LENGTH", "has_long_line", "replace_stray_cr_lf"]

MAX_LINE_LENGTH = 998  # octets, without the CRLF (RFC 5322 2.1.1, RFC 5321 4.5.3.1.6)

# CRs just before a CRLF; a CR that does not start a CRLF: a stray CR; an LF not after
# a CR: a bare LF.
_CR_BEFORE_CRLF = re.compile(rb"\r+(?=\r\n)")
_STRAY_CR = re.compile(rb"\r(?!\n)")
_BARE_LF = re.compile(rb"(?<!\r)\n")


def replace_stray_cr_lf(content: bytes) -> bytes:
    """Bare LF → CRLF, CR before CRLF → nothing, other stray CR → space (see the
    module docstring)."""
    crlf = content.count(b"\r\n")
    if content.count(b"\r") == crlf and content.count(b"\n") == crlf:
        return content  # the usual case: nothing to rewrite, no copy
    content = _STRAY_CR.sub(b" ", _CR_BEFORE_CRLF.sub(b"", content))
    return _BARE_LF.sub(b"\r\n", content)


def has_long_line(content: bytes, limit: int = MAX_LINE_LENGTH) -> bool:
    """True if a CRLF-separated line is longer than `limit` octets."""
    if len(content) <= limit:
        return False
    # One split in C: faster than a regex ("[^\r\n]{999}" backtracks at every octet).
    return max(map(len, content.split(b"\r\n"))) > limit
