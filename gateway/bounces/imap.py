"""IMAP ingestion: poll a mailbox (a smarthost provider's return path), process new
messages, then move them to a processed folder (or flag them).

Uses the stdlib imaplib in a worker thread (one short session per poll), so
the event loop never waits on the network. Each message is processed under
the key `imap:<user>@<host>/<folder>:<UIDVALIDITY>:<UID>`; the move comes
after processing. A crash in between leaves the message in the folder, and
the next poll processes it again — found as a duplicate in the state store,
it is counted once and then moved. Nothing is lost, nothing counted twice.
Several nodes may poll the same mailbox (the ledger on PostgreSQL): the one
that claims a message processes and moves it, the others leave it be.

Moving uses UID MOVE (RFC 6851) when the server offers it, else UID COPY +
\\Deleted + expunge. With `processed_folder: ""` messages stay where they
are and get the `$GatewayProcessed` keyword (and \\Seen) instead.

Security: the server's data is untrusted mail; the password stays in
`Secret` and reaches only LOGIN; TLS certificates are verified unless
`verify_cert: false`.
"""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import logging
import re
import ssl
from collections.abc import Callable
from pathlib import Path

from gateway.bounces.ingest import BUSY, BounceProcessor
from gateway.bounces.settings import ImapSettings

__all__ = ["ImapIngester", "ImapMailbox"]

log = logging.getLogger(__name__)

BATCH = 200  # messages per poll
STOP_TIMEOUT = 10.0  # seconds a poll in progress may take to finish at shutdown
KEYWORD = "$GatewayProcessed"
_UIDVALIDITY = re.compile(rb"UIDVALIDITY (\d+)")


class ImapError(Exception):
    pass


class ImapMailbox:
    """One blocking IMAP session on the configured folder (run it in a thread)."""

    def __init__(self, settings: ImapSettings, ca_file: Path | None = None) -> None:
        self.settings = settings
        self._ca_file = ca_file
        self._conn: imaplib.IMAP4 | None = None
        self.uidvalidity = ""
        self.capabilities: frozenset[str] = frozenset()  # as announced after LOGIN

    def __repr__(self) -> str:
        s = self.settings
        return f"<ImapMailbox {s.username}@{s.host}:{s.port}/{s.folder}>"

    def _context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self._ca_file) if self._ca_file else None)
        if not self.settings.verify_cert:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def open(self) -> None:
        s = self.settings
        if s.tls == "implicit":
            conn: imaplib.IMAP4 = imaplib.IMAP4_SSL(s.host, s.port, ssl_context=self._context(),
                                                    timeout=30)
        else:
            conn = imaplib.IMAP4(s.host, s.port, timeout=30)
        self._conn = conn  # from here on close() releases the socket, whatever fails
        if s.tls == "starttls":
            conn.starttls(self._context())
        _ok(conn.login(s.username, s.password.value), "LOGIN")
        # Servers announce more after login (Dovecot: MOVE, UIDPLUS); imaplib keeps the
        # greeting's list, so ask again.
        typ, caps = conn.capability()
        _ok((typ, caps), "CAPABILITY")
        self.capabilities = frozenset(caps[0].decode().upper().split()) if caps[0] else frozenset()
        typ, data = conn.select(_quote(s.folder))
        _ok((typ, data), f"SELECT {s.folder}")
        typ, data = conn.response("UIDVALIDITY")
        self.uidvalidity = (data[0].decode() if data and data[0] else "0")

    def new_uids(self, limit: int = BATCH) -> list[str]:
        conn = self._need()
        criteria = "UNDELETED" if self.settings.processed_folder else f"UNKEYWORD {KEYWORD}"
        typ, data = conn.uid("SEARCH", criteria)
        _ok((typ, data), "UID SEARCH")
        uids = data[0].split() if data and data[0] else []
        return [u.decode() for u in uids[:limit]]

    def fetch(self, uid: str) -> bytes | None:
        typ, data = self._need().uid("FETCH", uid, "(BODY.PEEK[])")
        _ok((typ, data), "UID FETCH")
        for item in data:
            if isinstance(item, tuple) and len(item) == 2:
                return bytes(item[1])
        return None  # expunged meanwhile

    def finish(self, uid: str) -> None:
        conn = self._need()
        folder = self.settings.processed_folder
        if not folder:
            _ok(conn.uid("STORE", uid, "+FLAGS", f"({KEYWORD} \\Seen)"), "UID STORE")
            return
        conn.create(_quote(folder))  # NO when it exists: fine
        if "MOVE" in self.capabilities:
            _ok(conn.uid("MOVE", uid, _quote(folder)), "UID MOVE")
            return
        _ok(conn.uid("COPY", uid, _quote(folder)), "UID COPY")
        _ok(conn.uid("STORE", uid, "+FLAGS", "(\\Deleted)"), "UID STORE")
        if "UIDPLUS" in self.capabilities:
            _ok(conn.uid("EXPUNGE", uid), "UID EXPUNGE")
        else:
            _ok(conn.expunge(), "EXPUNGE")

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.logout()

    def _need(self) -> imaplib.IMAP4:
        if self._conn is None:
            raise ImapError("not connected")
        return self._conn


def _ok(result: tuple[str, list[object]] | tuple[str, object], what: str) -> None:
    if result[0] != "OK":
        raise ImapError(f"{what} failed: {result[1]!r}")


def _quote(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


class ImapIngester:
    def __init__(self, settings: ImapSettings, processor: BounceProcessor, interval: float,
                 ca_file: Path | None = None,
                 after_process: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self.processor = processor
        self.interval = interval
        self.source = "imap"
        self._ca_file = ca_file
        # Called between processing and the move (tests kill the process here).
        self.after_process = after_process
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._lock = asyncio.Lock()  # one session at a time: a poll and a manual run

    def __repr__(self) -> str:
        s = self.settings
        return f"<ImapIngester {s.username}@{s.host}:{s.port}/{s.folder}>"

    async def run_once(self) -> int:
        """One poll: process and move what is in the folder; return how many."""
        async with self._lock:
            return await self._poll()

    async def _poll(self) -> int:
        box = ImapMailbox(self.settings, self._ca_file)
        try:
            await asyncio.to_thread(box.open)
            handled = 0
            for uid in await asyncio.to_thread(box.new_uids):
                if self._stop.is_set():
                    break  # shutting down: the rest wait for the next start
                data = await asyncio.to_thread(box.fetch, uid)
                if data is None:
                    continue
                s = self.settings
                key = f"imap:{s.username}@{s.host}/{s.folder}:{box.uidvalidity}:{uid}"
                try:
                    outcome = await self.processor.process(data, self.source, key)
                except Exception:
                    # Left in the folder (tried again at the next poll); the rest go on.
                    self.processor.counters.errors += 1
                    log.exception("%r: processing UID %s failed", self, uid)
                    continue
                if outcome == BUSY:
                    continue  # another node is processing it and moves it when done
                if self.after_process is not None:
                    self.after_process(key)
                await asyncio.to_thread(box.finish, uid)
                handled += 1
            return handled
        finally:
            await asyncio.to_thread(box.close)

    def start(self) -> None:
        if self._task is None:
            self._stop = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Let a poll in progress finish (its session runs in a thread, which a
        cancellation would leave holding its socket); cancel only if it hangs."""
        if self._task is None:
            return
        self._stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), STOP_TIMEOUT)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None

    async def _run(self) -> None:
        # Real time: this polls a mailbox, it schedules no mail.
        while not self._stop.is_set():
            try:
                await self.run_once()
            except (OSError, imaplib.IMAP4.error, ImapError) as exc:
                log.warning("%r: poll failed: %s", self, exc)
            except Exception:
                log.exception("%r: poll failed", self)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.interval)
