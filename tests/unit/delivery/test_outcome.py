"""What a transaction's replies mean per recipient and for the host (Postfix smtp_trouble)."""

from __future__ import annotations

import pytest

from gateway.delivery.outcome import HostOutcome, classify, host_failed
from gateway.delivery.smtp_client import TransactionReplies
from gateway.model import Reply

OK = Reply(250, "2.1.5", "OK")
GO = Reply(354, "", "go ahead")
QUEUED = Reply(250, "2.0.0", "queued")
LATER = Reply(450, "4.2.1", "try later")
NOUSER = Reply(550, "5.1.1", "no such user")
BUSY = Reply(451, "4.3.0", "busy")
CLOSING = Reply(421, "4.7.0", "too many connections, closing")
REJECT = Reply(554, "5.7.1", "spam")
RCPTS = ("a@x.test", "b@x.test", "c@x.test")


def summary(outcome: HostOutcome) -> tuple[bool, dict[str, int], dict[str, int]]:
    return (outcome.host_ok, {r.recipient: r.reply.code for r in outcome.done},
            {r.recipient: r.reply.code for r in outcome.retry})


CASES = [
    ("all delivered", TransactionReplies(OK, (OK, OK, OK), GO, QUEUED),
     (True, {"a@x.test": 250, "b@x.test": 250, "c@x.test": 250}, {})),
    ("mixed 250/450/550: the 450 stands as a deferral",
     TransactionReplies(OK, (OK, LATER, NOUSER), GO, QUEUED),
     (True, {"a@x.test": 250, "b@x.test": 450, "c@x.test": 550}, {})),
    ("every RCPT 5xx: the host works", TransactionReplies(OK, (NOUSER, NOUSER, NOUSER), REJECT),
     (True, {"a@x.test": 550, "b@x.test": 550, "c@x.test": 550}, {})),
    ("every RCPT 4xx: all move on, mailbox replies do not fail the host",
     TransactionReplies(OK, (LATER, LATER, LATER), REJECT),
     (True, {}, {"a@x.test": 450, "b@x.test": 450, "c@x.test": 450})),
    ("RCPT 421: the host failed, everyone moves on",
     TransactionReplies(OK, (CLOSING, CLOSING, CLOSING)),
     (False, {}, {"a@x.test": 421, "b@x.test": 421, "c@x.test": 421})),
    ("4xx and 5xx, none accepted: 5xx final, 4xx moves on",
     TransactionReplies(OK, (NOUSER, LATER, LATER)),
     (True, {"a@x.test": 550}, {"b@x.test": 450, "c@x.test": 450})),
    ("MAIL 4xx: everyone moves on", TransactionReplies(BUSY, (BUSY, BUSY, BUSY)),
     (False, {}, {"a@x.test": 451, "b@x.test": 451, "c@x.test": 451})),
    ("MAIL 5xx: everyone bounces, the host works", TransactionReplies(REJECT, (REJECT,) * 3),
     (True, {"a@x.test": 554, "b@x.test": 554, "c@x.test": 554}, {})),
    ("DATA 4xx: accepted and 4xx recipients move on, 5xx stay",
     TransactionReplies(OK, (OK, LATER, NOUSER), BUSY),
     (False, {"c@x.test": 550}, {"a@x.test": 451, "b@x.test": 450})),
    ("final dot 4xx: the host failed", TransactionReplies(OK, (OK, OK, OK), GO, BUSY),
     (False, {}, {"a@x.test": 451, "b@x.test": 451, "c@x.test": 451})),
    ("final dot 5xx: accepted recipients bounce",
     TransactionReplies(OK, (OK, OK, NOUSER), GO, REJECT),
     (True, {"a@x.test": 554, "b@x.test": 554, "c@x.test": 550}, {})),
]


@pytest.mark.parametrize(("replies", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_classify(replies: TransactionReplies,
                  expected: tuple[bool, dict[str, int], dict[str, int]]) -> None:
    assert summary(classify(RCPTS, replies)) == expected


def test_done_and_retry_keep_the_remote_reply() -> None:
    outcome = classify(RCPTS, TransactionReplies(OK, (OK, LATER, NOUSER), GO, QUEUED))
    assert {r.recipient: r.reply for r in outcome.done} == {
        "a@x.test": QUEUED, "b@x.test": LATER, "c@x.test": NOUSER}


def test_host_failed_moves_everyone_on() -> None:
    reply = Reply(451, "4.4.1", "connection refused")
    outcome = host_failed(RCPTS, reply)
    assert not outcome.host_ok and not outcome.done
    assert [(r.recipient, r.reply) for r in outcome.retry] == [(r, reply) for r in RCPTS]
