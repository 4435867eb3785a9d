"""Envelope.not_before survives the queue file header; files without it still read."""

from __future__ import annotations

from gateway.model import Client, Envelope, QueuedMessage
from gateway.spool.store import decode_header, encode_header


def qm(not_before: float | None) -> QueuedMessage:
    env = Envelope("a@example.com", ("b@example.net",), Client("relay", "127.0.0.1"), 1.0,
                   not_before=not_before)
    return QueuedMessage("01ABC", env, 10)


def test_round_trip() -> None:
    assert decode_header(encode_header(qm(123.5)))[0] == qm(123.5)
    plain = encode_header(qm(None))
    assert b"not_before" not in plain  # unshaped messages' files are unchanged
    assert decode_header(plain)[0] == qm(None)
