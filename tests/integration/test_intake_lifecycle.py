"""IntakeServer.stop() and reconfigure() (SIGHUP): what running sessions see."""

from __future__ import annotations

import asyncio
import smtplib
import socket
import time
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.config import Config
from gateway.intake.settings import Limits
from gateway.intake.smtpd import IntakeServer
from tests.fixtures import tls
from tests.fixtures.intake import (
    PASSWORD,
    USER,
    IntakeHarness,
    RawClient,
    relay_listener,
    submission_listener,
    users,
)

SHUTTING_DOWN = "421 4.3.2 Service shutting down, closing connection"


def start_transaction(raw: RawClient) -> None:
    raw.greeting()
    raw.command("EHLO app.example")
    raw.command("MAIL FROM:<a@example.com>")
    raw.command("RCPT TO:<b@example.org>")
    assert raw.command("DATA").startswith("354 ")


def test_stop_lets_a_message_in_data_finish(tmp_path: Path) -> None:
    with IntakeHarness(tmp_path, relay_listener()) as gw, \
            RawClient(gw.port) as sending, RawClient(gw.port) as idle:
        assert gw.server is not None
        idle.greeting()
        start_transaction(sending)
        sending.send(b"Subject: x\r\n\r\npart one\r\n")
        stopping = asyncio.run_coroutine_threadsafe(gw.server.stop(), gw.loop)
        assert idle.reply() == SHUTTING_DOWN
        assert idle.closed_by_server()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", gw.port), timeout=2)
        sending.send(b"part two\r\n.\r\n")
        assert sending.reply().startswith("250 2.0.0 Ok: queued as ")
        assert sending.reply() == SHUTTING_DOWN
        assert sending.closed_by_server()
        stopping.result(10)
        [(_, content)] = gw.stored()
        assert content.endswith(b"part one\r\npart two\r\n")


def test_stop_does_not_wait_forever_for_a_stalled_data(tmp_path: Path) -> None:
    with IntakeHarness(tmp_path, relay_listener()) as gw, RawClient(gw.port) as stalled:
        assert gw.server is not None
        gw.server.data_grace = 0.3
        start_transaction(stalled)
        stalled.send(b"Subject: never finished\r\n")
        started = time.monotonic()
        gw.call(gw.server.stop())
        assert time.monotonic() - started < 3
        assert gw.stored() == []
        assert stalled.closed_by_server()
        assert gw.server.session_count == 0


async def _reconfigure(server: IntakeServer, config: Config) -> None:
    server.reconfigure(config)  # on the gateway's loop, as the supervisor would call it


def test_reconfigure_applies_to_new_sessions_only(tmp_path: Path) -> None:
    with IntakeHarness(tmp_path, relay_listener(networks=("10.0.0.0/8",))) as gw, \
            RawClient(gw.port) as before:
        assert gw.server is not None
        before.greeting()
        before.command("EHLO app.example")
        config = replace(gw.config, limits=Limits(max_recipients=1),
                         listeners=(relay_listener(networks=("127.0.0.0/8",)),))
        gw.call(_reconfigure(gw.server, config))
        assert before.command("MAIL FROM:<a@example.com>").startswith("250 ")
        assert before.command("RCPT TO:<b@example.org>") == "554 5.7.1 Relay access denied"
        with smtplib.SMTP("127.0.0.1", gw.port) as after:
            after.ehlo()
            after.mail("a@example.com")
            assert after.rcpt("b@example.org")[0] == 250
            assert after.rcpt("c@example.org") == (452, b"4.5.3 Too many recipients")


def test_reconfigure_with_an_unreadable_certificate_keeps_the_old_one(tmp_path: Path) -> None:
    certs = tls.make_certs(tmp_path / "certs")
    with IntakeHarness(tmp_path, submission_listener(certs), users={}) as gw:
        assert gw.server is not None
        broken = replace(submission_listener(certs), cert_file=tmp_path / "missing.pem")
        config = replace(gw.config, listeners=(broken,), users=users())
        gw.call(_reconfigure(gw.server, config))
        assert gw.server.listener.cert_file == certs.cert_file
        with smtplib.SMTP("127.0.0.1", gw.port) as client:
            client.starttls(context=certs.client_context())
            client.login(USER, PASSWORD)  # the new users apply
