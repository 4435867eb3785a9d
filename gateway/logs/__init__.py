"""Log output: one line per event, as text, JSON or logfmt, with addresses redactable
(Postfix's maillog lines keyed by queue id; KumoMTA's JSON log records).

Every event a stage records (gateway.state.events) is also written as one line
by the `gateway.events` logger, carrying its queue id, recipient, route, host,
remote reply and detail — never any message content, which no event holds.
Other log records get the same format (`logging.format`), so a JSON log is
JSON throughout. Every line names the node (`node_name:`, by default the
machine's host name), so the logs of N nodes can be merged:

    {"ts":"2026-11-23T14:02:11.512Z","level":"info","logger":"gateway.events","node":"gw-a",
     "event":"delivered","queue_id":"01JD5Q8W3K7H2M9XQ4RT","recipient":"g***@example.net",
     "route":"default","host":"mx1.example.net","reply":"250 2.0.0 Ok"}

Redaction (`logging.redact_addresses`) applies to every line: anything shaped
like an address, in a field or in free text (where Message-IDs look like one
too; an event's `message_id` field is kept, it names a message, not a person),
becomes `g***@example.net` (partial) or `h.3f9a1c0b2e7d@example.net` (hash: an
HMAC-SHA256 of the lowercased address under a key kept in
`<data_dir>/log-redaction.key`, so one address gives the same token in every
line and every process without being readable). The domain is kept: it is
what tells a provider's outage from a typo.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from gateway.logs.settings import LogConfig
from gateway.model import Event

__all__ = ["Redactor", "log_events", "make_formatter", "setup_logging"]

events_log = logging.getLogger("gateway.events")

# Free-text addresses: no spaces, brackets, quotes or `=` (logfmt's key=value) around.
_ADDRESS = re.compile(r"[^\s<>@\"'(),;:\[\]=]+@[A-Za-z0-9][A-Za-z0-9.\-]*")
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s"
_FIELDS = ("queue_id", "recipient", "message_id", "route", "host", "reply", "detail")
KEY_FILE = "log-redaction.key"


def log_events(events: Iterable[Event]) -> None:
    """One INFO line per event on `gateway.events` (free when INFO is off)."""
    if not events_log.isEnabledFor(logging.INFO):
        return
    for event in events:
        events_log.info("%s: %s", event.queue_id or "-", event.type.value,
                        extra={"gateway_event": event})


class Redactor:
    def __init__(self, mode: str = "none", key: bytes = b"") -> None:
        self.mode = mode
        self._key = key

    def address(self, address: str) -> str:
        local, at, domain = address.rpartition("@")
        if self.mode == "none" or not at:
            return address
        if self.mode == "partial":
            return f"{local[:1]}***@{domain}"
        digest = hmac.new(self._key, address.lower().encode("utf-8", "replace"),
                          hashlib.sha256).hexdigest()
        return f"h.{digest[:12]}@{domain}"

    def text(self, text: str) -> str:
        if self.mode == "none" or "@" not in text:
            return text
        return _ADDRESS.sub(lambda m: self.address(m.group(0)), text)


def _event_fields(event: Event, redactor: Redactor) -> dict[str, str]:
    values = {
        "queue_id": event.queue_id, "recipient": event.recipient,
        "message_id": event.message_id, "route": event.route, "host": event.host,
        "reply": str(event.reply) if event.reply is not None else None,
        "detail": event.detail,
    }
    # The Message-ID field is kept as it is: it is how a message is traced.
    return {k: v if k == "message_id" else redactor.text(v) for k, v in values.items() if v}


def _iso(timestamp: float) -> str:
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(timestamp))
    return f"{whole}.{int(timestamp % 1 * 1000):03d}Z"


class _Structured(logging.Formatter):
    """Shared by JSON and logfmt: a record becomes an ordered dict of fields."""

    def __init__(self, redactor: Redactor, node: str = "") -> None:
        super().__init__()
        self.redactor = redactor
        self.node = node

    def fields(self, record: logging.LogRecord) -> dict[str, str]:
        event = getattr(record, "gateway_event", None)
        out = {"level": record.levelname.lower(), "logger": record.name}
        if self.node:
            out["node"] = self.node
        if isinstance(event, Event):
            out = {"ts": _iso(event.time), **out, "event": event.type.value,
                   **_event_fields(event, self.redactor)}
        else:
            out = {"ts": _iso(record.created), **out, "pid": str(record.process),
                   "msg": self.redactor.text(record.getMessage())}
        if record.exc_info:
            out["exc"] = self.redactor.text(self.formatException(record.exc_info))
        return out


class JsonFormatter(_Structured):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(self.fields(record), ensure_ascii=False, separators=(",", ":"))


class LogfmtFormatter(_Structured):
    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{k}={_logfmt_value(v)}" for k, v in self.fields(record).items())


def _logfmt_value(value: str) -> str:
    if value and not any(c in value for c in ' ="\\\n\r\t'):
        return value
    escaped = (value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
               .replace("\r", "\\r").replace("\t", "\\t"))
    return f'"{escaped}"'


class TextFormatter(logging.Formatter):
    """The classic line; an event's fields follow its type as key=value pairs."""

    def __init__(self, redactor: Redactor, node: str = "") -> None:
        # The node's name before the pid, as syslog puts the host before the program.
        super().__init__(_TEXT_FORMAT.replace("%(process)d", f"{node} %(process)d")
                         if node else _TEXT_FORMAT)
        self.redactor = redactor

    def formatMessage(self, record: logging.LogRecord) -> str:
        event = getattr(record, "gateway_event", None)
        if isinstance(event, Event):
            fields = _event_fields(event, self.redactor)
            fields.pop("queue_id", None)
            record.message += " " + " ".join(f"{k}={_logfmt_value(v)}"
                                             for k, v in fields.items())
        else:
            record.message = self.redactor.text(record.message)
        return super().formatMessage(record)


def make_formatter(config: LogConfig, key: bytes = b"", node: str = "") -> logging.Formatter:
    """`node`: this node's name (`node_name:`) in every line; empty: none."""
    redactor = Redactor(config.redact_addresses, key)
    if config.format == "json":
        return JsonFormatter(redactor, node)
    if config.format == "logfmt":
        return LogfmtFormatter(redactor, node)
    return TextFormatter(redactor, node)


def redaction_key(data_dir: Path) -> bytes:
    """The hash key, made on first use (0600); every process of the gateway reads it."""
    path = data_dir / KEY_FILE
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = secrets.token_bytes(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return path.read_bytes()
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    return key


def setup_logging(level: str, config: LogConfig, data_dir: Path, node: str = "") -> None:
    key = redaction_key(data_dir) if config.redact_addresses == "hash" else b""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(make_formatter(config, key, node))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiosmtpd logs every client command at INFO ("mail.log"): a protocol trace of about
    # 13 lines a message that repeats what the events say and cost a fifth of intake
    # throughput (BENCHMARKS.md). It is kept for log_level debug.
    logging.getLogger("mail.log").setLevel(logging.DEBUG if level == "debug"
                                           else max(logging.WARNING, root.level))
