"""The delivery journal: a finished message's final events, on disk before its queue
file goes (Postfix's qmgr marks each recipient done in the queue file itself, then
deletes the file; KumoMTA logs the Delivery record, then removes the spool entry).

Why: a delivered message's queue file is the last trace of it. The event store
writes in batches — milliseconds when idle, seconds under load — and the
scheduler used to wait for that batch before removing the file, so every
message delivered in the last moments before a kill -9 was still in active/
and was sent again after the restart (issue 15: 11% to over 80% extra copies
per crash). Now the scheduler appends the events to this journal — one
`write()` to an O_APPEND file, which survives the process being killed, since
it is in the page cache — and removes the queue file at once. A crash then
repeats only the deliveries that were truly in flight (no 250 from the next
hop yet).

The journal is cut into segments (`spool/journal/<n>.jsonl`). Every
ROTATE_EVERY seconds the current segment is closed; once the event store has
stored everything recorded before that (it is told first, then the journal),
closed segments are deleted. At start-up, segments left by a crash are
replayed into the event store — events it already has (same queue id, type,
recipient and time) are skipped — and then deleted.

Durability: as the event store's own (SQLite WAL, synchronous=NORMAL): a
killed process loses nothing; a power loss may lose the newest events. It
never loses a message: the removal of a queue file is not fsynced either, so a
power loss at worst sends a message again.

Security: reads only files this process wrote; a line that does not parse (a
write cut short) is skipped with a warning.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from gateway.model import Event, EventType, Reply

__all__ = ["ROTATE_EVERY", "DeliveryJournal", "decode_events", "encode_events"]

log = logging.getLogger(__name__)

ROTATE_EVERY = 1.0  # seconds between segment cuts (events older than this are stored)
_SUFFIX = ".jsonl"


def encode_events(events: Iterable[Event]) -> bytes:
    """One JSON array per event and line (the events table's columns, in order)."""
    lines = []
    for e in events:
        reply = e.reply
        lines.append(json.dumps(
            [e.time, e.queue_id, e.type.value, e.recipient, e.message_id, e.route, e.host,
             reply.code if reply else None, reply.enhanced if reply else None,
             reply.text if reply else None, e.detail],
            separators=(",", ":"), ensure_ascii=False))
    return ("\n".join(lines) + "\n").encode() if lines else b""


def decode_events(data: bytes, where: str = "journal") -> list[Event]:
    out = []
    for number, line in enumerate(data.split(b"\n"), 1):
        if not line:
            continue
        try:
            (time, queue_id, kind, recipient, message_id, route, host, code, enhanced, text,
             detail) = json.loads(line)
            reply = None if code is None else Reply(int(code), str(enhanced or ""),
                                                    str(text or ""))
            out.append(Event(float(time), str(queue_id), EventType(kind), recipient,
                             message_id, route, host, reply, detail))
        except (ValueError, TypeError) as exc:
            log.warning("%s:%d: skipped an unreadable journal line (%s)", where, number, exc)
    return out


class DeliveryJournal:
    """Append-only segments of final events; one writer (the scheduler's process)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._fd = -1
        self._current: Path | None = None
        self._records = 0  # events in the current segment
        self._closed: list[Path] = []  # cut, waiting for the event store to store them
        self.appended = 0  # events written since open (for tests and repr)

    def open(self) -> list[Path]:
        """Start a new segment; return the segments a previous run left (to replay)."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        left = sorted(self.directory.glob("*" + _SUFFIX), key=_number)
        self._next = (_number(left[-1]) + 1) if left else 1
        self._start_segment()
        return left

    def _start_segment(self) -> None:
        path = self.directory / f"{self._next:012d}{_SUFFIX}"
        self._next += 1
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._current = path
        self._records = 0

    def append(self, events: Sequence[Event]) -> None:
        """Write `events` now (one write call: the page cache outlives a killed process)."""
        data = encode_events(events)
        if not data:
            return
        if self._fd < 0:
            raise RuntimeError(f"journal {self.directory} is not open")
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]
        self._records += len(events)
        self.appended += len(events)

    def cut(self) -> bool:
        """Close the current segment if it holds anything; True if one was closed.
        Call it after the events were handed to the event store, before its flush."""
        if self._records == 0 or self._current is None:
            return False
        os.close(self._fd)
        self._closed.append(self._current)
        self._start_segment()
        return True

    def drop_closed(self) -> int:
        """The event store has stored everything recorded before the last cut: delete
        the closed segments. Returns how many."""
        dropped, self._closed = self._closed, []
        for path in dropped:
            path.unlink(missing_ok=True)
        return len(dropped)

    @property
    def closed(self) -> int:
        return len(self._closed)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._current is not None and self._records == 0:
            self._current.unlink(missing_ok=True)  # an empty segment says nothing
        self._current = None

    def __repr__(self) -> str:
        name = self._current.name if self._current is not None else "-"
        return (f"<DeliveryJournal {self.directory} current={name} records={self._records}"
                f" closed={len(self._closed)}>")


def read_segments(paths: Sequence[Path]) -> list[Event]:
    out: list[Event] = []
    for path in paths:
        try:
            out.extend(decode_events(path.read_bytes(), str(path)))
        except OSError as exc:
            log.error("cannot read journal segment %s: %s", path, exc)
    return out


def _number(path: Path) -> int:
    try:
        return int(path.name[:-len(_SUFFIX)])
    except ValueError:
        return 0
