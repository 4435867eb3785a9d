"""CPU cost of recording metrics and of writing event log lines, in-process.

    python3 bench/metrics_record_cost.py [N=20000]

- per message: the six recordings a message delivered at the first attempt
  makes (received, DATA reply, intake latency, recipient outcome, delivery
  latency, attempt), with the label lookups;
- per event line: `log_events()` into an in-memory stream, for each format;
- a worker's metrics snapshot (sent once a second) and the master's merge of
  two workers' snapshots into one exposition.
"""

from __future__ import annotations

import io
import logging
import sys
import time

from gateway import metrics
from gateway.logs import log_events, make_formatter
from gateway.logs.settings import LogConfig
from gateway.metrics.workers import WorkerMetrics, snapshot
from gateway.model import Event, EventType, Reply


def per_call(n: int, fn: object) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()  # type: ignore[operator]
    return (time.perf_counter() - start) / n * 1e6


def one_message() -> None:
    ok = Reply(250, "2.0.0", "ok")
    metrics.record_message_received("relay")
    metrics.record_data_reply("relay", ok, "")
    metrics.observe_intake_latency("relay", 0.012)
    metrics.record_recipient("delivered", "sink", "transactional")
    metrics.observe_delivery_latency("sink", "transactional", 0.3)
    metrics.record_attempt("sink", "sink", ok)


def main() -> None:
    n = int(dict(a.split("=", 1) for a in sys.argv[1:]).get("N", "20000"))
    print(f"metrics, one delivered message (6 recordings): {per_call(n, one_message):.1f} µs")
    event = Event(time=time.time(), queue_id="01JD5Q8W3K7H2M9XQ4RT", type=EventType.DELIVERED,
                  recipient="guest@example.net", message_id="<abc@gateway.test>", route="sink",
                  host="sink", reply=Reply(250, "2.0.0", "OK"))
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for fmt, redact in (("text", "none"), ("logfmt", "none"), ("json", "none"),
                        ("json", "partial"), ("json", "hash")):
        handler = logging.StreamHandler(io.StringIO())
        handler.setFormatter(make_formatter(LogConfig(fmt, redact), b"k" * 32))
        root.handlers[:] = [handler]
        cost = per_call(n, lambda: log_events([event]))
        print(f"event line, {fmt:6} redact={redact:7}: {cost:.1f} µs")
    root.setLevel(logging.WARNING)
    print(f"event line with log_level warning (skipped): "
          f"{per_call(n, lambda: log_events([event])):.2f} µs")
    print(f"worker snapshot (once a second): {per_call(500, snapshot):.0f} µs")
    workers = WorkerMetrics()
    workers.update(1, snapshot())
    workers.update(2, snapshot())
    merged = per_call(500, lambda: metrics.render(workers))
    print(f"exposition with two workers merged: {merged:.0f} µs")


if __name__ == "__main__":
    main()
