from __future__ import annotations

import subprocess
import sys

from gateway.intake.passwords import verify_password


def test_passwd_prints_a_hash_that_verifies() -> None:
    run = subprocess.run([sys.executable, "-m", "gateway", "passwd", "booking-app"],
                         input="s3cret!\n", capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    user, _, hashed = run.stdout.strip().partition(":")
    assert user == "booking-app"
    assert hashed.startswith("scrypt$") and "s3cret" not in hashed
    assert verify_password("s3cret!", hashed)


def test_passwd_refuses_an_empty_password() -> None:
    run = subprocess.run([sys.executable, "-m", "gateway", "passwd"], input="\n",
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and "empty password" in run.stderr
