"""Trace: find a message by booking id (any correlation header), Message-ID, queue id
or recipient, and read its whole life as a timeline with the SMTP replies; hold,
release, retry or delete it from there (Postfix: grep the queue id through maillog,
then postsuper).

A recipient search reads the event history through its index by recipient
(events_recipient: delivered, bounced and expired mail as well as queued), the
LIMIT newest messages, and adds what the queue holds for the address (mail whose
events were not written, e.g. while a shared database was away).

Security: the query is untrusted text; it is only used as a bound SQL parameter or
compared, and everything shown is escaped.
"""

from __future__ import annotations

from urllib.parse import urlencode

from aiohttp import web

from gateway.console.app import View, guarded, redirect
from gateway.console.page import esc, form, table, when
from gateway.console.queue import ACTIONS, perform
from gateway.model import Event
from gateway.policy.addresses import normalize_address
from gateway.scheduler.queue_admin import QueueAdminError
from gateway.spool.queue_id import is_queue_id
from gateway.state.events import CATEGORY_TAG

__all__ = ["trace_action", "trace_page"]

LIMIT = 50  # messages per search
QUEUE_SCAN = 2_000  # queued messages looked through for a recipient (oldest first)


def _headers(view: View) -> tuple[str, ...]:
    admin = view.ctx.gateway.config.admin
    return admin.correlation_headers if admin is not None else ()


async def _find(view: View, by: str, q: str) -> list[Event]:
    events = view.ctx.gateway.state.events
    if by == "queue_id":
        return await events.by_queue_id(q) if is_queue_id(q) else []
    if by == "message_id":
        return await events.by_message_id(q if q.startswith("<") else f"<{q}>")
    if by == "recipient":
        found = await events.by_recipient(q, LIMIT)
        seen = {e.queue_id for e in found}
        address = normalize_address(q)
        for row in await view.ctx.queue().listing(limit=QUEUE_SCAN):
            if row.id not in seen and any(normalize_address(r["address"]) == address
                                          for r in row.recipients):
                found.extend(await events.by_queue_id(row.id))
        return found
    if by in _headers(view):
        return await events.by_tag(by, q, LIMIT)
    return []


@guarded
async def trace_page(view: View) -> web.StreamResponse:
    query = view.request.query
    headers = _headers(view)
    by = query.get("by", headers[0] if headers else "message_id")
    q = query.get("q", "").strip()
    body = [_search_form(headers, by, q)]
    note = query.get("done", "")
    if note:
        body.append(f'<p class="ok">{esc(note)}</p>')
    if q:
        events = await _find(view, by, q)
        if not events:
            body.append(f'<p class="alert">No message found for {esc(by)} = {esc(q)}.</p>')
        else:
            body.append(await _messages(view, events, by, q))
    return view.render("Trace a message", "".join(body), "trace")


def _search_form(headers: tuple[str, ...], by: str, q: str) -> str:
    choices = [(h, h) for h in headers] + [("message_id", "Message-ID"),
                                           ("queue_id", "queue id"),
                                           ("recipient", "recipient")]
    options = "".join(f'<option value="{esc(v)}"{" selected" if v == by else ""}>{esc(t)}'
                      "</option>" for v, t in choices)
    return (f'<form method="get" class="row"><label>Find by<select name="by">{options}'
            f'</select></label><label>Value<input name="q" value="{esc(q)}" size="30" '
            'required></label><button type="submit">Find</button></form>')


async def _messages(view: View, events: list[Event], by: str, q: str) -> str:
    by_message: dict[str, list[Event]] = {}
    for e in sorted(events, key=lambda e: e.time):  # stable: equal times keep row order
        by_message.setdefault(e.queue_id, []).append(e)
    tags = await view.ctx.gateway.state.events.tags(by_message)
    out = []
    for queue_id, items in list(by_message.items())[:LIMIT]:
        mtags = dict(tags.get(queue_id, {}))
        category = mtags.pop(CATEGORY_TAG, "-")
        message_id = next((e.message_id for e in items if e.message_id), "-")
        state = await _state(view, queue_id)
        heads = ", ".join(f"{esc(k)}: {esc(v)}" for k, v in sorted(mtags.items()))
        out.append(f'<section class="message" id="m-{esc(queue_id)}"><h2>Message '
                   f"<code>{esc(queue_id)}</code></h2><p>Message-ID <code>{esc(message_id)}"
                   f"</code> · category {esc(category)} · {heads or 'no correlation headers'}"
                   f' · <span class="state">{esc(state)}</span></p>'
                   + _buttons(view, queue_id, state, by, q) + _timeline(items) + "</section>")
    return "".join(out)


async def _state(view: View, queue_id: str) -> str:
    try:
        info = await view.ctx.queue().show(queue_id)
    except QueueAdminError:
        return "not in the queue"
    return f"in the queue: {info['state']}"


def _buttons(view: View, queue_id: str, state: str, by: str, q: str) -> str:
    if state == "not in the queue":
        return ""
    held = state.endswith("hold")
    wanted = ("release", "delete") if held else ("hold", "retry", "delete")
    back = (f'<input type="hidden" name="queue_id" value="{esc(queue_id)}">'
            f'<input type="hidden" name="by" value="{esc(by)}">'
            f'<input type="hidden" name="q" value="{esc(q)}">')
    return '<div class="row">' + "".join(
        form("/console/trace/action", view.session.csrf,
             back + f'<input type="hidden" name="action" value="{a}">',
             button=a.capitalize(), danger=a == "delete", inline=True)
        for a in wanted) + "</div>"


def _timeline(items: list[Event]) -> str:
    rows = [[when(e.time), esc(e.recipient or "-"), f"<strong>{esc(e.type.value)}</strong>",
             esc(e.route or ""), esc(e.host or ""), esc(str(e.reply) if e.reply else ""),
             esc(e.detail or "")] for e in items]
    return table(["time (UTC)", "recipient", "event", "route", "host", "reply", "detail"],
                 rows)


@guarded
async def trace_action(view: View) -> web.StreamResponse:
    queue_id, action = view.field("queue_id"), view.field("action")
    if action not in ACTIONS:
        return redirect("/console/trace")
    _, text = await perform(view, queue_id, action)
    back = {"by": view.field("by") or "queue_id", "q": view.field("q") or queue_id,
            "done": text}
    return redirect("/console/trace?" + urlencode(back))
