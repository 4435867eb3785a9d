"""Parse a returned message into a BounceReport; classify one SMTP reply.

flufl.bounce counterpart: `_scan.all_failures()`; KumoMTA's
`bounce-classify`. `DETECTORS` is the explicit order in which formats are
tried; the first detector that says "mine" (returns a list, even empty)
decides. The order matters:

1. `Arf` and `Dsn` first: machine-readable reports are exact, and both
   carry `Auto-Submitted`, which would otherwise look like an auto-reply.
2. `Ses` (JSON notifications) — recognised by its sender, cheap to rule out.
3. The plain-text MTA formats, each keyed on its own fixed greeting:
   qmail, Yahoo, Postfix, Exim, Sendmail, Exchange, Gmail.
4. `Generic`: any other mail system's bounce: a failure sentence plus a
   mail-system sender (or a bounce subject with the returned original).
5. `AutoReply` last: RFC 3834 vacation and out-of-office replies, which are
   not bounces (`bounce: false`).

Security: everything here reads untrusted mail. Detectors cap the text they
search; a VERP address counts only when its signature verifies, and a report
whose VERP address does not verify is marked `forged` for the caller to
ignore (and count).
"""

from __future__ import annotations

import functools
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.policy import default as default_policy

from gateway.bounces.detectors import (
    Arf,
    AutoReply,
    Detector,
    Dsn,
    Exchange,
    Exim,
    Generic,
    Gmail,
    Postfix,
    Qmail,
    Sendmail,
    Ses,
    Yahoo,
)
from gateway.bounces.detectors.base import embedded_headers, header
from gateway.bounces.report import BounceReport
from gateway.bounces.status import find_status
from gateway.bounces.verdicts import Verdict, verdict
from gateway.bounces.verp import VerpCodec, VerpError, VerpRef

__all__ = [
    "DETECTORS",
    "MAX_PARSED_BYTES",
    "classify_reply",
    "parse",
    "parse_bytes",
]

DETECTORS: tuple[Detector, ...] = (
    Arf(),
    Dsn(),
    Ses(),
    Qmail(),
    Yahoo(),
    Postfix(),
    Exim(),
    Sendmail(),
    Exchange(),
    Gmail(),
    Generic(),
    AutoReply(),
)

# Where a bounce says which VERP address it was sent to: the envelope
# recipient as the final MTA recorded it, then the visible To:.
_VERP_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To")


class _CachedHeaders(HeaderRegistry):
    """The stdlib's header registry, memoised on (name, value).

    `EmailMessage` re-parses a header on every access, and detectors ask for
    Content-Type many times per message (get_content_type() on each part,
    for each detector): parsing each distinct value once makes parsing
    several times faster. Header objects are immutable, so sharing them is
    safe. Only short values are kept, so hostile mail cannot fill memory.
    """

    def __call__(self, name: str, value: str) -> BaseHeader:
        if len(value) > _CACHED_VALUE_MAX:
            return super().__call__(name, value)
        return self._cached(name, value)

    @functools.lru_cache(maxsize=4096)  # noqa: B019 — one registry per process; bounded
    def _cached(self, name: str, value: str) -> BaseHeader:
        return super().__call__(name, value)


MAX_PARSED_BYTES = 256 * 1024
_CACHED_VALUE_MAX = 512  # characters; 4096 entries of at most this size


POLICY = default_policy.clone(header_factory=_CachedHeaders())
_PARSER = BytesParser(policy=POLICY)


def parse_bytes(data: bytes, verp: VerpCodec | None = None,
                max_bytes: int = MAX_PARSED_BYTES) -> BounceReport:
    """Parse one message (RFC 5322 bytes) and classify it.

    Only the first `max_bytes` are parsed: every format puts its report, and
    the original's headers, before the original's body, which is what makes a
    bounce large (a returned 10 MB attachment would otherwise cost a full
    MIME parse). The stdlib parser accepts the cut-off multipart as it is.
    """
    msg = _PARSER.parsebytes(data[:max_bytes])
    assert isinstance(msg, EmailMessage)  # guaranteed by policy.default
    return parse(msg, verp)


def parse(msg: EmailMessage, verp: VerpCodec | None = None) -> BounceReport:
    """Run DETECTORS in order; the first that recognises `msg` gives the recipients."""
    for detector in DETECTORS:
        recipients = detector.detect(msg)
        if recipients is not None:
            break
    else:
        return BounceReport("")
    ref, forged = _verp(msg, verp) if verp is not None else (None, False)
    return BounceReport(detector.name, tuple(recipients), verp=ref, forged=forged)


def _verp(msg: EmailMessage, codec: VerpCodec) -> tuple[VerpRef | None, bool]:
    """(verified reference, forged): the first VERP address of ours found, checked."""
    candidates: list[str] = []
    for name in _VERP_HEADERS:
        candidates.extend(str(v) for v in msg.get_all(name) or ())
    original: Message | None = embedded_headers(msg)
    if original is not None:  # ARF: the original's return path is our VERP address
        candidates.append(header(original, "Return-Path"))
    for value in candidates:
        for address in value.split(","):
            address = address.strip().rsplit("<", 1)[-1].rstrip(">").strip()
            if codec.is_ours(address):
                try:
                    return codec.decode(address), False
                except VerpError:
                    return None, True
    return None, False


# -- synchronous replies ----------------------------------------------------------------------


def classify_reply(code: int, enhanced: str, text: str) -> Verdict:
    """The verdict on a 4xx/5xx reply from a receiving server during delivery.

    The same `verdicts.verdict()` that reads DSNs and bounces: a reply's code
    class says whether it is final (5xx) or temporary (4xx); the enhanced code
    and the text give the reason (see verdicts' "which wins"). An enhanced
    code whose class contradicts the reply code ("550 4.1.1") is malformed and
    ignored: the reply code is authoritative.
    """
    if not 400 <= code < 600:
        raise ValueError(f"not a failure reply: {code}")
    klass = str(code)[0]
    given = find_status(enhanced) if enhanced else None
    if given is not None and given[0] != klass:
        given = None
    found = given or find_status(text)
    if found is not None and found[0] != klass:
        found = klass + found[1:]
    return verdict(found, text, final=klass == "5")
