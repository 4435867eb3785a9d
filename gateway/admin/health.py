"""/healthz (the process answers) and /readyz (it can take and keep mail right now).

Ready means: the state store answers and its directory takes a write, the
spool takes a write (a probe file written, fsynced and removed in spool/tmp —
a full disk fails here), each shared backend (PostgreSQL, Redis) answers this
node, and every listener (or intake worker) is up. Not ready answers 503 with
each reason, for a load balancer or an operator.

Both answers name the node (`node_name:`) and report each shared backend as
this node sees it: `{"state": "up"|"down", "last_error": "ConnectionRefusedError",
"last_error_age": 12.5}` (seconds; null: no error since start) — a node of N
that alone cannot reach the database is told apart from a database that is down.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from aiohttp import web

from gateway.admin.auth import LOCAL, PUBLIC
from gateway.admin.context import context
from gateway.admin.errors import error_response, json_response
from gateway.metrics import exposition
from gateway.state.backoff import BackendHealth

__all__ = ["add_health_routes", "probe_write"]


def add_health_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz, name=f"{PUBLIC}healthz", allow_head=False)
    app.router.add_get("/readyz", readyz, name=f"{PUBLIC}readyz", allow_head=False)
    app.router.add_get("/metrics", metrics, name=f"{LOCAL}metrics", allow_head=False)


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def metrics(request: web.Request) -> web.Response:
    body, content_type = exposition()
    response = web.Response(body=body)
    response.headers["Content-Type"] = content_type  # with its version parameter
    return response


def probe_write(directory: Path) -> str | None:
    """None if a small file can be written durably in `directory`, else why not."""
    path = directory / f".readyz.{os.getpid()}"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"ready\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.unlink(path)
    except OSError as exc:
        return f"{directory}: {exc.strerror or exc}"
    return None


async def readyz(request: web.Request) -> web.Response:
    ctx = context(request)
    gw = ctx.gateway
    reasons: list[str] = []
    for name, directory in (("state", gw.config.data_dir), ("spool", gw.spool.root / "tmp")):
        problem = await asyncio.to_thread(probe_write, directory)
        if problem:
            reasons.append(f"{name} not writable: {problem}")
    if gw.state.backend == "sqlite":  # a shared one is asked by probe() below
        try:
            await gw.state.events.by_queue_id("-")  # the event store answers (no such id)
            if gw.policy.stage is not None:
                await gw.state.suppressions.lookup(("readyz@invalid",), ctx.now())
        except Exception as exc:
            reasons.append(f"state store: {exc}")
    backends = await gw.state.probe()  # PostgreSQL, Redis
    reasons.extend(_down(name, report) for name, report in backends.items() if not report.up)
    reasons.extend(gw.listener_problems())
    body = {"node": gw.config.node_name,
            "backends": {name: _report(r) for name, r in backends.items()}}
    if reasons:
        return error_response(503, "not_ready", "; ".join(reasons),
                              extra={"reasons": reasons, **body})
    return json_response({"status": "ready", **body})


def _report(report: BackendHealth) -> dict[str, object]:
    age = None if report.last_error_age is None else round(report.last_error_age, 1)
    return {"state": "up" if report.up else "down", "last_error": report.last_error,
            "last_error_age": age}


def _down(name: str, report: BackendHealth) -> str:
    if report.last_error is None or report.last_error_age is None:
        return f"{name} is unreachable"
    return f"{name} is unreachable ({report.last_error} {report.last_error_age:.1f}s ago)"
