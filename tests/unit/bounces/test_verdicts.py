"""The reason → action table, and one verdict whichever way a failure comes in.

Every reason of the vocabulary maps to exactly one action; for every failure
reason, the same reply gives the same reason and action when it arrives
synchronously (a reply during delivery, `classify_reply`) and asynchronously
(the same reply inside an RFC 3464 DSN, and inside a Postfix-style plain-text
bounce, through `parse_bytes`); and what `decide()` then does follows from
the action alone.
"""

from __future__ import annotations

import textwrap

import pytest

from gateway.bounces import ACTIONS, Action, Reason, classify_reply, parse_bytes
from gateway.bounces.actions import Finding, decide
from gateway.bounces.report import Kind
from gateway.bounces.rules import BounceRules
from gateway.bounces.verdicts import kind_for, verdict
from gateway.model import EventType

R = Reason
ADDRESS = {R.USER_UNKNOWN, R.HOST_UNKNOWN, R.HAS_MOVED, R.NOT_ACCEPT}
MAILBOX = {R.MAILBOX_FULL, R.SUSPEND, R.EXCEED_LIMIT}

# One real-world-shaped reply per failure reason: (code, enhanced, text).
REPLY_FOR = {
    R.USER_UNKNOWN: (550, "5.1.1", "<g@dest.example>: Recipient address rejected: User unknown"),
    R.HOST_UNKNOWN: (550, "5.1.2", "Host or domain name not found. Name service error"),
    R.HAS_MOVED: (551, "5.1.6", "User has moved; please try <g2@dest.example>"),
    R.NOT_ACCEPT: (556, "5.1.10", "Recipient address has null MX"),
    R.MAILBOX_FULL: (552, "5.2.2", "Mailbox full, quota exceeded"),
    R.SUSPEND: (550, "5.2.1", "The email account that you tried to reach is disabled"),
    R.EXCEED_LIMIT: (552, "5.2.3", "Message exceeds the recipient's mailbox size limit"),
    R.MESG_TOO_BIG: (552, "5.3.4", "Message size exceeds fixed maximum message size"),
    R.BLOCKED: (550, "5.7.1", "Service unavailable; Client host [203.0.113.5] blocked "
                "using zen.spamhaus.org"),
    R.SPAM_DETECTED: (550, "5.7.1", "Message rejected as spam by Content Filtering"),
    R.VIRUS_DETECTED: (554, "5.7.1", "The message contains a virus (Eicar-Test-Signature)"),
    R.CONTENT_ERROR: (554, "5.6.0", "Message content rejected: malformed MIME header"),
    R.POLICY_VIOLATION: (550, "5.7.9", "Message rejected by policy: multiple From addresses"),
    R.SECURITY_ERROR: (550, "5.7.26", "Unauthenticated email from example.com is not "
                       "accepted due to domain's DMARC policy"),
    R.REJECTED: (553, "5.7.1", "<app@example.com>: Sender address rejected: not owned by "
                 "user"),
    R.NO_RELAYING: (554, "5.7.1", "<g@dest.example>: Relay access denied"),
    R.EXPIRED: (550, "5.4.7", "Delivery expired (message too old)"),
    R.NETWORK_ERROR: (550, "", "connect to mx.dest.example[192.0.2.9]:25: Connection refused"),
    R.TOO_MANY_CONN: (421, "4.7.0", "Too many concurrent SMTP connections"),
    R.RATE_LIMITED: (450, "4.7.28", "Our system has detected an unusual rate of mail"),
    R.SYSTEM_ERROR: (554, "5.3.0", "Local delivery error: mail system configuration error"),
    R.SYSTEM_FULL: (552, "5.3.1", "Mail system full"),
    R.SYNTAX_ERROR: (500, "5.5.2", "Error: command not recognized"),
    R.ON_HOLD: (450, "", "try it some other time"),
    R.UNDEFINED: (550, "", "computer says no"),
}


def test_every_reason_has_exactly_one_action() -> None:
    assert set(ACTIONS) == set(Reason)  # a dict: one action per reason, none left out
    assert {r for r, a in ACTIONS.items() if a is Action.ADDRESS} == ADDRESS
    assert {r for r, a in ACTIONS.items() if a is Action.MAILBOX} == MAILBOX
    assert {r for r, a in ACTIONS.items() if a is Action.COMPLAINT} == {R.FEEDBACK}
    assert {r for r, a in ACTIONS.items() if a is Action.NONE} == {R.VACATION, R.DELIVERED}
    for reason, action in ACTIONS.items():
        assert kind_for(reason) is {Action.ADDRESS: Kind.HARD, Action.MAILBOX: Kind.SOFT,
                                    Action.SENDER_OR_PATH: Kind.SOFT,
                                    Action.COMPLAINT: Kind.COMPLAINT,
                                    Action.NONE: Kind.AUTO_REPLY}[action]


def test_every_failure_reason_has_a_sample_reply() -> None:
    failures = {r for r, a in ACTIONS.items() if a not in (Action.COMPLAINT, Action.NONE)}
    assert set(REPLY_FOR) == failures


def _dsn(code: int, enhanced: str, text: str) -> bytes:
    status = enhanced or ("5.0.0" if code >= 500 else "4.0.0")
    action = "failed" if code >= 500 else "delayed"
    return textwrap.dedent(f"""\
        From: MAILER-DAEMON@relay.example.com (Mail Delivery System)
        To: app@example.com
        Subject: Undelivered Mail Returned to Sender
        MIME-Version: 1.0
        Content-Type: multipart/report; report-type=delivery-status; boundary="B"

        --B
        Content-Type: text/plain

        Your message could not be delivered.

        --B
        Content-Type: message/delivery-status

        Reporting-MTA: dns; relay.example.com

        Final-Recipient: rfc822; g@dest.example
        Action: {action}
        Status: {status}
        Diagnostic-Code: smtp; {code} {enhanced} {text}

        --B--
        """).encode()


def _plain(code: int, enhanced: str, text: str) -> bytes:
    subject = ("Undelivered Mail Returned to Sender" if code >= 500
               else "Delayed Mail (still being retried)")
    return textwrap.dedent(f"""\
        From: MAILER-DAEMON@relay.example.com (Mail Delivery System)
        To: app@example.com
        Subject: {subject}

        This is the mail system at host relay.example.com.

        I'm sorry to have to inform you that your message could not
        be delivered to one or more recipients.

        <g@dest.example>: host mx.dest.example[192.0.2.9] said: {code} {enhanced} {text}
            (in reply to RCPT TO command)
        """).encode()


@pytest.mark.parametrize("reason", list(REPLY_FOR), ids=str)
def test_same_reason_same_action_synchronously_and_asynchronously(reason: Reason) -> None:
    code, enhanced, text = REPLY_FOR[reason]
    sync = classify_reply(code, enhanced, text)
    assert sync.reason is reason
    final = code >= 500
    assert sync.action is (Action.MAILBOX if not final and ACTIONS[reason] is Action.ADDRESS
                           else ACTIONS[reason])
    for data in (_dsn(code, enhanced, text), _plain(code, enhanced, text)):
        (line,) = parse_bytes(data).recipients
        assert (line.reason, line.action, line.kind) == (sync.reason.value,
                                                        sync.action.value, sync.kind)


@pytest.mark.parametrize("reason", list(REPLY_FOR), ids=str)
def test_the_action_alone_decides_what_happens(reason: Reason) -> None:
    code, enhanced, text = REPLY_FOR[reason]
    v = verdict(enhanced or None, text, final=code >= 500)
    finding = Finding(queue_id="Q", recipient="g@dest.example", kind=str(v.kind),
                      status=v.status, reason=v.reason.value, source="test", action=v.action)
    decision = decide(finding, BounceRules())
    if v.action is Action.ADDRESS:
        assert decision.suppress_scope == "all"
    elif v.action is Action.MAILBOX:
        assert decision.suppress_scope is None and decision.count_soft
    else:
        assert decision.suppress_scope is None and not decision.count_soft
        assert decision.events == (EventType.SENDER_FAULT,)


def test_the_issue_reproduction_is_blocked_soft_and_suppresses_nobody() -> None:
    data = _dsn(550, "5.7.1", "Service unavailable; Client host [203.0.113.5] blocked using "
                "zen.spamhaus.org")
    report = parse_bytes(data)
    assert report.to_json() == {"bounce": True, "recipients": [
        {"address": "g@dest.example", "status": "5.7.1", "kind": "soft", "reason": "blocked"}]}
    assert report.recipients[0].action == Action.SENDER_OR_PATH
