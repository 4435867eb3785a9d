"""Private keys: the gateway refuses to start with a key others can read, and
never writes key material to its log."""

from __future__ import annotations

import signal
import smtplib
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.dkim import KeySet, dkim_section
from tests.fixtures.gateway import GatewayProcess, write_config
from tests.fixtures.sink import Sink


def test_serve_refuses_to_start_with_a_group_or_world_readable_key(tmp_path: Path) -> None:
    keys = KeySet(tmp_path / "keys")
    key = keys.add("example.com", "s1", "ed25519")
    config = write_config(tmp_path, 9, extra=dkim_section(keys, ["s1"]))
    for mode in (0o644, 0o640, 0o604):
        key.path.chmod(mode)
        done = subprocess.run([sys.executable, "-m", "gateway", "serve", "-c", str(config)],
                              capture_output=True, timeout=60, cwd=tmp_path)
        assert done.returncode == 1
        line = next(x for x in done.stderr.decode().splitlines() if "DKIM key" in x)
        # file:line:col of the selector, the file, its mode and the fix.
        assert line.startswith(f"{config}:")
        assert line.endswith(f"DKIM key '{key.path}' is open to other users (mode {mode:04o}): "
                             "chmod 600 it")
        assert key.key.public_key not in done.stderr.decode()
    key.path.chmod(0o600)
    done = subprocess.run([sys.executable, "-m", "gateway", "check-config", "-c", str(config)],
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_key_material_never_reaches_the_log(tmp_path: Path) -> None:
    keys = KeySet(tmp_path / "keys")
    rsa_key = keys.add("example.com", "s1", "rsa")
    ed_key = keys.add("example.com", "s2", "ed25519")
    sink = Sink().start()
    config = write_config(tmp_path, sink.port, extra=dkim_section(
        keys, ["s1", "s2"], dual_sign=True) + "log_level: debug\n")
    gateway = GatewayProcess(config).start()
    try:
        with smtplib.SMTP("127.0.0.1", gateway.port, timeout=30) as client:
            client.sendmail("app@example.com", ["guest@example.net"],
                            b"From: app@example.com\r\nSubject: hi\r\n\r\nbody\r\n")
            # and one the signer cannot parse, so its failure path logs too: signed by the
            # app with simple canonicalization, so cleanup keeps its `Subject :` (451)
            with pytest.raises(smtplib.SMTPDataError):
                client.sendmail("app@example.com", ["guest@example.net"],
                                b"DKIM-Signature: v=1; c=simple/simple; d=app.example; s=a;"
                                b" h=from; bh=x; b=x\r\nFrom: app@example.com\r\n"
                                b"Subject : hi\r\n\r\nbody\r\n")
        sink.wait_for(1)
        gateway.signal(signal.SIGHUP)  # a reload reads the keys again
        gateway.signal(signal.SIGTERM)
        assert gateway.wait() == 0
    finally:
        gateway.stop_hard()
        sink.stop()
    log = gateway.output()
    assert "DKIM: cannot parse the header" in log  # the log was written at all
    secrets = [line for key in (rsa_key, ed_key)
               for line in key.path.read_text().splitlines() if "-----" not in line]
    secrets += [rsa_key.key.material.decode().splitlines()[1], ed_key.key.material.decode()]
    for secret in secrets:
        assert secret not in log
    assert "PRIVATE KEY" not in log
