"""gateway.logs: redaction and the three line formats."""

from __future__ import annotations

import json
import logging

from gateway.logs import Redactor, make_formatter
from gateway.logs.settings import LogConfig
from gateway.model import Event, EventType, Reply

EVENT = Event(time=1_700_000_000.25, queue_id="01JD5Q8W3K7H2M9XQ4RT", type=EventType.BOUNCED,
              recipient="Guest.Name@example.net", message_id="<m1@app.example>", route="mx",
              host="mx1.example.net", reply=Reply(550, "5.1.1", "<Guest.Name@example.net> unknown"),
              detail='said "no"')


def record(msg: str = "%s: %s", args: tuple[object, ...] = ("q", "bounced"),
           event: Event | None = EVENT) -> logging.LogRecord:
    rec = logging.LogRecord("gateway.events", logging.INFO, __file__, 1, msg, args, None)
    if event is not None:
        rec.gateway_event = event
    return rec


def test_partial_and_hash_redaction() -> None:
    assert Redactor("partial").address("guest@example.net") == "g***@example.net"
    hashed = Redactor("hash", b"k" * 32)
    token = hashed.address("Guest@Example.net")
    assert token.startswith("h.") and token.endswith("@Example.net")
    assert hashed.address("guest@example.net").split("@")[0] == token.split("@")[0]
    assert Redactor("hash", b"j" * 32).address("guest@example.net") != token
    assert Redactor("none").text("to=<a@b.example>") == "to=<a@b.example>"
    assert Redactor("partial").text("from=<app@x.example> to=b@y.example ok") == (
        "from=<a***@x.example> to=b***@y.example ok")


def test_json_event_line() -> None:
    line = make_formatter(LogConfig("json", "partial")).format(record())
    fields = json.loads(line)
    assert fields == {
        "ts": "2023-11-14T22:13:20.250Z", "level": "info", "logger": "gateway.events",
        "event": "bounced", "queue_id": "01JD5Q8W3K7H2M9XQ4RT", "recipient": "G***@example.net",
        "message_id": "<m1@app.example>", "route": "mx", "host": "mx1.example.net",
        "reply": "550 5.1.1 <G***@example.net> unknown", "detail": 'said "no"'}


def test_logfmt_quotes_what_needs_it() -> None:
    line = make_formatter(LogConfig("logfmt", "none")).format(record())
    assert line.startswith("ts=2023-11-14T22:13:20.250Z level=info logger=gateway.events "
                           "event=bounced queue_id=01JD5Q8W3K7H2M9XQ4RT ")
    assert 'reply="550 5.1.1 <Guest.Name@example.net> unknown"' in line
    assert 'detail="said \\"no\\""' in line


def test_plain_records_are_structured_and_redacted_too() -> None:
    rec = record("%s: queued from=<%s>", ("q1", "app@example.com"), event=None)
    fields = json.loads(make_formatter(LogConfig("json", "partial")).format(rec))
    assert fields["msg"] == "q1: queued from=<a***@example.com>"
    assert fields["logger"] == "gateway.events" and "pid" in fields
    text = make_formatter(LogConfig("text", "partial")).format(rec)
    assert text.endswith("gateway.events: q1: queued from=<a***@example.com>")


def test_every_format_names_the_node() -> None:
    rec = record("%s: queued", ("q1",), event=None)
    fields = json.loads(make_formatter(LogConfig("json"), node="gw-a").format(rec))
    assert fields["node"] == "gw-a"
    assert json.loads(make_formatter(LogConfig("json"), node="gw-a").format(record()))[
        "node"] == "gw-a"  # events too
    logfmt = make_formatter(LogConfig("logfmt"), node="gw-a").format(record())
    assert " logger=gateway.events node=gw-a event=bounced " in logfmt
    text = make_formatter(LogConfig("text"), node="gw-a").format(rec)
    assert f" INFO gw-a {rec.process} gateway.events: q1: queued" in text
