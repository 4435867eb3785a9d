"""From a status code and a sentence to a reason keyword and an RFC 3463 code.

KumoMTA counterpart: `bounce-classify`'s rules. Two tables, both documented
here and nowhere else:

- `_BY_STATUS`: the enhanced status codes whose subject.detail alone says why
  (X.1.1 is always a bad mailbox, X.2.2 always a full one). Generic codes such
  as X.0.0, X.7.1 or X.5.0 are only a fallback: the text decides first.
- `_BY_TEXT`: ordered (pattern, reason, subject.detail) rules for the
  sentences servers actually write. The first match wins, so narrower rules
  come first ("mailbox full" before "rejected"). The subject.detail is used to
  infer a status when the report carries none, with the class (4 or 5) the
  report implies: "mailbox full" in a permanent failure is 5.2.2, in a delay
  4.2.2.

Reasons (`REASONS`): user_unknown, mailbox_full, domain_not_found, suspended,
message_too_large, blocked (our IP or domain is listed), spam_detected,
virus, auth_failed (SPF/DKIM/DMARC), rate_limited, policy (any other refusal),
network, expired, complaint, auto_reply, unknown.

Security: the inputs are untrusted text; the patterns are linear (no nested
quantifiers) and only the first 4 KiB of a sentence is searched.
"""

from __future__ import annotations

import re

__all__ = [
    "POLICY_REASONS",
    "REASONS",
    "find_status",
    "infer",
    "reason_for_status",
    "status_from",
]

REASONS = frozenset({
    "user_unknown", "mailbox_full", "domain_not_found", "suspended", "message_too_large",
    "blocked", "spam_detected", "virus", "auth_failed", "rate_limited", "policy",
    "network", "expired", "complaint", "auto_reply", "unknown",
})
# Refusals of the sender or the message, not of the address: a 5xx with one of
# these is a policy block, and says nothing about whether the mailbox exists.
POLICY_REASONS = frozenset({
    "blocked", "spam_detected", "virus", "auth_failed", "rate_limited", "policy",
})

_STATUS = re.compile(r"(?<![\d.])([45])\.(\d{1,3})\.(\d{1,3})(?![\d.]*\d)")
_MAX_TEXT = 4096

# subject.detail → reason, for the codes that mean one thing.
_BY_STATUS = {
    "1.1": "user_unknown", "1.3": "user_unknown", "1.6": "user_unknown",
    "1.2": "domain_not_found", "1.10": "domain_not_found", "4.4": "domain_not_found",
    "3.2": "network",
    "2.1": "suspended", "7.13": "suspended",
    "2.2": "mailbox_full", "2.3": "message_too_large", "3.4": "message_too_large",
    "4.7": "expired",
    "7.17": "user_unknown", "7.18": "user_unknown",
    "7.20": "auth_failed", "7.21": "auth_failed", "7.22": "auth_failed",
    "7.23": "auth_failed", "7.24": "auth_failed", "7.25": "auth_failed",
    "7.26": "auth_failed", "7.27": "auth_failed",
    "7.28": "rate_limited",
}
# Codes that only narrow it down: used when no text rule matches.
_WEAK_STATUS = {
    "7": "policy", "6": "policy", "4": "network", "3": "unknown", "2": "unknown",
    "1": "user_unknown", "5": "unknown", "0": "unknown",
}

_BY_TEXT: tuple[tuple[re.Pattern[str], str, str], ...] = tuple(
    (re.compile(p, re.IGNORECASE), reason, detail) for p, reason, detail in (
        # full mailboxes: "over quota", "mailbox is full", "insufficient storage"
        (r"over ?quota|quota exceeded|exceeded (?:storage|the quota)|mailbox (?:is )?full"
         r"|mailbox has exceeded|insufficient (?:system )?storage|out of storage"
         r"|full mailbox|mailfolder is full|mailbox size limit", "mailbox_full", "2.2"),
        # suspended or disabled accounts (Gmail 5.2.1, Yahoo "disabled", Outlook "inactive")
        (r"account (?:has been |is )?(?:disabled|suspended|deactivated|locked|inactive|blocked)"
         r"|mailbox (?:is )?(?:disabled|inactive|suspended)|inactive (?:user|mailbox|account)"
         r"|user (?:is )?(?:suspended|disabled|inactive)|no longer active|is not active",
         "suspended", "2.1"),
        (r"message (?:size )?(?:is )?too (?:large|big)|message size exceeds|exceeds (?:the )?"
         r"(?:maximum )?(?:message )?size|size limit|message length exceeds|too large",
         "message_too_large", "3.4"),
        (r"virus|malware|infected", "virus", "7.1"),
        (r"\bdmarc\b|\bspf\b|\bdkim\b|unauthenticated|not authenticated|sender (?:domain )?"
         r"authentication", "auth_failed", "7.1"),
        # blocklists before spam: "blocked using zen.spamhaus.org" names Spamhaus
        (r"black ?list|block ?list|blocked using|\brbl\b|spamhaus|spamcop|barracuda"
         r"|(?<!not )listed (?:at|in|on|by)|ip reputation|poor reputation|bad reputation"
         r"|(?:ip|address|sender|host|connection|domain) (?:was |is |has been )?blocked"
         r"|blocked by|temporarily (?:deferred|blocked)|\bblocked\b|not accepted from this ip"
         r"|banned",
         "blocked", "7.1"),
        (r"spam|junk mail|unsolicited|bulk mail|content (?:was )?rejected"
         r"|message (?:content )?(?:was )?(?:rejected|refused) (?:as|because)"
         r"|looks suspicious|phish", "spam_detected", "7.1"),
        (r"rate limit|too many (?:messages|connections|recipients|emails)|throttl"
         r"|sending rate|try (?:again )?later", "rate_limited", "7.0"),
        # domains before users: "domain does not exist" is not a missing user
        (r"host (?:or domain name )?not found|domain (?:name )?not found|no such domain"
         r"|domain (?:does not|doesn'?t) exist|name service error|nxdomain|dns error"
         r"|couldn'?t find any host|unknown domain|no mx|null mx|unrouteable (?:mail )?domain"
         r"|domain (?:is )?invalid|invalid domain|not accept(?:ing)? mail|non-existent host",
         "domain_not_found",
         "1.2"),
        # unknown users; after the above, since "rejected" alone says little
        (r"user unknown|unknown user|no such (?:user|mailbox|recipient|person|address)"
         r"|(?:user|mailbox|recipient|address|account|local part)"
         r" (?:\S+ )?(?:does not|doesn'?t|did not) exist"
         r"|does not exist|doesn'?t exist|not exist|unknown (?:recipient|mailbox|address|local)"
         r"|recipient (?:not found|unknown|invalid|rejected)|invalid (?:recipient|mailbox|user"
         r"|address)|no mailbox|mailbox (?:not found|unavailable|does not)|not a valid"
         r"|address rejected|unrouteable address|doesn'?t have an? \S+ account|not our customer"
         r"|user not found|no account|unknown address|undeliverable address|recipientnotfound"
         r"|resolver\.adr\.|bad destination mailbox|not listed in (?:the |public |domino )",
         "user_unknown", "1.1"),
        (r"relay(?:ing)? (?:access )?(?:denied|not permitted|prohibited)|not permitted to relay"
         r"|policy|content restriction|not authori[sz]ed|access denied|administrative prohibition"
         r"|prohibited",
         "policy", "7.1"),
        (r"expired|retry time|retry timeout|too long|could not be delivered within"
         r"|giving up|exceeded the maximum time|message timeout|time limit", "expired", "4.7"),
        (r"connection (?:refused|timed out|reset|lost)|lost connection|timed out"
         r"|network is unreachable|no route to host|could not connect|conversation with"
         r"|unable to connect", "network", "4.1"),
    )
)


def find_status(text: str) -> str | None:
    """The first RFC 3463 failure code (4.x.x or 5.x.x) in `text`, or None."""
    m = _STATUS.search(text[:_MAX_TEXT])
    return f"{m[1]}.{m[2]}.{m[3]}" if m else None


def reason_for_status(status: str) -> tuple[str, bool]:
    """(reason, specific): `specific` is False for codes the text should override."""
    subject_detail = status.split(".", 1)[1] if "." in status else ""
    reason = _BY_STATUS.get(subject_detail)
    if reason is not None:
        return reason, True
    return _WEAK_STATUS.get(subject_detail.split(".")[0], "unknown"), False


def infer(text: str) -> tuple[str, str | None]:
    """(reason, subject.detail) from a sentence alone; ("unknown", None) if no rule fits."""
    text = text[:_MAX_TEXT]
    for pattern, reason, detail in _BY_TEXT:
        if pattern.search(text):
            return reason, detail
    return "unknown", None


def status_from(status: str | None, text: str, klass: str) -> tuple[str | None, str]:
    """(status, reason) for one recipient: a reported code first, then the text.

    `klass` ("4" or "5") is used to build a status inferred from text, so a
    permanent "mailbox full" becomes 5.2.2 and a delayed one 4.2.2.
    """
    status = status or find_status(text)
    if status is not None:
        reason, specific = reason_for_status(status)
        if specific:
            return status, reason
        text_reason, _ = infer(text)
        return status, text_reason if text_reason != "unknown" else reason
    reason, detail = infer(text)
    return (f"{klass}.{detail}" if detail else None), reason
