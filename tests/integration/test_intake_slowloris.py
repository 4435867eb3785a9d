"""Slowloris: hundreds of idle or byte-at-a-time connections. The per-IP and
total session limits hold (421 4.7.0 at connect), idle ones are cut at the
command timeout and trickling ones at the session timeout, connections that
never start TLS on an implicit-TLS port at the handshake timeout, and other
clients are still served meanwhile.
"""

from __future__ import annotations

import contextlib
import smtplib
import socket
import threading
import time
from pathlib import Path

import pytest

from gateway.intake.settings import Limits
from tests.fixtures import tls
from tests.fixtures.intake import IntakeHarness, relay_listener

LIMITS = Limits(max_sessions=40, max_sessions_per_ip=10, command_timeout=0.8,
                session_timeout=4.0)
PER_IP = "421 4.7.0 Too many connections from your address, try again later"
TOTAL = "421 4.7.0 Too many connections, try again later"


def first_line(sock: socket.socket) -> str:
    data = b""
    while not data.endswith(b"\r\n"):
        try:
            chunk = sock.recv(1024)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data.split(b"\r\n", 1)[0].decode()


def connect(port: int, source: str) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))


def send_one(port: int, source: str) -> bool:
    try:
        with smtplib.SMTP("127.0.0.1", port, source_address=(source, 0), timeout=5) as client:
            client.sendmail("a@example.com", ["b@example.org"], b"Subject: legit\r\n\r\nhi\r\n")
        return True
    except smtplib.SMTPException:
        return False


def trickle(socks: list[socket.socket], lock: threading.Lock, stop: threading.Event) -> None:
    """One byte per connection every 100 ms: never idle, never a whole command."""
    for _ in range(100):  # bounded: 10 s at most
        if stop.wait(0.1):
            return
        with lock:
            current = list(socks)
        for sock in current:
            with contextlib.suppress(OSError):
                sock.send(b"X")


def test_slowloris_limits_hold_and_others_are_served(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    with IntakeHarness(tmp_path, relay_listener(), limits=LIMITS) as gw:
        # 300 connections from one address: 10 get a session (and start trickling at
        # once), the rest get 421 and a close.
        admitted: list[socket.socket] = []
        lock = threading.Lock()
        stop = threading.Event()
        trickler = threading.Thread(target=trickle, args=(admitted, lock, stop))
        trickler.start()
        greetings = []
        for _ in range(300):
            sock = connect(gw.port, "127.0.0.2")
            greetings.append(first_line(sock))
            if greetings[-1].startswith("220 "):
                with lock:
                    admitted.append(sock)
            else:
                sock.close()
        assert len(admitted) == 10
        assert greetings.count(PER_IP) == 290
        idle: list[socket.socket] = []
        try:
            assert send_one(gw.port, "127.0.0.3")  # served while the attack goes on
            # 30 idle connections from three more addresses fill the total limit (40).
            for n in range(3):
                for _ in range(10):
                    sock = connect(gw.port, f"127.0.0.{4 + n}")
                    assert first_line(sock).startswith("220 ")
                    idle.append(sock)
            with connect(gw.port, "127.0.0.3") as full:
                assert first_line(full) == TOTAL
            # The idle ones go at the command timeout, the tricklers at the session timeout.
            started = time.monotonic()
            for sock in idle:
                assert first_line(sock) == "421 4.4.2 Error: timeout exceeded, closing connection"
            assert time.monotonic() - started < 3
            assert send_one(gw.port, "127.0.0.3")
            for sock in admitted:
                assert first_line(sock).startswith("421 4.4.2 ")
            assert time.monotonic() - started < 6
            assert send_one(gw.port, "127.0.0.2")  # the attacker's address is free again
        finally:
            stop.set()
            trickler.join(5)
            for sock in admitted + idle:
                sock.close()
        assert len(gw.stored()) == 3
    # The flood of refused connections is summarized in the log, not written out line by line.
    refusals = [r for r in caplog.records if r.getMessage().startswith("refused ")]
    assert 0 < len(refusals) < 20


def test_connections_that_never_start_tls_on_an_implicit_tls_port(tmp_path: Path) -> None:
    """Until its handshake is done a connection is not a session (not counted in the
    limits); the handshake timeout (the command timeout, at most 30 s) bounds it."""
    certs = tls.make_certs(tmp_path / "certs")
    limits = Limits(max_sessions=20, max_sessions_per_ip=5, command_timeout=0.8)
    listener = relay_listener(tls="implicit", certs=certs)
    with IntakeHarness(tmp_path, listener, limits=limits) as gw:
        silent = [connect(gw.port, "127.0.0.2") for _ in range(200)]
        try:
            context = certs.client_context()
            with smtplib.SMTP_SSL("127.0.0.1", gw.port, context=context, timeout=5,
                                  source_address=("127.0.0.3", 0)) as client:
                client.sendmail("a@example.com", ["b@example.org"], b"Subject: ok\r\n\r\nok\r\n")
            started = time.monotonic()
            for sock in silent:
                assert first_line(sock) == ""  # closed, without a word
            assert time.monotonic() - started < 3
        finally:
            for sock in silent:
                sock.close()
        assert len(gw.stored()) == 1
