"""Per-message CPU of the policy stage, in-process: PolicyStage.rcpt() + message()
with the policies of bench/policy_throughput.sh ("on"), against a policy.db
holding ROWS suppressions.

    python3 bench/policy_stage_cost.py [--rows 1000000] [--n 20000]

Prints the median over 5 passes of CPU µs (thread time, so that time the machine
gives to other processes does not count) per message, split into RCPT and DATA.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from gateway.clock import SystemClock
from gateway.model import Client, Envelope, Suppression, SuppressionReason
from gateway.policy.rules_file import PolicyFiles
from gateway.policy.stage import PolicyStage
from gateway.state.store import StateStore

POLICIES = {
    "suppression.yaml": """entries:
  - {address: blocked@example.net, reason: manual}
  - {domain: complainers.example, reason: complaint}
  - {address: to@example.net, reason: unsubscribe, scope: marketing}
""",
    "consent.yaml": """categories:
  transactional: {basis: contract}
  marketing: {basis: consent}
rules:
  - {name: news, category: marketing, sender_domain: [news.example.com]}
""",
    "ratelimits.yaml": """limits:
  - {name: per-recipient, key: [recipient], rate: 1000000/s, burst: 1000000}
  - {name: per-client, key: [client_ip], rate: 1000000/s, burst: 1000000}
""",
}
MESSAGE = (b"From: app@example.com\r\nTo: guest@example.net\r\nSubject: booking\r\n"
           b"Message-ID: <x@example.com>\r\n\r\n" + b"x" * 2000 + b"\r\n")


async def fill(state: StateStore, rows: int) -> None:
    for start in range(0, rows, 100_000):
        await state.suppressions.add(
            [Suppression(f"user{i}@domain{i % 5000}.example", SuppressionReason.HARD_BOUNCE,
                         "all", 1.0, "bench") for i in range(start, min(rows, start + 100_000))],
            "bench", 1.0)


async def one_pass(stage: PolicyStage, n: int, distinct: bool) -> tuple[float, float]:
    client = Client(address="127.0.0.1", listener="relay")
    rcpt_s = data_s = 0.0
    for i in range(n):
        rcpt = f"guest{i}@example.net" if distinct else "guest@example.net"
        t0 = time.thread_time()
        assert await stage.rcpt(client, "app@example.com", rcpt) is None
        t1 = time.thread_time()
        env = Envelope(mail_from="app@example.com", recipients=(rcpt,), client=client,
                       received_at=0.0)
        decision = await stage.message(env, MESSAGE)
        t2 = time.thread_time()
        assert decision.refusal is None
        rcpt_s += t1 - t0
        data_s += t2 - t1
    return rcpt_s / n * 1e6, data_s / n * 1e6


async def main(rows: int, n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "policies").mkdir()
        for name, text in POLICIES.items():
            (d / "policies" / name).write_text(text)
        state = StateStore(d / "state.db")
        await state.open()
        await fill(state, rows)
        policies, _ = PolicyFiles(d / "policies").load()
        assert policies is not None
        stage = PolicyStage(policies, state, SystemClock())
        for distinct in (False, True):
            passes = [await one_pass(stage, n, distinct) for _ in range(5)]
            r = statistics.median(p[0] for p in passes)
            m = statistics.median(p[1] for p in passes)
            label = "distinct recipients" if distinct else "one recipient"
            print(f"{label}: RCPT {r:.1f} µs + DATA {m:.1f} µs = {r + m:.1f} µs per message")
        await state.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--n", type=int, default=20_000)
    args = ap.parse_args()
    asyncio.run(main(args.rows, args.n))
