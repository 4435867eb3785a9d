"""/healthz (the process answers) and /readyz (it can take and keep mail right now).

Ready means: the state store answers and its directory takes a write, the
spool takes a write (a probe file written, fsynced and removed in spool/tmp —
a full disk fails here), and every listener (or intake worker) is up. Not
ready answers 503 with each reason, for a load balancer or an operator.
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
    try:
        await gw.state.events.by_queue_id("-")  # the event store answers (no such id)
        if gw.policy.stage is not None:
            await gw.state.suppressions.lookup(("readyz@invalid",), ctx.now())
    except Exception as exc:
        reasons.append(f"state store: {exc}")
    reasons.extend(f"state store: {name} is unreachable"
                   for name, up in gw.state.health().items() if not up)  # PostgreSQL, Redis
    reasons.extend(gw.listener_problems())
    if reasons:
        return error_response(503, "not_ready", "; ".join(reasons), extra={"reasons": reasons})
    return json_response({"status": "ready"})
