"""Queue endpoints: list (filters, paging), show, retry, hold, release, delete.

The work is gateway.scheduler.queue_admin's, the same code as `smtp-gateway queue …`;
here it runs on the gateway's own spool and event store. Every change gets an
audit row (actor "api:<token name>").

Paging: `limit` rows per page, ordered by queue id; `next` is the cursor for
`after` (null at the end). Filters are applied while scanning, so a page may
hold fewer than `limit` rows and still have a `next` (at most SCAN_PAGES
batches are scanned per request: a filter that matches nothing cannot make
one request read the whole queue).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from gateway.admin.context import actor, context, limit_param, query_param
from gateway.admin.errors import ApiError, json_response
from gateway.model import QueueState
from gateway.policy.addresses import domain_of, normalize_address, normalize_domain_name
from gateway.scheduler.queue_admin import QueueAdmin, QueueAdminError, QueueRow

__all__ = ["SCAN_PAGES", "add_queue_routes"]

SCAN_PAGES = 50
_STATUS = {"bad_id": 400, "not_found": 404, "held": 409, "not_held": 409, "conflict": 409,
           "unreadable": 500, "no_spool": 503}


def add_queue_routes(app: web.Application) -> None:
    app.router.add_get("/v1/queue", list_queue, name="queue.list", allow_head=False)
    app.router.add_get("/v1/queue/{id}", show, name="queue.show", allow_head=False)
    app.router.add_delete("/v1/queue/{id}", delete, name="queue.delete")
    for action in ("retry", "hold", "release"):
        app.router.add_post(f"/v1/queue/{{id}}/{action}", _action(action),
                            name=f"queue.{action}")


def _filters(request: web.Request) -> Callable[[QueueRow], bool]:
    route = query_param(request, "route") or None
    domain = normalize_domain_name(query_param(request, "domain") or "") or None
    sender = query_param(request, "sender")
    wanted_sender = normalize_address(sender) if sender is not None else None

    def keep(row: QueueRow) -> bool:
        if route and not any(r["route"] == route for r in row.recipients):
            return False
        if domain and not any(domain_of(r["address"]) == domain for r in row.recipients):
            return False
        return wanted_sender is None or normalize_address(row.sender) == wanted_sender

    return keep


def _state(request: web.Request) -> str | None:
    state = query_param(request, "state")
    if state is not None and state not in {s.value for s in QueueState}:
        raise ApiError(400, "bad_parameter", f"'state' must be one of: "
                       f"{', '.join(s.value for s in QueueState)}")
    return state


async def list_queue(request: web.Request) -> web.Response:
    ctx = context(request)
    limit = limit_param(request)
    state = _state(request)
    keep = _filters(request)
    cursor = query_param(request, "after") or ""
    queue = ctx.queue()
    items: list[dict[str, Any]] = []
    seen: set[str] = set()
    exhausted = False
    for _ in range(SCAN_PAGES):
        try:
            batch = await queue.listing(state=state, limit=limit, after=cursor)
        except QueueAdminError as exc:
            raise _api_error(exc) from None
        for row in batch:
            if row.id not in seen and keep(row):
                seen.add(row.id)
                items.append(_row(row))
        if batch:
            cursor = batch[-1].id
        if len(batch) < limit:
            exhausted = True
            break
        if len(items) >= limit:
            break
    items = items[:limit]
    if len(items) == limit:
        cursor = items[-1]["id"]
    return json_response({"items": items, "next": None if exhausted and len(items) < limit
                          else cursor})


def _row(row: QueueRow) -> dict[str, Any]:
    return {"id": row.id, "state": row.state, "size": row.size, "attempts": row.attempts,
            "created_at": row.created_at, "next_attempt_at": row.next_attempt_at,
            "sender": row.sender, "message_id": row.message_id, "priority": row.priority,
            "recipients": row.recipients}


async def show(request: web.Request) -> web.Response:
    ctx = context(request)
    try:
        info = await ctx.queue().show(request.match_info["id"])
    except QueueAdminError as exc:
        raise _api_error(exc) from None
    return json_response(info)


def _action(name: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        return await _change(request, name, getattr(QueueAdmin, name))
    handler.__name__ = name
    return handler


async def delete(request: web.Request) -> web.Response:
    return await _change(request, "delete", QueueAdmin.delete)


async def _change(request: web.Request, name: str,
                  method: Callable[[QueueAdmin, str], Awaitable[str]]) -> web.Response:
    ctx = context(request)
    queue_id = request.match_info["id"]
    try:
        queue = ctx.queue()
        result = await method(queue, queue_id)
    except QueueAdminError as exc:
        raise _api_error(exc) from None
    await queue.index.flush()  # the answer means done, as the CLI's exit does
    await ctx.gateway.state.audit.record(actor(request), f"queue.{name}",
                                         {"queue_id": queue_id, "result": result}, ctx.now())
    return json_response({"id": queue_id, "action": name, "result": result})


def _api_error(exc: QueueAdminError) -> ApiError:
    return ApiError(_STATUS.get(exc.code, 500), exc.code, str(exc))
