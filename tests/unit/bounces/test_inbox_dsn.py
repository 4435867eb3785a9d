"""The SMTP inbox's decisions (which recipients are bounces, mixed transactions) and
when a DSN may be sent (never for null senders, reports, auto-submitted mail)."""

from __future__ import annotations

from pathlib import Path

from gateway.bounces import parse_bytes
from gateway.bounces.dsn import Failure, build_dsn, dsn_allowed
from gateway.bounces.inbox import MIXED_TRANSACTION, BounceInbox
from gateway.bounces.maildir import Maildir
from gateway.model import Client, Envelope, QueuedMessage, Reply

QM = QueuedMessage("01HF7YAT00GHXCJX9Q", Envelope(
    "app@example.com", ("a@example.net",), Client("relay", "127.0.0.1"), 1.0), 10)


def test_inbox_accepts_only_its_domain_on_its_listeners(tmp_path: Path) -> None:
    inbox = BounceInbox("Bounces.Example.com.", ("mx",), Maildir(tmp_path))
    assert inbox.accepts("mx", "b+x@BOUNCES.example.com")
    assert inbox.accepts("mx", "anything@bounces.example.com.")
    assert not inbox.accepts("relay", "b+x@bounces.example.com")  # not on this listener
    assert not inbox.accepts("mx", "b+x@sub.bounces.example.com")
    assert not inbox.accepts("mx", "b+x@example.com")
    assert inbox.check_rcpt("mx", "guest@example.net", ()) is None  # intake goes on
    ok = inbox.check_rcpt("mx", "b+1@bounces.example.com", ())
    assert ok is not None and ok.code == 250
    assert inbox.check_rcpt("mx", "guest@example.net",
                            ("b+1@bounces.example.com",)) == MIXED_TRANSACTION
    assert inbox.check_rcpt("mx", "b+1@bounces.example.com",
                            ("guest@example.net",)) == MIXED_TRANSACTION


def test_dsn_allowed() -> None:
    plain = b"From: a@example.com\r\nSubject: hi\r\n\r\n"
    assert dsn_allowed(QM, plain)
    assert dsn_allowed(QM, b"Auto-Submitted: no\r\n" + plain)
    assert not dsn_allowed(QM, b"Auto-Submitted: auto-replied\r\n" + plain)
    assert not dsn_allowed(QM, b"Content-Type: multipart/report; report-type=delivery-status"
                               b"\r\n" + plain)
    null = QueuedMessage(QM.id, Envelope("", ("a@example.net",), QM.envelope.client, 1.0), 10)
    assert not dsn_allowed(null, plain)


def test_dsn_blocks_parse_back() -> None:
    header = b"From: app@example.com\r\nMessage-ID: <m@example.com>\r\n\r\n"
    msg = build_dsn(QM, header, [
        Failure("a@example.net", Reply(550, "5.1.1", "no such user"), "mx.example.net"),
        Failure("b@example.net", Reply(452, "4.2.2", "mailbox full"), expired=True),
        Failure("c@example.net", Reply(554, "", "go away")),
    ], "gw.example", 2.0)
    data = msg.as_bytes()
    assert msg["Auto-Submitted"] == "auto-replied" and msg["To"] == "app@example.com"
    assert b"Remote-MTA: dns; mx.example.net" in data
    assert b"Final-Recipient: rfc822; b@example.net\nAction: failed\nStatus: 5.2.2" in (
        data.replace(b"\r\n", b"\n"))  # expired: final, so 5.x.x
    report = parse_bytes(data)
    # b: a full mailbox is a mailbox state (soft) even when final; c: a refusal that
    # names no cause says nothing about the address (soft, undefined)
    assert [(r.address, r.status, str(r.kind), r.reason) for r in report.recipients] == [
        ("a@example.net", "5.1.1", "hard", "userunknown"),
        ("b@example.net", "5.2.2", "soft", "mailboxfull"),
        ("c@example.net", "5.0.0", "soft", "undefined")]
