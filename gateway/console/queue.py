"""Queue: deferred and held mail, filtered by domain, route, priority, age and last
reply; hold, release, retry or delete one message or many, after a confirmation
(Postfix's `mailq` + `postsuper -h/-H/-d` + `postqueue -i`, in a page).

The work is gateway.scheduler.queue_admin's, as for the CLI and the admin API; each
change is an audit row with the console actor, like the API's.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from urllib.parse import urlencode

from aiohttp import web

from gateway.console.app import View, guarded, redirect
from gateway.console.page import csrf_field, esc, form, link, table
from gateway.policy.addresses import domain_of
from gateway.scheduler.queue_admin import QueueAdmin, QueueAdminError, QueueRow

__all__ = ["ACTIONS", "bulk", "perform", "queue_page"]

ACTIONS: dict[str, Callable[[QueueAdmin, str], Awaitable[str]]] = {
    "hold": QueueAdmin.hold, "release": QueueAdmin.release, "retry": QueueAdmin.retry,
    "delete": QueueAdmin.delete}
SCAN_PAGES = 20  # pages of 500 read per view at most
PAGE = 500
SHOWN = 200


async def perform(view: View, queue_id: str, action: str) -> tuple[bool, str]:
    """(done?, what happened) — one queue action, flushed and audited."""
    method = ACTIONS.get(action)
    if method is None:
        return False, f"unknown action {action!r}"
    queue = view.ctx.queue()
    try:
        result = await method(queue, queue_id)
    except QueueAdminError as exc:
        return False, str(exc)
    await queue.index.flush()
    await view.audit(f"queue.{action}", {"queue_id": queue_id, "result": result})
    return True, result


def _filters(view: View) -> dict[str, str]:
    q = view.request.query
    return {k: q.get(k, "").strip() for k in ("state", "domain", "route", "priority",
                                              "min_age", "reply")}


def _keep(row: QueueRow, f: dict[str, str], now: float) -> bool:
    pending = [r for r in row.recipients if r["state"] not in ("delivered", "bounced",
                                                              "expired")]
    if f["domain"] and not any(domain_of(r["address"]) == f["domain"].lower()
                               for r in pending):
        return False
    if f["route"] and not any(r["route"] == f["route"] for r in pending):
        return False
    if f["priority"] and row.priority != f["priority"]:
        return False
    if f["min_age"].isdigit() and now - row.created_at < int(f["min_age"]) * 60:
        return False
    return not f["reply"] or any(f["reply"].lower() in (r["last_reply"] or "").lower()
                                 for r in pending)


async def _rows(view: View, f: dict[str, str]) -> list[QueueRow]:
    queue, now = view.ctx.queue(), view.ctx.now()
    states = [f["state"]] if f["state"] in ("deferred", "hold") else ["deferred", "hold"]
    out: list[QueueRow] = []
    for state in states:
        after = ""
        for _ in range(SCAN_PAGES):
            batch = await queue.listing(state=state, limit=PAGE, after=after)
            out.extend(row for row in batch if _keep(row, f, now))
            if len(batch) < PAGE or len(out) >= SHOWN:
                break
            after = batch[-1].id
    return out[:SHOWN]


@guarded
async def queue_page(view: View) -> web.StreamResponse:
    f = _filters(view)
    started = time.monotonic()
    rows = await _rows(view, f)
    note = view.request.query.get("done", "")
    body = [f'<p class="ok">{esc(note)}</p>' if note else "", _filter_form(f),
            f'<form method="post" action="/console/queue/bulk">{csrf_field(view.session.csrf)}',
            table(["", "queue id", "state", "priority", "age", "sender", "recipients",
                   "last reply"], [_row(r, view.ctx.now()) for r in rows]),
            '<div class="row"><label>With the selected<select name="action">'
            + "".join(f'<option value="{a}">{a}</option>' for a in ACTIONS)
            + '</select></label><button type="submit">Continue…</button></div></form>',
            f'<p class="muted">{len(rows)} shown (at most {SHOWN}), '
            f"{time.monotonic() - started:.2f} s.</p>"]
    return view.render("Queue: deferred and held", "".join(body), "queue")


def _filter_form(f: dict[str, str]) -> str:
    def box(name: str, label: str, size: int = 14) -> str:
        return (f'<label>{label}<input name="{name}" value="{esc(f[name])}" size="{size}">'
                "</label>")
    states = "".join(f'<option value="{s}"{" selected" if f["state"] == s else ""}>'
                     f"{s or 'deferred + hold'}</option>" for s in ("", "deferred", "hold"))
    return (f'<form method="get" class="row"><label>State<select name="state">{states}'
            f'</select></label>{box("domain", "Domain")}{box("route", "Route", 10)}'
            f'{box("priority", "Priority", 8)}{box("min_age", "Older than (min)", 5)}'
            f'{box("reply", "Last reply contains")}<button type="submit">Filter</button></form>')


def _row(row: QueueRow, now: float) -> list[str]:
    replies = {r["last_reply"] for r in row.recipients if r["last_reply"]}
    return [f'<input type="checkbox" name="id" value="{esc(row.id)}" aria-label="select">',
            link("/console/trace", row.id, by="queue_id", q=row.id), esc(row.state),
            esc(row.priority), f"{(now - row.created_at) / 60:.0f} min", esc(row.sender),
            "<br>".join(f"{esc(r['address'])} ({esc(r['state'])})" for r in row.recipients),
            "<br>".join(esc(r) for r in sorted(replies))]


@guarded
async def bulk(view: View) -> web.StreamResponse:
    """First POST: the confirmation page; second (confirm=yes): the actions."""
    ids = sorted(set(view.fields("id")))
    action = view.field("action")
    if action not in ACTIONS or not ids:
        return redirect("/console/queue?" + urlencode({"done": "nothing selected"}))
    if view.field("confirm") != "yes":
        hidden = "".join(f'<input type="hidden" name="id" value="{esc(i)}">' for i in ids)
        inner = (f'{hidden}<input type="hidden" name="action" value="{esc(action)}">'
                 '<input type="hidden" name="confirm" value="yes">')
        body = (f"<p>{esc(action.capitalize())} these {len(ids)} messages?</p><ul>"
                + "".join(f"<li><code>{esc(i)}</code></li>" for i in ids) + "</ul>"
                + form("/console/queue/bulk", view.session.csrf, inner,
                       button=f"Yes, {action} {len(ids)}", danger=action == "delete")
                + f' {link("/console/queue", "Cancel")}')
        return view.render("Confirm", body, "queue")
    results = [await perform(view, i, action) for i in ids]
    done = sum(ok for ok, _ in results)
    failed = [text for ok, text in results if not ok]
    note = f"{action}: {done} of {len(ids)} done" + (f"; {'; '.join(failed)}" if failed else "")
    return redirect("/console/queue?" + urlencode({"done": note}))

