"""Intake metrics from worker processes, summed into the master's exposition.

With `intake_workers` ≥ 2 the SMTP sessions — and so the intake counters and
the intake latency histogram — live in worker processes, while /metrics is
served by the master. prometheus_client's multiprocess mode would need
PROMETHEUS_MULTIPROC_DIR set before the library is first imported in every
process, mmap files per pid, and rules for dead pids; instead each worker
sends its own cumulative values of the intake families (INTAKE_FAMILIES)
over the pipe it already uses for queue ids, as one line
`METRICS <json>` at most once a second and once more when it stops. The
master keeps the last snapshot of each live worker; when a worker exits its
last snapshot is folded into a `retired` total, so a restarted worker (whose
counters start again at zero) never makes a sum go down. A scrape thus lags
the workers by at most a second, and nothing counted by a worker that said
goodbye is lost (a worker killed by SIGKILL loses at most its last second).

Security: the master parses these lines from its own child processes; a line
that does not parse is ignored.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable

from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample

from gateway.metrics.families import INTAKE_FAMILIES, REGISTRY

__all__ = ["METRICS_PREFIX", "WorkerMetrics", "merge", "snapshot"]

log = logging.getLogger(__name__)

METRICS_PREFIX = b"METRICS "

SampleKey = tuple[str, tuple[tuple[str, str], ...]]  # sample name, sorted labels


def snapshot() -> bytes:
    """This process's intake samples, as the JSON a worker sends (without the prefix)."""
    rows = [[s.name, s.labels, s.value]
            for family in REGISTRY.collect() if family.name in INTAKE_FAMILIES
            for s in family.samples]
    return json.dumps(rows, separators=(",", ":")).encode()


def _parse(payload: bytes) -> dict[SampleKey, float] | None:
    try:
        rows = json.loads(payload)
        return {(str(name), tuple(sorted((str(k), str(v)) for k, v in labels.items()))):
                float(value) for name, labels, value in rows}
    except (ValueError, TypeError, AttributeError):
        return None


class WorkerMetrics:
    """The master's view of its workers' intake samples."""

    def __init__(self) -> None:
        self._live: dict[int, dict[SampleKey, float]] = {}
        self._retired: dict[SampleKey, float] = {}

    def update(self, pid: int, payload: bytes) -> None:
        parsed = _parse(payload)
        if parsed is None:
            log.warning("intake worker %d sent metrics that do not parse; ignored", pid)
            return
        self._live[pid] = parsed

    def retire(self, pid: int) -> None:
        """The worker exited: keep what it counted, forever."""
        for key, value in self._live.pop(pid, {}).items():
            self._retired[key] = self._retired.get(key, 0.0) + value

    def totals(self) -> dict[SampleKey, float]:
        out = dict(self._retired)
        for samples in self._live.values():
            for key, value in samples.items():
                out[key] = out.get(key, 0.0) + value
        return out

    def __repr__(self) -> str:
        return f"<WorkerMetrics live={sorted(self._live)} retired={len(self._retired)}>"


def merge(families: Iterable[Metric], extra: dict[SampleKey, float]) -> list[Metric]:
    """`families` with `extra` added sample by sample (same name and labels: summed).

    Every intake family is declared in the master too (same module), so each worker
    sample finds its family even when the master itself recorded nothing.
    """
    out = []
    pending = dict(extra)
    for family in families:
        if family.name not in INTAKE_FAMILIES or not pending:
            out.append(family)
            continue
        merged = Metric(family.name, family.documentation, family.type, family.unit)
        values: dict[SampleKey, float] = {}
        for s in family.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            values[key] = values.get(key, 0.0) + s.value
        for key in [k for k in pending if _belongs(k[0], family)]:
            values[key] = values.get(key, 0.0) + pending.pop(key)
        for (name, labels), value in values.items():
            merged.samples.append(Sample(name, dict(labels), value))
        out.append(merged)
    return out


def _belongs(sample_name: str, family: Metric) -> bool:
    if family.type == "counter":
        return sample_name == family.name + "_total"
    if family.type == "histogram":
        return sample_name in (family.name + "_bucket", family.name + "_count",
                               family.name + "_sum")
    return sample_name == family.name
