"""The one verdict function: a failure's code and text → reason → action → kind.

KumoMTA counterpart: `bounce-classify` (its BounceClass) plus the action the
operator's rules attach to it; the reason names are Sisimai's, so operators
can compare. Every failure goes through `verdict()`: a reply during delivery
(gateway.bounces.actions, via the scheduler's hook), a DSN, a provider's
plain-text bounce, an ARF report (gateway.bounces.detectors). So one reason
always leads to one action, whichever way it came in.

The action table (`ACTIONS`), one row per reason:

- ADDRESS — the address is at fault (userunknown, hostunknown, hasmoved,
  notaccept): `kind` hard, suppressed as policies/bounces.yaml says.
- MAILBOX — the mailbox's state (mailboxfull, suspend, exceedlimit): `kind`
  soft, counted towards `soft.count`.
- SENDER_OR_PATH — everything that says nothing about the address: our IP or
  domain on a blocklist, content or spam filtering, SPF/DKIM/DMARC/TLS,
  a refused sender or relay, network or system trouble, rate limits, expiry,
  and failures we cannot explain (`undefined`): `kind` soft, and the
  recipient is NEVER suppressed. It is recorded (an event), counted per
  destination domain and reason (a metric), and alerted on.
- COMPLAINT — an ARF report (feedback): suppressed as `complaint:` says.
- NONE — vacation replies and success reports: not failures.

A temporary failure (a 4xx reply, a `delayed` DSN) is never hard: an
address-at-fault reason on a temporary failure counts as a mailbox state
(a directory lookup that failed for a minute must not suppress anyone).

Which wins when the enhanced status code and the text disagree
(`_decide`): text that names the sender's or the path's fault wins over any
code. Servers answer a blocklisting with whatever code their software has
at hand: `550 5.1.1 … blocked using bl.spamcop.net`, `554 5.7.1 Service
unavailable; Client host blocked using zen.spamhaus.org`, Exchange's
`5.7.606 … banned sending IP`; the code is a template, the text names the
list. Suppressing a guest because of our own listing is the costly mistake,
and the text is the only part that names the cause. Otherwise a specific
code (X.1.1, X.2.2, X.3.4…) wins over the text, since codes are the
machine-readable part and texts vary; a generic code (X.0.0, X.7.1, X.2.0)
yields to any text rule and is used only when no rule matches.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from gateway.bounces.report import Kind
from gateway.bounces.status import find_status, infer_rule, reason_for_status

__all__ = ["ACTIONS", "Action", "Reason", "Verdict", "kind_for", "verdict"]


class Reason(StrEnum):
    """The vocabulary (Sisimai's names); README.md's "Bounce reasons" explains each."""

    USER_UNKNOWN = "userunknown"  # no such mailbox (X.1.1)
    HOST_UNKNOWN = "hostunknown"  # no such domain / no MX or A (X.1.2, X.4.4)
    HAS_MOVED = "hasmoved"  # the mailbox has moved (X.1.6, X.7.17)
    NOT_ACCEPT = "notaccept"  # the domain accepts no mail (null MX, RFC 7505 X.1.10)
    MAILBOX_FULL = "mailboxfull"  # over quota (X.2.2)
    SUSPEND = "suspend"  # mailbox disabled or suspended (X.2.1)
    EXCEED_LIMIT = "exceedlimit"  # the message exceeds the mailbox's own limit (X.2.3)
    MESG_TOO_BIG = "mesgtoobig"  # the message exceeds the server's size limit (X.3.4)
    BLOCKED = "blocked"  # our IP or domain refused: blocklist, reputation, rDNS, HELO
    SPAM_DETECTED = "spamdetected"  # the content was judged spam
    VIRUS_DETECTED = "virusdetected"  # the content carried a virus
    CONTENT_ERROR = "contenterror"  # malformed content or headers (X.6.x)
    POLICY_VIOLATION = "policyviolation"  # the receiving site's policy (X.7.1, X.7.2)
    SECURITY_ERROR = "securityerror"  # SPF/DKIM/DMARC/TLS/authentication of the sender
    REJECTED = "rejected"  # the envelope sender was refused
    NO_RELAYING = "norelaying"  # relaying denied (the server is not the domain's)
    EXPIRED = "expired"  # given up after retrying (X.4.7)
    NETWORK_ERROR = "networkerror"  # no connection, DNS trouble, a loop
    TOO_MANY_CONN = "toomanyconn"  # too many connections (X.4.5)
    RATE_LIMITED = "ratelimited"  # sending too fast, greylisting (X.7.28)
    SYSTEM_ERROR = "systemerror"  # the receiving system failed
    SYSTEM_FULL = "systemfull"  # the receiving system's disk is full (X.3.1)
    SYNTAX_ERROR = "syntaxerror"  # an SMTP protocol error (X.5.x)
    ON_HOLD = "onhold"  # a failure whose report is not final and says nothing more
    UNDEFINED = "undefined"  # a failure nothing in the report explains
    FEEDBACK = "feedback"  # an ARF complaint
    VACATION = "vacation"  # an RFC 3834 auto-reply
    DELIVERED = "delivered"  # a success report (not a failure)


class Action(StrEnum):
    ADDRESS = "suppress"  # suppress per bounces.yaml `hard:`
    MAILBOX = "count_soft"  # count per bounces.yaml `soft:`
    SENDER_OR_PATH = "alert"  # never suppress; record, count per domain and reason, alert
    COMPLAINT = "complaint"  # suppress per bounces.yaml `complaint:`
    NONE = "none"  # not a failure


_R = Reason
ACTIONS: dict[Reason, Action] = {
    **{r: Action.ADDRESS for r in (_R.USER_UNKNOWN, _R.HOST_UNKNOWN, _R.HAS_MOVED,
                                   _R.NOT_ACCEPT)},
    **{r: Action.MAILBOX for r in (_R.MAILBOX_FULL, _R.SUSPEND, _R.EXCEED_LIMIT)},
    **{r: Action.SENDER_OR_PATH for r in (
        _R.MESG_TOO_BIG, _R.BLOCKED, _R.SPAM_DETECTED, _R.VIRUS_DETECTED, _R.CONTENT_ERROR,
        _R.POLICY_VIOLATION, _R.SECURITY_ERROR, _R.REJECTED, _R.NO_RELAYING, _R.EXPIRED,
        _R.NETWORK_ERROR, _R.TOO_MANY_CONN, _R.RATE_LIMITED, _R.SYSTEM_ERROR, _R.SYSTEM_FULL,
        _R.SYNTAX_ERROR, _R.ON_HOLD, _R.UNDEFINED)},
    _R.FEEDBACK: Action.COMPLAINT,
    _R.VACATION: Action.NONE,
    _R.DELIVERED: Action.NONE,
}
# `delivered` never reaches a report (success blocks list no recipient); vacation is the
# only reason of Action.NONE that does, as an auto_reply.
_KINDS = {Action.ADDRESS: Kind.HARD, Action.MAILBOX: Kind.SOFT,
          Action.SENDER_OR_PATH: Kind.SOFT, Action.COMPLAINT: Kind.COMPLAINT,
          Action.NONE: Kind.AUTO_REPLY}


@dataclass(frozen=True)
class Verdict:
    """What one failure means: its reason, the action that follows, and its kind.

    `status` is the RFC 3463 code as reported, or inferred from the text with
    the class of the failure (None when neither says).
    """

    reason: Reason
    action: Action
    kind: Kind
    status: str | None


def kind_for(reason: Reason) -> Kind:
    return _KINDS[ACTIONS[reason]]


def verdict(status: str | None, text: str, *, final: bool) -> Verdict:
    """The verdict on one recipient's failure.

    `status` is the enhanced code the report or reply gave ("" or None when
    none; a code in `text` is used then); `final` is False for a temporary
    failure (4xx reply, `Action: delayed`). A class-4 code in a final report
    means "given up after temporary failures": expired unless the text says
    more.
    """
    status = status or find_status(text)
    if status is not None and status[0] not in "45":
        status = None  # 2.x.x in a failure: a relay's template, not a diagnosis
    if status is not None:
        klass = status[0]
    else:  # no enhanced code: the basic reply code ("said: 450 …"), else the report's word
        reply = _REPLY_CODE.search(text[:300])
        klass = reply[1] if reply is not None else ("5" if final else "4")
    rule = infer_rule(text)
    reason, detail = _decide(status, rule)
    if final and klass == "4" and (reason is Reason.UNDEFINED or rule[0] == Reason.EXPIRED):
        # given up after temporary failures: the class-4 code is the last attempt's
        reason, detail = Reason.EXPIRED, "4.7"
    if reason is Reason.UNDEFINED and not final:
        reason = Reason.ON_HOLD
    if status is None and detail is not None:
        status = f"{klass}.{detail}"
    action = ACTIONS[reason]
    permanent = final and klass == "5"
    if not permanent and action is Action.ADDRESS:
        action = Action.MAILBOX  # a temporary "user unknown" counts, never suppresses
    return Verdict(reason, action, _KINDS[action], status)


def _decide(status: str | None, rule: tuple[str, str | None, bool]
            ) -> tuple[Reason, str | None]:
    """(reason, subject.detail to build a status from): see "which wins" above.
    `rule` is what the text rules say (status.infer_rule)."""
    text_reason, detail, strong = rule
    by_text = Reason(text_reason)
    if ACTIONS[by_text] is Action.SENDER_OR_PATH and strong and by_text not in _WEAK_TEXT:
        return by_text, detail  # the text names the sender's or the path's fault
    if status is not None:
        code_reason, specific = reason_for_status(status)
        if specific:
            return Reason(code_reason), None
        if by_text is not Reason.UNDEFINED:
            return by_text, None
        return Reason(code_reason), None
    return by_text, detail


_REPLY_CODE = re.compile(r"(?<![\d.])([45])\d\d(?=[ -])")

# Text rules too vague to overrule a specific code: "550 5.1.1 … try again later" is a
# user unknown whatever the boilerplate around it says.
_WEAK_TEXT = frozenset({Reason.SYSTEM_ERROR, Reason.EXPIRED, Reason.NETWORK_ERROR,
                        Reason.SYNTAX_ERROR, Reason.CONTENT_ERROR, Reason.POLICY_VIOLATION,
                        Reason.UNDEFINED})
