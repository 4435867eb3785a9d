"""header_tags(): the correlation header values intake records for traces."""

from __future__ import annotations

from gateway.intake.accept import header_tags


def test_first_value_unfolded_case_insensitive() -> None:
    msg = (b"Subject: hi\r\nx-BOOKING-id:  B-1\r\n\tpart two\r\nX-Booking-Id: second\r\n"
           b"X-Tenant: t1\r\n\r\nX-Booking-Id: in the body\r\n")
    assert header_tags(msg, ("x-booking-id", "x-tenant")) == (
        ("x-booking-id", "B-1 part two"), ("x-tenant", "t1"))


def test_only_the_header_section_counts() -> None:
    assert header_tags(b"Subject: x\r\n\r\nX-Booking-Id: B-2\r\n", ("x-booking-id",)) == ()
    assert header_tags(b"Subject: x\r\nX-Booking-Idx: no\r\n\r\n", ("x-booking-id",)) == ()


def test_first_line_empty_values_and_bounds() -> None:
    assert header_tags(b"X-Booking-Id: B-3\r\n\r\n", ("x-booking-id",)) == (
        ("x-booking-id", "B-3"),)
    assert header_tags(b"X-Booking-Id:   \r\n\r\n", ("x-booking-id",)) == ()
    long = header_tags(b"X-Booking-Id: " + b"x" * 5000 + b"\r\n\r\n", ("x-booking-id",))
    assert long == (("x-booking-id", "x" * 200),)
    assert header_tags(b"X-Booking-Id: \xff\xfe\r\n\r\n", ("x-booking-id",)) == (
        ("x-booking-id", "\ufffd\ufffd"),)
