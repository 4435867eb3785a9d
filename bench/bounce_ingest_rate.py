#!/usr/bin/env python3
"""Bounce processing rate: returned messages/s through BounceProcessor with actions.

    python3 bench/bounce_ingest_rate.py [--messages 2000]

What one bounce costs once it is on disk: the idempotency check and mark in
bounces.db, the parse, the VERP check, the match against the events
(state.db), the suppression write (policy.db) and the events. Sets up a
state directory in /tmp with --messages accepted messages, then processes one
RFC 3464 DSN per message, each addressed to that message's VERP return path
(so each matches and suppresses its recipient), one after the other on one
event loop, pinned to one CPU. A second pass over the same keys measures the
duplicate path (a crash-retry). Prints the rates and the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from gateway.bounces.actions import BounceActions
from gateway.bounces.ingest import BounceProcessor
from gateway.bounces.rules import BounceRules
from gateway.bounces.verp import VerpCodec
from gateway.clock import SystemClock
from gateway.model import Client, Envelope, QueuedMessage
from gateway.policy.rules_file import ConsentSettings, PolicySet, SuppressionSettings
from gateway.spool.queue_id import new_queue_id
from gateway.state.bounces import SqliteBounceStore
from gateway.state.events import accepted_events
from gateway.state.store import StateStore

DSN = """\
From: MAILER-DAEMON@mx.example.net
To: {verp}
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

Your message could not be delivered.

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; {rcpt}
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <{rcpt}>: User unknown

--B--
""".replace("\n", "\r\n")


async def run(n: int, root: Path) -> None:
    state = StateStore(root / "state.db")
    await state.open()
    store = SqliteBounceStore(root / "bounces.db")
    policies = PolicySet(root, SuppressionSettings(), ConsentSettings(), (), (), BounceRules())
    actions = BounceActions(state, store, SystemClock(), policies=policies)
    codec = VerpCodec(b"k" * 32, "bounces.example.com")
    processor = BounceProcessor(actions, store, codec)
    dsns = []
    for i in range(n):
        rcpt = f"user{i}@example.net"
        qm = QueuedMessage(new_queue_id(time.time()), Envelope("app@example.com", (rcpt,),
                                               Client("relay", "127.0.0.1"), time.time(),
                                               message_id=f"<m{i}@example.com>"), 100)
        state.events.record(accepted_events(qm, time.time()))
        dsns.append((f"bench:{i}", DSN.format(verp=codec.encode(qm.id, 0), rcpt=rcpt).encode()))
    await state.events.flush()
    for label, keys in (("processed", dsns), ("duplicates", dsns)):
        start = time.perf_counter()
        for key, data in keys:
            await processor.process(data, "bench", key)
        elapsed = time.perf_counter() - start
        print(f"{label}: {n} bounces in {elapsed:.2f} s: {n / elapsed:,.0f}/s")
    assert actions.counters.suppressed == n, actions.counters
    await store.close()
    await state.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=2000)
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    root = Path(tempfile.mkdtemp(prefix="bounce-bench-"))
    try:
        asyncio.run(run(args.messages, root))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"machine: nproc={os.cpu_count()} cpu={_cpu_model()} python={platform.python_version()}")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


if __name__ == "__main__":
    main()
