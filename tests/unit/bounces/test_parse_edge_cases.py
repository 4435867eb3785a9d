"""Hostile and broken input: parse() never raises and never invents a bounce."""

from __future__ import annotations

import pytest

from gateway.bounces import DETECTORS, Kind, parse_bytes

BROKEN = {
    "empty": b"",
    "garbage": b"\x00\xff\xfe not a message at all",
    "headers only": b"From: someone@example.net\nSubject: hi\n",
    "report without boundary end": (
        b"From: MAILER-DAEMON@example.org\nMIME-Version: 1.0\n"
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\n\n"
        b"--x\nContent-Type: text/plain\n\nfailed\n--x\nContent-Type: message/delivery-status\n\n"
        b"Reporting-MTA: dns; example.org\n\nFinal-Recipient: rfc822; a@example.net\n"
        b"Action: failed\nStatus: 5.1.1\n"),
    "report with empty status part": (
        b"From: MAILER-DAEMON@example.org\nMIME-Version: 1.0\n"
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\n\n"
        b"--x\nContent-Type: text/plain\n\nfailed\n--x\nContent-Type: message/delivery-status\n\n"
        b"--x--\n"),
    "ses with bad json": (
        b"From: no-reply@sns.amazonaws.com\nSubject: AWS Notification Message\n\n{not json"),
    "huge header": b"From: MAILER-DAEMON@example.org\nSubject: " + b"x" * 200_000 + b"\n\nhi\n",
    "bad charset": (b"From: MAILER-DAEMON@example.org\nSubject: Undeliverable\n"
                    b"Content-Type: text/plain; charset=no-such-charset\n\n"
                    b"Your message could not be delivered to a@example.net.\n"),
}


@pytest.mark.parametrize("data", BROKEN.values(), ids=list(BROKEN))
def test_broken_input_does_not_raise(data: bytes) -> None:
    report = parse_bytes(data)
    assert all(r.kind in Kind for r in report.recipients)


def test_truncated_dsn_still_reports_its_recipient() -> None:
    report = parse_bytes(BROKEN["report without boundary end"])
    assert [(r.address, r.status, r.kind) for r in report.recipients] == [
        ("a@example.net", "5.1.1", Kind.HARD)]


def test_empty_status_part_is_a_report_with_no_recipients() -> None:
    report = parse_bytes(BROKEN["report with empty status part"])
    assert (report.detector, report.recipients, report.is_bounce) == ("dsn", (), False)


def test_bad_charset_is_read_as_best_effort_text() -> None:
    report = parse_bytes(BROKEN["bad charset"])
    assert [r.address for r in report.recipients] == ["a@example.net"]


def test_detectors_are_ordered_and_named() -> None:
    names = [d.name for d in DETECTORS]
    assert len(set(names)) == len(names)
    assert names[:2] == ["arf", "dsn"] and names[-1] == "autoreply"
    assert "dsn" in repr(DETECTORS[1])


def test_large_returned_original_is_cut_off_not_parsed_whole() -> None:
    from pathlib import Path

    sample = Path(__file__).resolve().parents[2] / "data" / "bounces" / "postfix_01.eml"
    text = sample.read_text(encoding="utf-8").replace(
        "Dear customer,", "Dear customer,\n" + ("A" * 76 + "\n") * 50_000)  # ~3.8 MB body
    report = parse_bytes(text.encode())
    assert [(r.address, r.status, r.reason) for r in report.recipients] == [
        ("alice@example.net", "5.1.1", "userunknown")]
