"""gateway.metrics.queue on a real spool: directories counted, headers read for ages."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.registry import CollectorRegistry

from gateway.clock import ManualClock
from gateway.delivery.smarthosts import CircuitBreaker
from gateway.metrics.queue import BreakerCollector, QueueSampler
from gateway.model import BreakerSettings, Client, Envelope, Route, Smarthost
from gateway.spool import Spool


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


async def test_incoming_files_are_counted_and_their_age_read(tmp_path: Path) -> None:
    clock = ManualClock(1_000.0)
    spool = Spool(tmp_path / "spool", clock, fsync=False)
    await spool.open()
    try:
        for at, category in ((900.0, "transactional"), (950.0, "marketing"),
                             (990.0, "transactional")):
            env = Envelope("app@example.com", ("g@example.net",), Client("relay", "127.0.0.1"),
                           at, category=category)
            await spool.put(env, b"Subject: x\r\n\r\nx\r\n", queue_id=spool.new_id())
        sampler = QueueSampler(spool, clock)
        await sampler.sample()
        registry = CollectorRegistry()
        registry.register(sampler)
        clock.advance(60)
        assert value(registry, "smtp_gateway_queue_messages", state="incoming", route="none") == 3
        assert value(registry, "smtp_gateway_queue_messages", state="deferred", route="none") == 0
        assert value(registry, "smtp_gateway_queue_oldest_message_age_seconds",
                     category="transactional") == 160.0
        assert value(registry, "smtp_gateway_queue_oldest_message_age_seconds",
                     category="marketing") == 110.0
    finally:
        await spool.close()


def test_every_configured_smarthost_has_a_state() -> None:
    route = Route("providers", "smarthost", smarthosts=(
        Smarthost("primary", "a.example"), Smarthost("backup", "b.example")))
    primary = CircuitBreaker("primary", BreakerSettings(failures=1), "providers")
    primary.record(False, 0.0)
    registry = CollectorRegistry()
    registry.register(BreakerCollector(lambda: (route,), lambda: [primary]))
    name = "smtp_gateway_smarthost_circuit_state"
    assert value(registry, name, route="providers", smarthost="primary", state="open") == 1
    assert value(registry, name, route="providers", smarthost="primary", state="closed") == 0
    # Never used yet: closed.
    assert value(registry, name, route="providers", smarthost="backup", state="closed") == 1
    assert value(registry, name, route="providers", smarthost="backup", state="half_open") == 0
