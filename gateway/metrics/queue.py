"""Gauges of the running gateway: queue depth, oldest queued message, circuit breakers
(Postfix's qshape(1) and `postqueue -p`, as numbers; KumoMTA's ready-queue gauges).

These are states, not events, so they are read rather than recorded. The
queue figures need the index and a look at incoming/ and active/, which is
I/O: a `QueueSampler` task in the master takes them every `interval` seconds
— or less often when a sample is slow: a deferred queue of a million messages
takes a second or more to count, and the sampler keeps its share of the index
connection under 5% — (never on the scrape path, which must stay cheap and
synchronous) and a
scrape reports the last sample — ages are computed at scrape time from the
sampled arrival times, so they keep growing between samples.

- depth: deferred and held messages come from the index, by the route of
  their pending recipients (the route the last attempt used); incoming/,
  active/ and corrupt/ are counted from the directories with route="none" (a
  route is chosen per recipient only at delivery time).
- oldest: per category, the earliest arrival among the messages waiting for
  delivery (held ones wait for an operator and are left out): indexed ones and the
  `HEADER_SAMPLE` oldest files of incoming/ and active/ (queue ids sort by
  arrival, so those are the oldest; only their headers are read).
- breakers: every smarthost of every configured route, CLOSED until used.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.clock import Clock
from gateway.core.tasks import cancel
from gateway.delivery.smarthosts import BreakerState, CircuitBreaker
from gateway.metrics.families import NO_CATEGORY, NO_ROUTE
from gateway.model import QueueState, Route
from gateway.spool import Spool
from gateway.spool.store import CorruptQueueFile

__all__ = ["BreakerCollector", "QueueSample", "QueueSampler"]

log = logging.getLogger(__name__)

HEADER_SAMPLE = 100  # oldest files of incoming/ and active/ whose category is read
COST_SHARE = 20  # the next sample waits at least this many times the last one's duration
_P = "smtp_gateway_"


@dataclass(frozen=True)
class QueueSample:
    depth: dict[tuple[str, str], int] = field(default_factory=dict)  # (state, route) → n
    oldest: dict[str, float] = field(default_factory=dict)  # category → arrival time


class QueueSampler(Collector):
    def __init__(self, spool: Spool, clock: Clock, interval: float = 10.0) -> None:
        self.spool = spool
        self.clock = clock
        self.interval = interval
        self.last = QueueSample()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    async def _run(self) -> None:
        # Real time between samples: this observes the queue, it schedules no mail.
        while True:
            started = time.monotonic()
            try:
                await self.sample()
            except Exception:
                log.exception("queue metrics sample failed")
            # Counting a huge deferred queue is a scan on the index's connection, which
            # the scheduler shares: at most 1/COST_SHARE of its time goes to us.
            took = time.monotonic() - started
            await asyncio.sleep(max(self.interval, took * COST_SHARE))

    async def sample(self) -> QueueSample:
        depth: dict[tuple[str, str], int] = {}
        for state, route, count in await self.spool.index.depth():
            key = (state.value, route or NO_ROUTE)
            depth[key] = depth.get(key, 0) + count
        oldest = {category or NO_CATEGORY: at
                  for category, at in await self.spool.index.oldest_by_category()}
        corrupt = await asyncio.to_thread(self.spool.files.ids, QueueState.CORRUPT)
        depth[(QueueState.CORRUPT.value, NO_ROUTE)] = len(corrupt)
        for state in (QueueState.INCOMING, QueueState.ACTIVE):
            ids, found = await asyncio.to_thread(self._scan, state)
            depth[(state.value, NO_ROUTE)] = len(ids)
            for category, at in found:
                if at < oldest.get(category, float("inf")):
                    oldest[category] = at
        self.last = QueueSample(depth, oldest)
        return self.last

    def _scan(self, state: QueueState) -> tuple[list[str], list[tuple[str, float]]]:
        ids = sorted(self.spool.files.ids(state))
        found = []
        for queue_id in ids[:HEADER_SAMPLE]:
            try:
                env = self.spool.files.read_header(queue_id, state).envelope
            except (CorruptQueueFile, OSError):
                continue  # delivered or moved meanwhile, or the scheduler's to quarantine
            found.append((env.category or NO_CATEGORY, env.received_at))
        return ids, found

    def collect(self) -> Iterator[Metric]:
        sample = self.last
        depth = GaugeMetricFamily(_P + "queue_messages",
                                  "Queued messages by state and route (sampled).",
                                  labels=["state", "route"])
        seen = {state for state, _ in sample.depth}
        for (state, route), count in sorted(sample.depth.items()):
            depth.add_metric([state, route], count)
        for state in QueueState:  # every state appears, 0 when empty
            if state.value not in seen:
                depth.add_metric([state.value, NO_ROUTE], 0)
        yield depth
        age = GaugeMetricFamily(_P + "queue_oldest_message_age_seconds",
                                "Age of the oldest queued message, by category (sampled).",
                                labels=["category"])
        now = self.clock.now()
        for category, at in sorted(sample.oldest.items()):
            age.add_metric([category], max(0.0, now - at))
        yield age


class BreakerCollector(Collector):
    """One gauge per (route, smarthost, state): 1 for the breaker's current state."""

    def __init__(self, routes: Callable[[], tuple[Route, ...]],
                 breakers: Callable[[], list[CircuitBreaker]]) -> None:
        self._routes = routes
        self._breakers = breakers

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            _P + "smarthost_circuit_state",
            "Circuit breaker state of each smarthost: 1 for the current state.",
            labels=["route", "smarthost", "state"])
        known = {(b.route, b.name): b.state for b in self._breakers()}
        for route in self._routes():
            for smarthost in route.smarthosts:
                current = known.get((route.name, smarthost.name), BreakerState.CLOSED)
                for state in BreakerState:
                    gauge.add_metric([route.name, smarthost.name, state.value.lower()],
                                     1.0 if state is current else 0.0)
        yield gauge
