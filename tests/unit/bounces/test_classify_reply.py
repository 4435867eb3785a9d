"""Synchronous 4xx/5xx replies → the verdict: reason, action, kind, status."""

from __future__ import annotations

import pytest

from gateway.bounces import Action, Reason, classify_reply
from gateway.bounces.report import Kind
from gateway.bounces.status import infer, reason_for_status

A, M, P = Action.ADDRESS, Action.MAILBOX, Action.SENDER_OR_PATH
R = Reason

REPLIES = [
    # code, enhanced, text → action, status, reason
    (550, "5.1.1", "<a@example.net>: Recipient address rejected: User unknown",
     A, "5.1.1", R.USER_UNKNOWN),
    (550, "", "5.1.1 The email account that you tried to reach does not exist.",
     A, "5.1.1", R.USER_UNKNOWN),
    (550, "", "Requested action not taken: mailbox unavailable", A, "5.1.1", R.USER_UNKNOWN),
    # Exchange Online's 5.1.10 is an unknown recipient; RFC 7505's is a null MX
    (550, "5.1.10", "RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address "
     "lookup", A, "5.1.10", R.USER_UNKNOWN),
    (556, "5.1.10", "Recipient address has null MX", A, "5.1.10", R.NOT_ACCEPT),
    (551, "5.1.6", "User has moved; please try <b@example.org>", A, "5.1.6", R.HAS_MOVED),
    (550, "", "Host or domain name not found", A, "5.1.2", R.HOST_UNKNOWN),
    (550, "5.2.1", "The email account that you tried to reach is disabled.",
     M, "5.2.1", R.SUSPEND),
    (552, "5.2.2", "Mailbox full", M, "5.2.2", R.MAILBOX_FULL),
    (552, "", "Requested mail action aborted: exceeded storage allocation",
     M, "5.2.2", R.MAILBOX_FULL),
    (552, "5.2.3", "Message exceeds the recipient's mailbox size limit", M, "5.2.3",
     R.EXCEED_LIMIT),
    (552, "5.3.4", "Message size exceeds fixed limit", P, "5.3.4", R.MESG_TOO_BIG),
    (554, "5.7.1", "Service unavailable; Client host [198.51.100.7] blocked using "
     "zen.spamhaus.org", P, "5.7.1", R.BLOCKED),
    # the code is a template, the text names the list
    (550, "5.1.1", "Client host [198.51.100.7] blocked using bl.spamcop.net", P, "5.1.1",
     R.BLOCKED),
    (550, "5.7.1", "Message rejected as spam", P, "5.7.1", R.SPAM_DETECTED),
    (550, "5.7.26", "Unauthenticated email is not accepted due to domain's DMARC policy",
     P, "5.7.26", R.SECURITY_ERROR),
    (554, "5.7.1", "<d@example.org>: Relay access denied", P, "5.7.1", R.NO_RELAYING),
    (553, "5.7.1", "<app@example.com>: Sender address rejected: Domain not found", P,
     "5.7.1", R.REJECTED),
    (550, "5.7.1", "Virus found in message", P, "5.7.1", R.VIRUS_DETECTED),
    (554, "5.6.0", "Message content rejected: malformed MIME header", P, "5.6.0",
     R.CONTENT_ERROR),
    (421, "4.7.0", "Too many concurrent SMTP connections; please try again later",
     P, "4.7.0", R.TOO_MANY_CONN),
    (450, "4.7.28", "Our system has detected an unusual rate of mail from your IP", P,
     "4.7.28", R.RATE_LIMITED),
    (450, "4.2.2", "Mailbox over quota", M, "4.2.2", R.MAILBOX_FULL),
    (451, "", "Greylisted, please try again later", P, "4.7.0", R.RATE_LIMITED),
    (451, "4.3.0", "Temporary lookup failure", P, "4.3.0", R.SYSTEM_ERROR),
    (452, "4.3.1", "Insufficient system storage", P, "4.3.1", R.SYSTEM_FULL),
    (550, "", "No such user here", A, "5.1.1", R.USER_UNKNOWN),
    (553, "", "sorry, that domain isn't in my list of allowed rcpthosts", P, "5.7.1",
     R.NO_RELAYING),
    (500, "5.5.2", "Error: command not recognized", P, "5.5.2", R.SYNTAX_ERROR),
    (550, "", "computer says no", P, None, R.UNDEFINED),
    (450, "", "computer says wait", P, None, R.ON_HOLD),
    # a malformed enhanced code of the wrong class: the reply code wins
    (550, "4.1.1", "User unknown", A, "5.1.1", R.USER_UNKNOWN),
]


@pytest.mark.parametrize(("code", "enhanced", "text", "action", "status", "reason"), REPLIES)
def test_classify_reply(code: int, enhanced: str, text: str, action: Action,
                        status: str | None, reason: Reason) -> None:
    v = classify_reply(code, enhanced, text)
    assert (v.reason, v.status) == (reason, status)
    expected = Action.MAILBOX if code < 500 and action is Action.ADDRESS else action
    assert v.action is expected
    assert v.kind is (Kind.HARD if v.action is Action.ADDRESS else Kind.SOFT)


@pytest.mark.parametrize("code", [250, 354, 200, 600])
def test_success_is_not_classified(code: int) -> None:
    with pytest.raises(ValueError, match="not a failure"):
        classify_reply(code, "", "ok")


def test_a_specific_code_outranks_a_vague_text() -> None:
    # "blocked" alone names no cause; X.1.1 is precise
    assert classify_reply(550, "5.1.1", "blocked: no such user").reason is R.USER_UNKNOWN
    assert classify_reply(550, "5.1.1", "mailbox unavailable, try again later").reason \
        is R.USER_UNKNOWN


def test_a_temporary_address_failure_never_suppresses() -> None:
    v = classify_reply(450, "4.1.1", "<a@example.net>: Recipient address rejected: User "
                       "unknown in local recipient table")
    assert v.reason is R.USER_UNKNOWN and v.action is Action.MAILBOX and v.kind is Kind.SOFT


def test_rules_give_known_reasons_and_the_text_is_capped() -> None:
    for status in ("5.1.1", "5.2.2", "5.7.26", "4.4.7", "5.0.0", "5.7.1", "5.9.9"):
        assert reason_for_status(status)[0] in set(Reason)
    assert infer("nothing recognisable") == ("undefined", None)
    assert infer("x" * 100_000 + " mailbox full") == ("undefined", None)


def test_addresses_and_host_names_are_not_diagnoses() -> None:
    # <spam@…> is an address, spamfilter.example.com a host: neither says "spam"
    v = classify_reply(550, "5.1.1", "host spamfilter.example.com[192.0.2.1] said: "
                       "<spam@example.net>: user unknown")
    assert v.reason is R.USER_UNKNOWN and v.action is Action.ADDRESS
