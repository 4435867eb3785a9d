"""Log output of a real run (`smtp-gateway serve` as a subprocess): one structured line
per event with its queue id, never a message body, addresses redacted by config."""

from __future__ import annotations

import json
import re
import signal
import smtplib
import stat
from pathlib import Path

from tests.fixtures.gateway import GatewayProcess, write_config
from tests.fixtures.sink import Sink

BODY_MARKER = "secret-body-text-4711"
MESSAGE = (f"From: app@example.com\r\nTo: guest@example.net\r\nSubject: Booking\r\n\r\n"
           f"{BODY_MARKER}\r\n")


def run_traffic(tmp_path: Path, logging_section: str, workers: int = 1) -> tuple[str, str]:
    """Send one message to a delivered and a bounced recipient; return (log, queue id)."""
    sink = Sink().start()
    sink.replies["gone@example.net"] = "550 5.1.1 <gone@example.net>: no such user"
    config = write_config(tmp_path, sink.port,
                          extra=f"intake_workers: {workers}\n{logging_section}")
    gw = GatewayProcess(config).start()
    try:
        with smtplib.SMTP("127.0.0.1", gw.port, timeout=10) as s:
            code, text = s.ehlo("app.test")
            s.mail("app@example.com")
            assert s.rcpt("guest@example.net")[0] == 250
            assert s.rcpt("gone@example.net")[0] == 250
            code, text = s.data(MESSAGE.encode())
            assert code == 250
        queue_id = re.search(r"queued as (\S+)", text.decode())
        assert queue_id is not None
        sink.wait_for(1)
        gw.signal(signal.SIGTERM)
        assert gw.wait() == 0
        return gw.output(), queue_id.group(1)
    finally:
        gw.stop_hard()
        sink.stop()


def test_json_lines_per_event_with_partial_redaction(tmp_path: Path) -> None:
    log, queue_id = run_traffic(
        tmp_path, "logging: {format: json, redact_addresses: partial}\n", workers=2)
    records = [json.loads(line) for line in log.splitlines()]  # every line is JSON
    events = [r for r in records if r["logger"] == "gateway.events"]
    mine = {(r["event"], r["recipient"]) for r in events if r["queue_id"] == queue_id}
    assert mine == {("accepted", "g***@example.net"), ("accepted", "g***@example.net"),
                    ("delivered", "g***@example.net"), ("bounced", "g***@example.net")}
    bounced = next(r for r in events if r["event"] == "bounced")
    assert bounced["message_id"].endswith("@gateway.test>")  # kept: it names no person
    assert bounced["route"] == "sink" and bounced["host"] == "sink"
    assert bounced["reply"] == "550 5.1.1 <g***@example.net>: no such user"
    assert {r["level"] for r in records} <= {"info", "warning", "error", "debug"}
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", r["ts"]) for r in records)
    assert BODY_MARKER not in log
    assert "guest@example.net" not in log and "gone@example.net" not in log
    assert "app@example.com" not in log  # the sender too, in free-text lines


def test_logfmt_with_keyed_hash_redaction(tmp_path: Path) -> None:
    log, queue_id = run_traffic(
        tmp_path, "logging: {format: logfmt, redact_addresses: hash}\n")
    pairs = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')
    lines = [dict(pairs.findall(line)) for line in log.splitlines()]
    assert all("ts" in fields and "level" in fields for fields in lines)
    events = [f for f in lines if f.get("logger") == "gateway.events"
              and f.get("queue_id") == queue_id]
    by_type: dict[str, list[str]] = {}
    for fields in events:
        by_type.setdefault(fields["event"], []).append(fields["recipient"])
    assert sorted(by_type) == ["accepted", "bounced", "delivered"]
    (delivered,) = by_type["delivered"]
    (bounced,) = by_type["bounced"]
    # One address, one token, in every line: correlation without disclosure.
    assert re.fullmatch(r"h\.[0-9a-f]{12}@example\.net", delivered)
    assert sorted(by_type["accepted"]) == sorted([delivered, bounced])
    assert delivered != bounced
    assert "guest@example.net" not in log and BODY_MARKER not in log
    key = tmp_path / "var" / "log-redaction.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and len(key.read_bytes()) == 32


def test_text_format_keeps_addresses_unless_asked(tmp_path: Path) -> None:
    log, queue_id = run_traffic(tmp_path, "")
    delivered = [line for line in log.splitlines()
                 if f"gateway.events: {queue_id}: delivered " in line]
    assert len(delivered) == 1
    assert "delivered recipient=guest@example.net message_id=<" in delivered[0]
    assert 'route=sink host=sink reply="250 2.0.0 OK: sunk"' in delivered[0]
    assert BODY_MARKER not in log
    assert "mail.log" not in log  # aiosmtpd's per-command trace is for log_level debug
