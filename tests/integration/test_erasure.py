"""`smtp-gateway erase` against a running gateway (intake in worker processes): the
address leaves every state file, down to the bytes, and its suppression still
refuses the next RCPT."""

from __future__ import annotations

import json
import smtplib
import sqlite3
import time
from pathlib import Path

import pytest

from gateway.cli import main
from tests.fixtures.gateway import GatewayProcess, write_config
from tests.fixtures.policy import write_policy
from tests.fixtures.sink import Sink

ADDRESS = b"guest@example.net"


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def rcpt(port: int, address: str) -> tuple[int, str]:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.ehlo("app.test")
        s.mail("app@example.com")
        code, text = s.rcpt(address)
        if code == 250:
            s.data(b"Subject: booking\r\n\r\nyour booking\r\n")
        return code, text.decode()


def wait_for_events(state_db: Path, count: int) -> None:
    for _ in range(500):  # bounded: 10 s
        conn = sqlite3.connect(state_db)
        try:
            (found,) = conn.execute("SELECT count(*) FROM events WHERE lower(recipient) = ?",
                                    (ADDRESS.decode(),)).fetchone()
        finally:
            conn.close()
        if found >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"{found} events for the address, expected {count}")


def state_files(data_dir: Path) -> list[Path]:
    return sorted(p for p in data_dir.iterdir()
                  if p.name.split(".")[0] in ("state", "policy", "ratelimits", "bounces"))


def test_an_erased_address_is_gone_from_the_files_and_stays_suppressed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sink = Sink().start()
    write_policy(tmp_path, "consent.yaml", """\
        categories:
          transactional: {basis: contract}
          marketing: {basis: consent}
        """)
    write_policy(tmp_path, "ratelimits.yaml", """\
        limits:
          - name: per-guest
            key: [recipient]
            rate: 100/m
            burst: 100
        """)
    config = str(write_config(tmp_path, sink.port, extra="intake_workers: 2\n"))
    data_dir = tmp_path / "var"
    gw = GatewayProcess(Path(config)).start()
    try:
        assert rcpt(gw.port, "Guest@Example.NET")[0] == 250
        sink.wait_for(1)
        cli(capsys, "consent", "grant", "guest@example.net", "--category", "marketing",
            "-c", config, "--source", "form of guest@example.net")
        cli(capsys, "suppress", "add", "guest@example.net", "--reason", "complaint",
            "-c", config, "--note", "ARF from guest@example.net")
        refused = rcpt(gw.port, "guest@example.net")
        assert refused == (550, "5.7.1 Recipient address is suppressed (complaint)")
        wait_for_events(data_dir / "state.db", 3)  # intake's rejected event is written

        out = cli(capsys, "erase", "guest@example.net", "-c", config, "--by", "dpo", "--json")
        assert "guest" not in out
        report = json.loads(out)
        assert report["checkpointed"] is True
        assert report["changed"]["suppressions"] == 1 and report["changed"]["consent"] == 1
        assert report["changed"]["events"] >= 3  # accepted, delivered, rejected
        assert "ratelimits.table" in {p.name for p in state_files(data_dir)}
        files = state_files(data_dir)
        assert {p.name for p in files} >= {"state.db", "policy.db", "ratelimits.table"}
        for path in files:
            assert ADDRESS not in path.read_bytes().lower(), path.name

        # The suppression holds, under the hash, in every intake process.
        for _ in range(4):
            assert rcpt(gw.port, "GUEST@example.net") == refused
        listing = cli(capsys, "suppress", "list", "-c", config)
        assert listing.startswith(report["token"] + "\tall\tcomplaint")
        audit = cli(capsys, "consent", "show", "guest@example.net", "-c", config)
        assert "granted" not in audit
    finally:
        gw.stop_hard()
        sink.stop()
