"""Queue files on disk: one file per message, its state is the directory it is in.

Postfix counterpart: the queue directories plus cleanup(8)'s write path.

    tmp/       being written; never trusted (removed at start-up)
    incoming/  durably accepted — a 250 was (or is about to be) sent
    active/    being delivered; moved back to incoming/ at start-up after a crash
    deferred/  waiting for the next attempt
    hold/      set aside by an operator
    corrupt/   unreadable files, kept for a human
    journal/   not a queue state: the final events of delivered messages until the
               event store has them (gateway/scheduler/journal.py)

A file is `SGW1\\n`, one line of JSON (the envelope), then the message octets
exactly as they will be sent. It is never rewritten: the changing parts of a
message's life (attempts, per-recipient results) live in the index.

Durability: put() writes tmp/<id>, fdatasyncs it, renames it into incoming/
and fsyncs incoming/ — only then may intake answer 250. Writes are grouped:
while one batch is being synced, new messages gather into the next, so one
directory fsync serves many messages and the file fsyncs run side by side
(the filesystem journal merges them). Throughput then rises with the number
of concurrent clients instead of being capped at one fsync per message.

Security: the JSON header is written by us; when read back it is parsed
defensively and a bad file goes to corrupt/ rather than stopping the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields
from pathlib import Path

from gateway.errors import SpoolError
from gateway.model import Client, Envelope, Priority, QueuedMessage, QueueId, QueueState

__all__ = ["MAGIC", "CorruptQueueFile", "QueueFiles", "decode_header", "encode_header"]

MAGIC = b"SGW1\n"
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class CorruptQueueFile(Exception):
    pass


# Client's fields are flat: naming them once is dataclasses.asdict's answer without its
# per-call recursion and deep copies.
_CLIENT_FIELDS = tuple(field.name for field in fields(Client))


def encode_header(qm: QueuedMessage) -> bytes:
    env = qm.envelope
    record = {
        "id": qm.id,
        "size": qm.size,
        "mail_from": env.mail_from,
        "recipients": list(env.recipients),
        "received_at": env.received_at,
        "smtputf8": env.smtputf8,
        "body_type": env.body_type,
        "message_id": env.message_id,
        "client": {name: getattr(env.client, name) for name in _CLIENT_FIELDS},
    }
    if env.not_before is not None:  # only shaped messages carry it (older files lack it)
        record["not_before"] = env.not_before
    if env.category is not None:  # files written before priorities lack both: normal
        record["category"] = env.category
    if env.priority is not Priority.NORMAL:
        record["priority"] = env.priority.label
    if env.requiretls:  # RFC 8689; absent in older files and in most messages
        record["requiretls"] = True
    if env.tls_optional:
        record["tls_optional"] = True
    return MAGIC + json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def decode_header(raw: bytes) -> tuple[QueuedMessage, int]:
    """Parse the header; return the message and the offset where the content starts."""
    if not raw.startswith(MAGIC):
        raise CorruptQueueFile("bad magic")
    end = raw.find(b"\n", len(MAGIC))
    if end < 0:
        raise CorruptQueueFile("truncated header")
    try:
        record = json.loads(raw[len(MAGIC):end])
        envelope = Envelope(
            mail_from=str(record["mail_from"]),
            recipients=tuple(str(r) for r in record["recipients"]),
            client=Client(**record["client"]),
            received_at=float(record["received_at"]),
            smtputf8=bool(record["smtputf8"]),
            body_type=str(record["body_type"]),
            message_id=record["message_id"],
            not_before=(None if record.get("not_before") is None
                        else float(record["not_before"])),
            category=None if record.get("category") is None else str(record["category"]),
            priority=Priority.parse(str(record.get("priority", "normal"))),
            requiretls=record.get("requiretls") is True,
            tls_optional=record.get("tls_optional") is True,
        )
        return QueuedMessage(str(record["id"]), envelope, int(record["size"])), end + 1
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptQueueFile(f"bad header: {exc}") from exc


class QueueFiles:
    """The spool directories and the group-committed write path."""

    def __init__(self, root: Path, *, fsync: bool = True, sync_threads: int = 8) -> None:
        self.root = root
        self._fsync = fsync
        self._pending: list[tuple[QueueId, bytes, asyncio.Future[None]]] = []
        self._committer: asyncio.Task[None] | None = None
        self._pool = ThreadPoolExecutor(max_workers=sync_threads, thread_name_prefix="spool-sync")
        self._dirs = {state: root / state.value for state in QueueState}
        self._tmp = root / "tmp"
        # Plain strings for the per-message paths: pathlib's joins were ~10% of the queue
        # manager's CPU (issue 15).
        self._dir_names = {state: f"{path}{os.sep}" for state, path in self._dirs.items()}
        self._tmp_name = f"{self._tmp}{os.sep}"
        self.commits = 0  # group commits done (one directory fsync each); for metrics

    def prepare(self, *, clean_tmp: bool = True) -> None:
        for path in (*self._dirs.values(), self._tmp):
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not clean_tmp:
            return
        for leftover in self._tmp.iterdir():
            # A tmp file never got its 250: the client was told nothing and will retry.
            leftover.unlink(missing_ok=True)

    def path(self, queue_id: QueueId, state: QueueState) -> Path:
        return self._dirs[state] / queue_id

    def _name(self, queue_id: QueueId, state: QueueState) -> str:
        return self._dir_names[state] + queue_id

    def ids(self, state: QueueState) -> list[QueueId]:
        return [entry.name for entry in os.scandir(self._dirs[state]) if entry.is_file()]

    # -- writing ---------------------------------------------------------------------------
    async def write(self, queue_id: QueueId, data: bytes) -> None:
        """Store `data` as incoming/<queue_id>; returns once it is durable."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((queue_id, data, fut))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.get_running_loop().create_task(self._commit_loop())
        await fut

    async def _commit_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch, self._pending = self._pending, []
            results = await loop.run_in_executor(None, self._commit_batch, batch)
            self.commits += 1
            for (_, _, fut), error in zip(batch, results, strict=True):
                if fut.done():
                    continue
                if error is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(error)

    def _commit_batch(
        self, batch: Sequence[tuple[QueueId, bytes, asyncio.Future[None]]]
    ) -> list[SpoolError | None]:
        written = list(self._pool.map(lambda item: self._write_tmp(item[0], item[1]), batch))
        results: list[SpoolError | None] = []
        for (queue_id, _, _), error in zip(batch, written, strict=True):
            if error is None:
                try:
                    os.replace(self._tmp_name + queue_id, self._name(queue_id, QueueState.INCOMING))
                except OSError as exc:
                    error = _spool_error(exc)
            results.append(error)
        if any(r is None for r in results):
            try:
                self._sync_dir(QueueState.INCOMING)
            except OSError as exc:
                # Without the directory fsync nothing in this batch is durable: fail them all.
                err = _spool_error(exc)
                results = [err for _ in results]
        return results

    def _write_tmp(self, queue_id: QueueId, data: bytes) -> SpoolError | None:
        path = self._tmp_name + queue_id
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                if self._fsync:
                    os.fdatasync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            return _spool_error(exc)
        return None

    def _sync_dir(self, state: QueueState) -> None:
        if not self._fsync:
            return
        fd = os.open(self._dirs[state], os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- state changes: one rename each --------------------------------------------------
    def move(self, queue_id: QueueId, src: QueueState, dst: QueueState) -> bool:
        """Move a queue file between states; False if it is no longer in `src`
        (an operator held or deleted it meanwhile)."""
        try:
            os.replace(self._name(queue_id, src), self._name(queue_id, dst))
            return True
        except FileNotFoundError:
            return False

    def remove(self, queue_id: QueueId, state: QueueState) -> bool:
        try:
            os.unlink(self._name(queue_id, state))
            return True
        except FileNotFoundError:
            return False

    def find(self, queue_id: QueueId) -> QueueState | None:
        for state, directory in self._dirs.items():
            if (directory / queue_id).exists():
                return state
        return None

    # -- reading ---------------------------------------------------------------------------
    def read(self, queue_id: QueueId, state: QueueState) -> tuple[QueuedMessage, bytes]:
        with open(self._name(queue_id, state), "rb") as fh:
            raw = fh.read()
        qm, offset = decode_header(raw)
        return qm, raw[offset:]

    def read_header(self, queue_id: QueueId, state: QueueState) -> QueuedMessage:
        with open(self._name(queue_id, state), "rb") as fh:
            head = fh.read(65536)
            while b"\n" not in head[len(MAGIC):]:
                more = fh.read(65536)
                if not more:
                    break
                head += more
        return decode_header(head)[0]

    def quarantine(self, queue_id: QueueId, state: QueueState) -> None:
        self.move(queue_id, state, QueueState.CORRUPT)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def _spool_error(exc: OSError) -> SpoolError:
    return SpoolError(f"spool write failed: {exc.strerror or exc}",
                      disk_full=exc.errno in _DISK_FULL)
