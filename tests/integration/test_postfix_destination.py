"""Delivery to a real Postfix: messages land in its Maildir, byte for byte.

Postfix is the peer MTA the gateway will meet most in the wild; it offers
PIPELINING, so this also runs the pipelined path against a server that is not
ours. The instance (tests/fixtures/postfix.py) accepts mail for dest.test only.
"""

from __future__ import annotations

import asyncio
import email
from collections.abc import AsyncIterator

import pytest

from gateway.clock import ManualClock
from gateway.delivery.deliver import Delivery
from gateway.delivery.settings import DeliveryConfig
from gateway.model import (
    Attempt,
    Client,
    DeliveryJob,
    Envelope,
    QueuedMessage,
    Route,
    Smarthost,
)
from tests.fixtures.postfix import PostfixServer, postfix_server

__all__ = ["postfix_server"]  # the fixture, imported for pytest


def message(subject: str, body: str) -> bytes:
    return (f"From: app@src.test\r\nTo: user@dest.test\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject}@src.test>\r\n\r\n{body}").encode()


def job(port: int, *recipients: str, sender: str = "app@src.test") -> DeliveryJob:
    env = Envelope(sender, recipients, Client("relay", "127.0.0.1"), 0.0)
    route = Route("postfix", "smarthost",
                  smarthosts=(Smarthost("postfix", "127.0.0.1", port, tls="none"),))
    return DeliveryJob(QueuedMessage("Q1", env, 0), recipients, route, "dest.test", 1)


def codes(attempt: Attempt) -> list[int]:
    return [r.reply.code for r in attempt.results]


@pytest.fixture
async def delivery() -> AsyncIterator[Delivery]:
    d = Delivery(DeliveryConfig("gw.test", connect_timeout=2, command_timeout=10,
                                data_timeout=10), ManualClock())
    yield d
    await d.close()


def body_of(raw: bytes) -> bytes:
    """The body as stored (Postfix's Maildir uses LF line endings)."""
    return raw.split(b"\n\n", 1)[1]


async def test_messages_reach_the_maildir(postfix_server: PostfixServer,
                                          delivery: Delivery) -> None:
    before = len(postfix_server.messages())
    body = ".starts with a dot\r\n..two dots\r\n.\r\nlast line\r\n"
    attempt = await delivery.deliver(job(postfix_server.port, "user@dest.test"),
                                     message("dots", body))
    assert codes(attempt) == [250]
    assert attempt.host == "postfix"
    assert attempt.results[0].reply.enhanced == "2.0.0"
    found = postfix_server.wait_for(before + 1)
    (raw,) = [m for m in found if b"Subject: dots" in m]
    # Dot-stuffing on the wire, undone by Postfix: the body arrives unchanged.
    assert body_of(raw) == body.replace("\r\n", "\n").encode()
    parsed = email.message_from_bytes(raw)
    assert parsed["Delivered-To"] == "user@dest.test"
    assert parsed["Return-Path"] == "<app@src.test>"


async def test_several_messages_and_mixed_recipients(postfix_server: PostfixServer,
                                                     delivery: Delivery) -> None:
    before = len(postfix_server.messages())
    jobs = [job(postfix_server.port, f"u{i}@dest.test", "x@elsewhere.test") for i in range(5)]
    attempts = await asyncio.gather(*(delivery.deliver(j, message(f"m{i}", "hello\r\n"))
                                      for i, j in enumerate(jobs)))
    for attempt in attempts:
        # Postfix relays nothing for strangers: that recipient bounces, the other is delivered.
        assert [r.state for r in attempt.results] == ["delivered", "bounced"]
        assert attempt.results[1].reply.enhanced == "5.7.1"  # Relay access denied
    found = postfix_server.wait_for(before + 5)
    subjects = {email.message_from_bytes(m)["Subject"] for m in found}
    assert {f"m{i}" for i in range(5)} <= subjects


async def test_null_sender(postfix_server: PostfixServer, delivery: Delivery) -> None:
    before = len(postfix_server.messages())
    attempt = await delivery.deliver(job(postfix_server.port, "user@dest.test", sender=""),
                                     message("bounce", "a DSN\r\n"))
    assert codes(attempt) == [250]
    found = postfix_server.wait_for(before + 1)
    (raw,) = [m for m in found if b"Subject: bounce" in m]
    assert email.message_from_bytes(raw)["Return-Path"] == "<>"
