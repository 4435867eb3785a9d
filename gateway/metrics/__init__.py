"""Prometheus metrics: declared in families.py, exposed by `exposition()` (Postfix has
none of its own: operators parse maillog; this replaces that).

The admin listener serves `exposition()` at GET /metrics. Stages record
through the functions re-exported here; gauges of state (queue, breakers)
are collectors the Gateway registers while it runs (queue.py); intake
worker processes report their samples to the master (workers.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from gateway.metrics.families import (
    REGISTRY,
    WEBHOOK_RESULTS,
    declare_listener,
    observe_delivery_latency,
    observe_intake_latency,
    record_attempt,
    record_bounce,
    record_cleanup_repair,
    record_data_reply,
    record_message_received,
    record_rcpt_refused,
    record_recipient,
    record_reload,
    record_signing,
    record_tls_outcome,
    record_tracking_hit,
    record_verdict,
    record_verp_forged,
    record_webhook_delivery,
    reply_class,
)
from gateway.metrics.workers import WorkerMetrics, merge

__all__ = [
    "REGISTRY",
    "RUNNING",
    "WEBHOOK_RESULTS",
    "WORKERS",
    "declare_listener",
    "exposition",
    "observe_delivery_latency",
    "observe_intake_latency",
    "record_attempt",
    "record_bounce",
    "record_cleanup_repair",
    "record_data_reply",
    "record_message_received",
    "record_rcpt_refused",
    "record_recipient",
    "record_reload",
    "record_signing",
    "record_tls_outcome",
    "record_tracking_hit",
    "record_verdict",
    "record_verp_forged",
    "record_webhook_delivery",
    "render",
    "reply_class",
]

# The master's record of its intake workers' samples (gateway.intake.processes feeds it).
WORKERS = WorkerMetrics()


class _Running(Collector):
    """The gauges of the Gateway that started last (tests run several in one process;
    registering each one's collectors would clash on their names)."""

    def __init__(self) -> None:
        self._sources: tuple[Collector, ...] = ()

    def attach(self, collectors: Iterable[Collector]) -> None:
        self._sources = tuple(collectors)

    def detach(self, collectors: Iterable[Collector]) -> None:
        if self._sources == tuple(collectors):
            self._sources = ()

    def collect(self) -> Iterator[Metric]:
        for source in self._sources:
            yield from source.collect()


RUNNING = _Running()
REGISTRY.register(RUNNING)


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families


def exposition() -> tuple[bytes, str]:
    """The body and Content-Type of a scrape (Prometheus text format 0.0.4)."""
    return render(WORKERS), CONTENT_TYPE_PLAIN_0_0_4


def render(workers: WorkerMetrics) -> bytes:
    """This process's metrics with `workers`' intake samples added in."""
    return generate_latest(_Families(merge(REGISTRY.collect(), workers.totals())))
