"""Maildir ingestion: process what is in new/, then move it to cur/.

Also the store behind SMTP ingestion: mail for the bounce domain is written
into the gateway's own Maildir (`<data_dir>/bounces/`) before the 250, then
processed from there (and removed: its outcome is in bounces.db and the
events), so a 250 means the bounce is on disk whatever happens next.

Writing follows the Maildir protocol (tmp/ → fsync → rename into new/ →
fsync new/). Processing is keyed by the file's unique name (see
gateway.bounces.ingest): a crash after processing and before the move to
cur/ reprocesses the file at the next look, which is then skipped as a
duplicate, so nothing is counted twice and nothing is lost. A file another
node is processing (a Maildir shared over the network) is left in new/.

Security: file contents are untrusted mail; names are generated here or
read from the directory and never interpreted beyond the ":2," suffix.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from pathlib import Path

from gateway.bounces.ingest import BUSY, BounceProcessor
from gateway.core.tasks import cancel

__all__ = ["Maildir", "MaildirIngester"]

log = logging.getLogger(__name__)

BATCH = 500  # messages per look: a huge backlog is worked off over several looks


class Maildir:
    def __init__(self, path: Path, *, fsync: bool = True) -> None:
        self.path = path
        self._fsync = fsync

    def __repr__(self) -> str:
        return f"<Maildir {self.path}>"

    def create(self) -> None:
        for sub in ("tmp", "new", "cur"):
            (self.path / sub).mkdir(parents=True, exist_ok=True, mode=0o700)

    def deliver(self, data: bytes) -> str:
        """Store one message durably; return its unique name."""
        name = (f"{time.time_ns() // 1000}.P{os.getpid()}R{secrets.token_hex(8)}."
                f"{socket.gethostname().replace('/', '_').replace(':', '_')}")
        tmp = self.path / "tmp" / name
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            if self._fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, self.path / "new" / name)
        if self._fsync:
            fd = os.open(self.path / "new", os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        return name

    def new(self, limit: int = BATCH) -> list[str]:
        try:
            names = sorted(n for n in os.listdir(self.path / "new") if not n.startswith("."))
        except FileNotFoundError:
            return []
        return names[:limit]

    def read(self, name: str) -> bytes:
        return (self.path / "new" / name).read_bytes()

    def done(self, name: str, *, keep: bool = True) -> None:
        """Move to cur/, flagged seen (the ":2,S" info of the Maildir spec), or remove."""
        base = name.split(":2,", 1)[0]
        with contextlib.suppress(FileNotFoundError):  # another process got there first
            if keep:
                os.replace(self.path / "new" / name, self.path / "cur" / f"{base}:2,S")
            else:
                os.unlink(self.path / "new" / name)


class MaildirIngester:
    """Polls one Maildir (and runs at once when poked, after an SMTP delivery)."""

    def __init__(self, maildir: Maildir, processor: BounceProcessor, source: str,
                 interval: float, *, keep: bool = True) -> None:
        self.maildir = maildir
        # False for the SMTP inbox: anyone may send to the bounce domain, so what it
        # stored must not pile up; the outcome is in bounces.db and the events.
        self.keep = keep
        self.processor = processor
        self.source = source
        self.interval = interval
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"<MaildirIngester {self.source} {self.maildir.path}>"

    def poke(self) -> None:
        self._wake.set()

    async def run_once(self) -> int:
        """Process what is in new/ now; return how many messages were handled."""
        async with self._lock:
            handled = 0
            for name in await asyncio.to_thread(self.maildir.new):
                try:
                    data = await asyncio.to_thread(self.maildir.read, name)
                except FileNotFoundError:
                    continue
                try:
                    outcome = await self.processor.process(data, self.source,
                                                           f"{self.source}:{name}")
                except Exception:
                    # Left in new/: tried again at the next look.
                    self.processor.counters.errors += 1
                    log.exception("bounce %s in %s: processing failed", name, self.maildir)
                    continue
                if outcome == BUSY:
                    continue  # another node has it: it moves it when done
                await asyncio.to_thread(self.maildir.done, name, keep=self.keep)
                handled += 1
            return handled

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    async def _run(self) -> None:
        # Real time, not the injected clock: this polls a directory, it schedules no mail.
        while True:
            try:
                await self.run_once()
            except Exception:
                log.exception("%r: look failed", self)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
