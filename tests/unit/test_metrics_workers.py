"""gateway.metrics.workers: worker snapshots summed into the master's families."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from gateway import metrics
from gateway.metrics.workers import WorkerMetrics, snapshot


def value(text: str, name: str, **labels: str) -> float:
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == name and labels.items() <= s.labels.items())


def test_worker_samples_add_up_and_survive_a_dead_worker() -> None:
    metrics.record_message_received("unit-a")
    metrics.observe_intake_latency("unit-a", 0.2)
    payload = snapshot()  # what a worker would send: this process's intake samples
    assert b"smtp_gateway_reloads_total" not in payload  # not an intake family
    workers = WorkerMetrics()
    workers.update(101, payload)
    workers.update(102, payload)
    totals = workers.totals()
    key = ("smtp_gateway_messages_received_total", (("listener", "unit-a"),))
    own = totals[key] / 2
    workers.retire(101)
    workers.update(102, b"not json")  # ignored: the last good snapshot stays
    assert workers.totals()[key] == 2 * own
    workers.update(103, payload)
    assert workers.totals()[key] == 3 * own


def test_exposition_merges_worker_samples_into_one_family() -> None:
    metrics.record_message_received("unit-b")
    metrics.observe_intake_latency("unit-b", 0.2)
    alone = metrics.render(WorkerMetrics()).decode()
    workers = WorkerMetrics()
    workers.update(1, snapshot())
    merged = metrics.render(workers).decode()
    name = "smtp_gateway_messages_received_total"
    assert value(merged, name, listener="unit-b") == 2 * value(alone, name, listener="unit-b")
    bucket = "smtp_gateway_intake_latency_seconds_bucket"
    assert value(merged, bucket, listener="unit-b", le="0.25") == 2 * value(
        alone, bucket, listener="unit-b", le="0.25")
    assert merged.count("# TYPE smtp_gateway_messages_received_total counter") == 1
