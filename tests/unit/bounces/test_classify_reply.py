"""Synchronous 4xx/5xx replies → hard / soft / policy block, status, reason."""

from __future__ import annotations

import pytest

from gateway.bounces import ReplyClass, ReplyKind, classify_reply
from gateway.bounces.status import REASONS, infer, reason_for_status

H, S, P = ReplyKind.HARD, ReplyKind.SOFT, ReplyKind.POLICY_BLOCK

REPLIES = [
    # code, enhanced, text → kind, status, reason
    (550, "5.1.1", "<a@example.net>: Recipient address rejected: User unknown",
     H, "5.1.1", "user_unknown"),
    (550, "", "5.1.1 The email account that you tried to reach does not exist.",
     H, "5.1.1", "user_unknown"),
    (550, "", "Requested action not taken: mailbox unavailable", H, "5.1.1", "user_unknown"),
    (550, "5.1.10", "RESOLVER.ADR.RecipientNotFound", H, "5.1.10", "domain_not_found"),
    (550, "5.2.1", "The email account that you tried to reach is disabled.",
     H, "5.2.1", "suspended"),
    (552, "5.2.2", "Mailbox full", S, "5.2.2", "mailbox_full"),
    (552, "", "Requested mail action aborted: exceeded storage allocation",
     S, "5.2.2", "mailbox_full"),
    (552, "5.3.4", "Message size exceeds fixed limit", H, "5.3.4", "message_too_large"),
    (554, "5.7.1", "Service unavailable; Client host [198.51.100.7] blocked using "
     "zen.spamhaus.org", P, "5.7.1", "blocked"),
    (550, "5.7.1", "Message rejected as spam", P, "5.7.1", "spam_detected"),
    (550, "5.7.26", "Unauthenticated email is not accepted due to domain's DMARC policy",
     P, "5.7.26", "auth_failed"),
    (554, "5.7.1", "<d@example.org>: Relay access denied", P, "5.7.1", "policy"),
    (550, "5.7.1", "Virus found in message", P, "5.7.1", "virus"),
    (421, "4.7.0", "Try again later, closing connection.", S, "4.7.0", "rate_limited"),
    (450, "4.2.2", "Mailbox over quota", S, "4.2.2", "mailbox_full"),
    (451, "", "Greylisted, please try again later", S, "4.7.0", "rate_limited"),
    (451, "4.3.0", "Temporary lookup failure", S, "4.3.0", "unknown"),
    (550, "", "No such user here", H, "5.1.1", "user_unknown"),
    (553, "", "sorry, that domain isn't in my list of allowed rcpthosts", H, None, "unknown"),
    (550, "", "Host or domain name not found", H, "5.1.2", "domain_not_found"),
    # a malformed enhanced code of the wrong class: the reply code wins
    (550, "4.1.1", "User unknown", H, "5.1.1", "user_unknown"),
]


@pytest.mark.parametrize(("code", "enhanced", "text", "kind", "status", "reason"), REPLIES)
def test_classify_reply(code: int, enhanced: str, text: str, kind: ReplyKind,
                        status: str | None, reason: str) -> None:
    assert classify_reply(code, enhanced, text) == ReplyClass(kind, status, reason)


@pytest.mark.parametrize("code", [250, 354, 200, 600])
def test_success_is_not_classified(code: int) -> None:
    with pytest.raises(ValueError, match="not a failure"):
        classify_reply(code, "", "ok")


def test_specific_code_outranks_the_text() -> None:
    # X.1.1 is always a bad mailbox, even when the text mentions a blocklist
    assert classify_reply(550, "5.1.1", "blocked: no such user").reason == "user_unknown"


def test_every_rule_yields_a_known_reason() -> None:
    for status in ("5.1.1", "5.2.2", "5.7.26", "4.4.7", "5.0.0", "5.7.1", "5.9.9"):
        assert reason_for_status(status)[0] in REASONS
    assert infer("nothing recognisable") == ("unknown", None)
    assert infer("x" * 100_000 + " mailbox full") == ("unknown", None)  # text is capped
