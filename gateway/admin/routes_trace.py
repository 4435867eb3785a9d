"""Message trace and the summary of figures.

Trace: every event of every recipient of the messages found by queue id, by
Message-ID, or by a correlation header recorded at intake (admin.correlation_
headers, e.g. X-Booking-Id), grouped per message and recipient, with times,
route, host and the remote reply.

Summary: event counts over the last hour and the last day, by category and by
route (sent = recipients the apps handed in, i.e. `accepted` events).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.admin.context import context, int_param, query_param
from gateway.admin.errors import ApiError, json_response
from gateway.model import Event
from gateway.spool.queue_id import is_queue_id
from gateway.state.events import CATEGORY_TAG, Summary

__all__ = ["add_trace_routes", "group_events"]

TRACE_LIMIT = 100  # messages per trace answer (a booking id shared by many mails)
_WINDOWS = (("last_hour", 3600.0), ("last_day", 86400.0))
_NAMED = ("sent", "delivered", "bounced", "complained")


def add_trace_routes(app: web.Application) -> None:
    app.router.add_get("/v1/trace", trace, name="trace", allow_head=False)
    app.router.add_get("/v1/summary", summary, name="summary", allow_head=False)


async def trace(request: web.Request) -> web.Response:
    ctx = context(request)
    events_store = ctx.gateway.state.events
    q = {k: query_param(request, k) or "" for k in ("queue_id", "message_id", "header",
                                                     "value")}
    given = [k for k in ("queue_id", "message_id", "header") if q[k]]
    if len(given) != 1:
        raise ApiError(400, "bad_parameter",
                       "give exactly one of queue_id, message_id, or header with value")
    if "queue_id" in given:
        if not is_queue_id(q["queue_id"]):
            raise ApiError(400, "bad_parameter", f"'{q['queue_id']}' is not a queue id")
        events = await events_store.by_queue_id(q["queue_id"])
        query = {"queue_id": q["queue_id"]}
    elif "message_id" in given:
        events = await events_store.by_message_id(q["message_id"])
        query = {"message_id": q["message_id"]}
    else:
        name = q["header"].strip().lower()
        configured = ctx.gateway.config.admin.correlation_headers \
            if ctx.gateway.config.admin else ()
        if name not in configured:
            raise ApiError(400, "bad_parameter", f"'{q['header']}' is not a correlation header "
                           f"(admin.correlation_headers: {', '.join(configured) or 'none'})")
        if not q.get("value"):
            raise ApiError(400, "bad_parameter", "'value' is required with 'header'")
        events = await events_store.by_tag(name, q["value"], TRACE_LIMIT)
        query = {"header": name, "value": q["value"]}
    if not events:
        raise ApiError(404, "not_found", "no message found for " +
                       ", ".join(f"{k}={v}" for k, v in query.items()))
    tags = await events_store.tags(e.queue_id for e in events if e.queue_id)
    return json_response({"query": query, "messages": group_events(events, tags)})


def group_events(events: list[Event], tags: dict[str, dict[str, str]]) -> list[dict[str, Any]]:
    messages: dict[str, dict[str, Any]] = {}
    # By time, not by row: an intake worker's `accepted` batch can be committed after
    # the master's `delivered` (sorted() is stable: equal times keep the row order).
    for e in sorted(events, key=lambda e: e.time):
        m = messages.get(e.queue_id)
        if m is None:
            if len(messages) >= TRACE_LIMIT:
                continue
            mtags = dict(tags.get(e.queue_id, {}))
            category = mtags.pop(CATEGORY_TAG, None)
            m = messages[e.queue_id] = {"queue_id": e.queue_id, "message_id": e.message_id,
                                        "category": category, "headers": mtags,
                                        "recipients": {}, "events": []}
        m["message_id"] = m["message_id"] or e.message_id
        item = _event(e)
        if e.recipient is None:
            m["events"].append(item)
        else:
            m["recipients"].setdefault(e.recipient, []).append(item)
    return [{**m, "recipients": [{"address": a, "events": ev}
                                 for a, ev in m["recipients"].items()]}
            for m in messages.values()]


def _event(e: Event) -> dict[str, Any]:
    reply = ({"code": e.reply.code, "enhanced": e.reply.enhanced or None,
              "text": e.reply.text} if e.reply else None)
    return {"time": e.time, "type": e.type.value, "route": e.route, "host": e.host,
            "reply": reply, "detail": e.detail}


async def summary(request: web.Request) -> web.Response:
    ctx = context(request)
    now = ctx.now()
    hours = int_param(request, "hours", 0, 0, 24 * 90)
    windows = (("last_hours", hours * 3600.0),) if hours else _WINDOWS
    out: dict[str, Any] = {"now": now}
    for name, seconds in windows:
        out[name] = _figures(await ctx.gateway.state.events.summary(now - seconds))
    return json_response(out)


def _figures(s: Summary) -> dict[str, Any]:
    return {"since": s.since, "totals": _named(s.totals),
            "by_category": {k: _named(v) for k, v in sorted(s.by_category.items())},
            "by_route": {k: _named(v) for k, v in sorted(s.by_route.items())}}


def _named(counts: dict[str, int]) -> dict[str, int]:
    """The issue's four figures always present, then every event type seen."""
    out = {name: 0 for name in _NAMED}
    out["sent"] = counts.get("accepted", 0)
    for kind, n in counts.items():
        out[kind] = n
    return dict(sorted(out.items()))
