"""SIGHUP with a broken file (issue 20): the running configuration stays, the log says
what `check-config` says about the same file, and the gateway keeps relaying.

One real `serve` process takes a series of broken edits, each followed by SIGHUP:
config.yaml that is not text or has the wrong shape, a webhook secret of raw bytes or
open to other users, a DKIM key that is not a key, a policy file that is not text.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import smtplib
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

from gateway.cli.main import main
from tests.fixtures.dkim import KeySet, dkim_section
from tests.fixtures.gateway import GatewayProcess, write_config
from tests.fixtures.policy import write_policy
from tests.fixtures.sink import Sink

HOOK = textwrap.dedent("""\
    webhooks:
      - name: app
        url: http://127.0.0.1:9/hook
        secret_file: hook.secret
    """)


def wait_for(predicate: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def check_config_lines(config: Path) -> list[str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        assert main(["check-config", "-c", str(config)]) == 1
    return [line for line in err.getvalue().splitlines() if line.strip()]


def test_sighup_with_each_broken_file_keeps_the_running_configuration(tmp_path: Path) -> None:
    sink = Sink().start()
    keys = KeySet(tmp_path / "keys")
    key = keys.add("example.com", "s1", "ed25519")
    secret = tmp_path / "hook.secret"
    secret.write_text("a-webhook-secret-of-some-length\n")
    secret.chmod(0o600)
    suppression = write_policy(tmp_path, "suppression.yaml",
                               "entries:\n  - address: blocked@example.net\n")
    config = write_config(tmp_path, sink.port, extra=dkim_section(keys, ["s1"]) + HOOK)
    good = {p: p.read_bytes() for p in (config, secret, key.path, suppression)}
    edits: list[tuple[str, Path, bytes, int]] = [
        ("config-not-text", config, b"\x89PNG\r\n\x1a\n\xff\xfe", 0o644),
        ("config-a-list", config, b"- hostname: x\n", 0o644),
        ("listeners-a-mapping", config,
         good[config].replace(b"listeners:\n", b"listeners: {a: 1}\nx:\n", 1), 0o644),
        ("secret-raw-bytes", secret, b"\xff\xfe" + os.urandom(30), 0o600),
        ("secret-open", secret, good[secret], 0o644),
        ("dkim-key-garbage", key.path, b"-----BEGIN PRIVATE KEY-----\nAAAA\n", 0o600),
        ("policy-not-text", suppression, b"entries:\n  - address: \xc3\x28\n", 0o644),
    ]
    gw = GatewayProcess(config).start()
    try:
        for n, (name, path, data, mode) in enumerate(edits, 1):
            path.write_bytes(data)
            path.chmod(mode)
            expected = check_config_lines(config)
            gw.signal(signal.SIGHUP)
            wait_for(lambda n=n: gw.output().count("refused") >= n)
            out = gw.output()
            for line in expected:  # the same lines check-config prints
                assert line in out, (name, line, out[-2000:])
            assert "Traceback" not in out, name
            assert gw.proc is not None and gw.proc.poll() is None, name
            path.write_bytes(good[path])
            path.chmod(0o600 if path in (secret, key.path) else 0o644)
        # Still relaying, with the configuration it started with: signed, policy in force.
        with smtplib.SMTP("127.0.0.1", gw.port, timeout=10) as s:
            refused = s.sendmail("app@example.com", ["to@example.net"],
                                 "From: app@example.com\r\nSubject: t\r\n\r\nhello\r\n")
            assert refused == {}
            try:
                s.sendmail("app@example.com", ["blocked@example.net"], "Subject: t\r\n\r\nx\r\n")
                raise AssertionError("the suppression was not in force")
            except smtplib.SMTPRecipientsRefused:
                pass
        wait_for(lambda: "to@example.net" in sink.recipients())
        gw.signal(signal.SIGTERM)
        assert gw.wait(timeout=30) == 0
    finally:
        gw.stop_hard()
        sink.stop()
