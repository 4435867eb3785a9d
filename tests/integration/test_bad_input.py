"""Bad input at every door (issue 20): `check-config` refuses what `serve` refuses, with
the same lines; `serve` with a broken piece exits 1 within seconds; nothing prints a
traceback.

`serve` runs as a real process (`python -m gateway serve`); `check-config` too, so the
two are compared as an operator sees them. Each broken input is one case below: the
issue's table first, then more of the kinds operators write.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.cli.main import main
from tests.fixtures.gateway import write_config
from tests.fixtures.net import free_port, wait_listening
from tests.fixtures.tls import make_certs

START_LIMIT = 10.0  # seconds a refused or failed start may take, all of it


@dataclass(frozen=True)
class Run:
    status: int
    stderr: str
    seconds: float


def run(verb: str, config: Path, *, cwd: Path | None = None,
        argv0: list[str] | None = None) -> Run:
    """`smtp-gateway VERB -c CONFIG` as a process; a bounded wait, never a sleep."""
    started = time.monotonic()
    args = (argv0 or [sys.executable, "-m", "gateway"]) + [verb, "-c", str(config)]
    done = subprocess.run(args, capture_output=True, timeout=60, cwd=cwd or config.parent,
                          env=dict(os.environ, PYTHONUNBUFFERED="1"))
    return Run(done.returncode, done.stderr.decode(errors="replace"),
               time.monotonic() - started)


def check_config(config: Path) -> Run:
    """`check-config` in this process (main() with stderr captured): the same code as
    the command, without a second interpreter start for each case."""
    err, out = io.StringIO(), io.StringIO()
    started = time.monotonic()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        status = main(["check-config", "-c", str(config)])
    return Run(status, err.getvalue(), time.monotonic() - started)


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


# -- the broken inputs ---------------------------------------------------------------------

def _secret(path: Path, data: bytes, mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)


def _add(config: Path, text: str) -> None:
    config.write_text(config.read_text() + textwrap.dedent(text))


def _webhook(config: Path, data: bytes) -> None:
    _secret(config.parent / "hook.secret", data)
    _add(config, """\
        webhooks:
          - name: app
            url: http://127.0.0.1:9/hook
            secret_file: hook.secret
        """)


def _tls_listener(config: Path, cert: Path, key: Path) -> None:
    _add(config, f"""\
        listeners:
          - name: relay
            kind: relay
            address: 127.0.0.1
            port: {free_port()}
            networks: [127.0.0.0/8]
            tls: starttls
            cert: {cert}
            key: {key}
        """)
    text = config.read_text()
    # The first `listeners:` of write_config() goes: this one replaces it.
    head, _, rest = text.partition("listeners:\n")
    _, _, tail = rest.partition("delivery:\n")
    config.write_text(head + "delivery:\n" + tail)


def erasure_key_too_short(config: Path) -> None:
    _secret(config.parent / "var" / "erasure.key", os.urandom(10))


def webhook_secret_raw_bytes(config: Path) -> None:
    _webhook(config, b"\xff\xfe" + os.urandom(30))


def config_not_text(config: Path) -> None:
    config.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))


def listener_certificate_not_a_certificate(config: Path) -> None:
    certs = make_certs(config.parent)
    bogus = config.parent / "bogus.pem"
    bogus.write_text("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n")
    _tls_listener(config, bogus, certs.key_file)


def data_dir_is_a_file(config: Path) -> None:
    (config.parent / "var").write_text("not a directory\n")


def two_listeners_on_one_port(config: Path) -> None:
    port = free_port()
    text = config.read_text().replace("listeners:\n", textwrap.dedent(f"""\
        listeners:
          - name: first
            kind: relay
            address: 127.0.0.1
            port: {port}
            networks: [127.0.0.0/8]
          - name: second
            kind: relay
            address: 0.0.0.0
            port: {port}
            networks: [127.0.0.0/8]
        """), 1)
    config.write_text(text)


def admin_on_a_listener_port(config: Path) -> None:
    port = int(config.read_text().split("port: ")[1].split()[0])
    _add(config, f"admin:\n  port: {port}\n")


def tls_key_of_another_certificate(config: Path) -> None:
    one, two = make_certs(config.parent / "a"), make_certs(config.parent / "b")
    _tls_listener(config, one.cert_file, two.key_file)


def erasure_key_readable_by_others(config: Path) -> None:
    _secret(config.parent / "var" / "erasure.key", os.urandom(32).hex().encode(), 0o644)


def webhook_secret_readable_by_others(config: Path) -> None:
    _webhook(config, b"a-webhook-secret-of-some-length\n")
    (config.parent / "hook.secret").chmod(0o644)


def webhook_secret_is_a_fifo(config: Path) -> None:
    _add(config, "webhooks:\n  - {name: app, url: 'http://127.0.0.1:9/', secret_file: fifo}\n")
    os.mkfifo(config.parent / "fifo", 0o600)


def config_is_a_list(config: Path) -> None:
    config.write_text("- hostname: gw.test\n- listeners: []\n")


def listeners_is_a_mapping(config: Path) -> None:
    config.write_text(config.read_text().replace("listeners:\n", "listeners:\n  x: 1\nx:\n", 1))


def config_with_a_bad_timestamp(config: Path) -> None:
    _add(config, "node_name: 2024-13-45\n")


def config_with_a_python_tag(config: Path) -> None:
    _add(config, "hostname: !!python/object:os.system echo\n")


def policy_file_not_text(config: Path) -> None:
    _secret(config.parent / "policies" / "ratelimits.yaml", b"limits:\n  - \xc3\x28\n")


def policy_file_type_confused(config: Path) -> None:
    _secret(config.parent / "policies" / "consent.yaml", b"categories: [a, b]\n")


def duration_too_large(config: Path) -> None:
    _add(config, "retention:\n  events: " + "9" * 400 + "\n")


def state_dsn_bad_port(config: Path) -> None:
    _add(config, "state: postgresql://gw:pw@db.example:notaport/gateway\n")


def tracking_key_short(config: Path) -> None:
    _secret(config.parent / "tracking.key", b"short")
    _add(config, "tracking:\n  url: https://t.example\n  key_file: tracking.key\n  port: 0\n")


def api_keys_file_garbage(config: Path) -> None:
    _secret(config.parent / "api_keys.yaml", b"keys: {a: [1, 2]}\n")
    _add(config, "api:\n  port: 0\n")


def state_db_is_a_directory(config: Path) -> None:
    (config.parent / "var" / "state.db").mkdir(parents=True)


def spool_is_a_file(config: Path) -> None:
    (config.parent / "var").mkdir()
    (config.parent / "var" / "spool").write_text("")


# case → (how to break the files, what the one line says)
CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    # the table
    "erasure-key-too-short": (erasure_key_too_short, "at least 32 bytes are needed"),
    "webhook-secret-raw-bytes": (webhook_secret_raw_bytes, "must be text (UTF-8)"),
    "config-not-text": (config_not_text, "not UTF-8 text"),
    "listener-cert-not-a-cert": (listener_certificate_not_a_certificate,
                                 "is not a PEM certificate"),
    "data-dir-is-a-file": (data_dir_is_a_file, "is not a directory"),
    "two-listeners-one-port": (two_listeners_on_one_port, "both use 0.0.0.0:"),
    # more of the same kinds
    "admin-on-a-listener-port": (admin_on_a_listener_port, "the admin listener and listener"),
    "tls-key-of-another-cert": (tls_key_of_another_certificate,
                                "the key does not match the certificate"),
    "erasure-key-open": (erasure_key_readable_by_others, "readable by other users"),
    "webhook-secret-open": (webhook_secret_readable_by_others, "readable by other users"),
    "webhook-secret-fifo": (webhook_secret_is_a_fifo, "not a regular file"),
    "config-is-a-list": (config_is_a_list, "the file must be a mapping of keys"),
    "listeners-is-a-mapping": (listeners_is_a_mapping, "'listeners' must be a list"),
    "state-db-is-a-directory": (state_db_is_a_directory, "state.db' is not a regular file"),
    "spool-is-a-file": (spool_is_a_file, "spool' is not a directory"),
    "bad-timestamp": (config_with_a_bad_timestamp, "'2024-13-45' cannot be read"),
    "python-tag": (config_with_a_python_tag, "the tag !!python/object:os.system is not allowed"),
    "policy-not-text": (policy_file_not_text, "ratelimits.yaml"),
    "policy-type-confused": (policy_file_type_confused, "consent.yaml:1:"),
    "duration-too-large": (duration_too_large, "a duration must be at most 100 years"),
    "state-dsn-bad-port": (state_dsn_bad_port, "its port is not a number"),
    "tracking-key-short": (tracking_key_short, "at least 32 bytes are needed"),
    "api-keys-garbage": (api_keys_file_garbage, "api_keys.yaml:1:"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_check_config_refuses_what_serve_refuses_with_the_same_lines(
        tmp_path: Path, case: str) -> None:
    breaks, says = CASES[case]
    config = write_config(tmp_path, 9)
    breaks(config)
    check = check_config(config)
    assert check.status == 1, check.stderr
    assert "Traceback" not in check.stderr
    assert says in check.stderr, check.stderr
    for line in lines(check.stderr):  # file[:line:col]: what is wrong
        assert line.startswith((str(tmp_path), "config.yaml")), line
    serve = run("serve", config)
    assert serve.status == 1, serve.stderr
    assert serve.seconds < START_LIMIT
    assert "Traceback" not in serve.stderr
    assert lines(check.stderr) == lines(serve.stderr)


def test_an_erasure_key_made_as_random_bytes_works_with_both_commands(tmp_path: Path) -> None:
    """`head -c 32 /dev/urandom > erasure.key` (raw bytes) is a key, like keygen's hex."""
    config = write_config(tmp_path, 9)
    _secret(tmp_path / "var" / "erasure.key", os.urandom(32))
    check = check_config(config)
    assert check.status == 0, check.stderr
    port = int(config.read_text().split("port: ")[1].split()[0])
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "-c", str(config)],
                                cwd=tmp_path, stderr=out)
    try:
        wait_listening(port, timeout=30)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Traceback" not in log.read_text()


def test_keygen_writes_what_every_key_and_secret_file_accepts(tmp_path: Path) -> None:
    """One file from `smtp-gateway keygen` serves as the erasure key, the tracking key
    and a webhook secret; check-config and serve both accept it."""
    for name in ("var/erasure.key", "tracking.key", "hook.secret"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        done = subprocess.run([sys.executable, "-m", "gateway", "keygen", str(tmp_path / name)],
                              capture_output=True, timeout=30)
        assert done.returncode == 0, done.stderr
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o600
    again = subprocess.run([sys.executable, "-m", "gateway", "keygen",
                            str(tmp_path / "hook.secret")], capture_output=True, timeout=30)
    assert again.returncode == 1 and b"exists" in again.stderr
    config = write_config(tmp_path, 9)
    _add(config, """\
        tracking:
          url: https://t.example
          key_file: tracking.key
          port: 0
        webhooks:
          - {name: app, url: 'http://127.0.0.1:9/', secret_file: hook.secret}
        """)
    assert check_config(config).status == 0


# -- a start that fails after the checks: every stage exits, fast -----------------------------

def _occupy(port: int) -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    sock.listen()
    return sock


def state_store_is_not_a_database(config: Path) -> None:
    (config.parent / "var").mkdir()
    (config.parent / "var" / "state.db").write_bytes(b"this is not an SQLite file\n" * 100)


def spool_queue_is_a_file(config: Path) -> None:
    (config.parent / "var" / "spool").mkdir(parents=True)
    (config.parent / "var" / "spool" / "deferred").write_text("")


def erasure_key_cannot_be_made(config: Path) -> None:
    # The key is made after the state store opened (its thread runs): the start that
    # hung for ever in the issue. /proc refuses the directory.
    _add(config, "retention:\n  erasure_key_file: /proc/no-such-dir/erasure.key\n")


STAGES: dict[str, Callable[[Path], None]] = {
    "state-store": state_store_is_not_a_database,
    "spool": spool_queue_is_a_file,
    "keys": erasure_key_cannot_be_made,
}


@pytest.mark.parametrize("stage", list(STAGES))
def test_a_start_that_fails_at_a_stage_exits_1_within_seconds(tmp_path: Path,
                                                              stage: str) -> None:
    config = write_config(tmp_path, 9)
    STAGES[stage](config)
    result = run("serve", config)
    assert result.status == 1, result.stderr
    assert result.seconds < START_LIMIT, result.stderr
    assert "cannot start" in result.stderr or stage == "keys"
    assert check_config(config).status == 0  # what a start finds, not the files' form
    assert "threads still running" not in result.stderr  # closed, not abandoned


@pytest.mark.parametrize("workers", [1, 2], ids=["listener", "listener-with-workers"])
def test_a_port_in_use_exits_1_within_seconds(tmp_path: Path, workers: int) -> None:
    config = write_config(tmp_path, 9, extra=f"intake_workers: {workers}\n")
    port = int(config.read_text().split("port: ")[1].split()[0])
    with _occupy(port):
        assert check_config(config).status == 0  # binding is serve's alone
        result = run("serve", config)
    assert result.status == 1 and result.seconds < START_LIMIT, result.stderr
    assert "cannot start" in result.stderr and "address already in use" in result.stderr.lower()
    assert "Traceback" not in result.stderr


def test_an_admin_port_in_use_exits_1_within_seconds(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, 9, extra=f"admin:\n  port: {port}\n")
    with _occupy(port):
        result = run("serve", config)
    assert result.status == 1 and result.seconds < START_LIMIT, result.stderr
    assert "cannot start" in result.stderr and "Traceback" not in result.stderr


def test_workers_that_die_at_start_end_the_start_within_seconds(tmp_path: Path) -> None:
    """Each intake worker runs `python -m gateway` from the master's directory; there, a
    `gateway` package that exits at once stands for a worker that cannot start. The
    master (started with the real package) must not wait its 30 s for them."""
    fake = tmp_path / "run" / "gateway"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "__main__.py").write_text("raise SystemExit(3)\n")
    config = write_config(tmp_path, 9, extra="intake_workers: 2\n")
    repo = str(Path(__file__).resolve().parents[2])
    master = [sys.executable, "-c",
              f"import sys; sys.path[0] = {repo!r}; from gateway.cli.main import main; "
              "sys.exit(main(sys.argv[1:]))"]
    result = run("serve", config, cwd=tmp_path / "run", argv0=master)
    assert result.status == 1, result.stderr
    assert result.seconds < START_LIMIT, result.stderr
    assert "exited with 3 before it listened" in result.stderr
    assert "Traceback" not in result.stderr
