"""Suppressions and consent: search, add, remove (with a reason, audited), export as
CSV; for an address, its consent history (with purposes) and the bounce or
complaint behind an automatic suppression (Postfix: access(5) tables, edited by
hand; here the same store as `smtp-gateway suppress|consent` and /v1/suppressions).

Targets are normalized as the CLI and API do (the running policy's strip_plus_tags);
scopes are checked against the running consent.yaml.

Security: form fields are untrusted; they are normalized or checked against fixed
lists before use, and shown escaped.
"""

from __future__ import annotations

import io
import re
from urllib.parse import urlencode

from aiohttp import web

from gateway.console.app import View, guarded, redirect
from gateway.console.page import esc, form, link, table, when
from gateway.model import Suppression, SuppressionReason
from gateway.policy.addresses import normalize_target
from gateway.state.suppressions import write_suppression_csv

__all__ = ["add_suppression", "export_csv", "remove_suppression", "suppressions_page"]

SHOWN = 200
_QUEUE_ID = re.compile(r"queue id (\S+)")


@guarded
async def suppressions_page(view: View) -> web.StreamResponse:
    query = view.request.query
    q = query.get("q", "").strip()
    state, now = view.ctx.gateway.state, view.ctx.now()
    body = [f'<p class="ok">{esc(query["done"])}</p>' if query.get("done") else "",
            '<form method="get" class="row"><label>Address or @domain<input name="q" '
            f'value="{esc(q)}" size="30"></label><button type="submit">Search</button> '
            f'{link("/console/suppressions.csv", "Export all as CSV")}</form>']
    if q:
        try:
            target = normalize_target(q, view.ctx.policy_settings()[0])
        except ValueError as exc:
            body.append(f'<p class="alert">{esc(exc)}</p>')
            return view.render("Suppressions and consent", "".join(body), "suppressions")
        entries = await state.suppressions.lookup((target,), now)
        body.append(f"<h2>Suppressions of {esc(target)}</h2>" + _entries(view, entries))
        if not target.startswith("@"):
            body.append(f"<h2>Consent of {esc(target)}</h2>" + await _consent(view, target))
    else:
        entries = await state.suppressions.page(("", ""), SHOWN)
        count = await state.suppressions.count()
        body.append(f"<h2>Suppressed ({count}; the first {min(count, SHOWN)})</h2>"
                    + _entries(view, entries))
    body.append("<h2>Add a suppression</h2>" + _add_form(view, q))
    return view.render("Suppressions and consent", "".join(body), "suppressions")


def _entries(view: View, entries: list[Suppression]) -> str:
    rows = []
    for s in entries:
        found = _QUEUE_ID.search(s.note)
        behind = (link("/console/trace", f"trace {found.group(1)}", by="queue_id",
                       q=found.group(1)) if found else "")
        remove = form("/console/suppressions/remove", view.session.csrf,
                      f'<input type="hidden" name="target" value="{esc(s.target)}">'
                      f'<input type="hidden" name="scope" value="{esc(s.scope)}">'
                      '<input name="why" placeholder="reason for removing" required size="18">',
                      button="Remove", danger=True, inline=True)
        rows.append([f"<code>{esc(s.target)}</code>", esc(s.scope), esc(s.reason.value),
                     when(s.created), esc(s.added_by), when(s.expires),
                     f"{esc(s.note)} {behind}", remove])
    return table(["target", "scope", "reason", "since (UTC)", "by", "until", "why", ""], rows)


async def _consent(view: View, address: str) -> str:
    history = await view.ctx.gateway.state.consent.history(address)
    rows = [[when(r.time), esc(r.category), "granted" if r.granted else "withdrawn",
             esc(r.method), esc(" ".join(r.purposes) or "-"), esc(r.source)]
            for r in reversed(history)]
    return table(["time (UTC)", "category", "status", "method", "purposes", "source"], rows)


def _add_form(view: View, q: str) -> str:
    scopes = ["all", *view.ctx.policy_settings()[1].categories]
    scope_options = "".join(f"<option>{esc(s)}</option>" for s in scopes)
    reasons = "".join(f'<option{" selected" if r is SuppressionReason.MANUAL else ""}>'
                      f"{r.value}</option>" for r in SuppressionReason)
    inner = (f'<div class="row"><label>Address or @domain<input name="target" required '
             f'value="{esc(q)}" size="28"></label><label>Scope<select name="scope">'
             f'{scope_options}</select></label><label>Reason<select name="reason">{reasons}'
             '</select></label><label>Note<input name="note" size="24"></label></div>')
    return form("/console/suppressions/add", view.session.csrf, inner, button="Suppress")


def _back(target: str, note: str) -> web.Response:
    return redirect("/console/suppressions?" + urlencode({"q": target, "done": note}))


@guarded
async def add_suppression(view: View) -> web.StreamResponse:
    strip, consent = view.ctx.policy_settings()
    scope = view.field("scope") or "all"
    try:
        target = normalize_target(view.field("target"), strip)
        reason = SuppressionReason(view.field("reason") or "manual")
        if scope != "all" and scope not in consent.categories:
            raise ValueError(f"unknown scope '{scope}'")
    except ValueError as exc:
        return redirect("/console/suppressions?" + urlencode({"done": f"not added: {exc}"}))
    now = view.ctx.now()
    entry = Suppression(target, reason, scope, now, view.actor, None, view.field("note"))
    await view.ctx.gateway.state.suppressions.add([entry], view.actor, now)
    return _back(target, f"suppressed {target} ({scope})")


@guarded
async def remove_suppression(view: View) -> web.StreamResponse:
    why = view.field("why")
    try:
        target = normalize_target(view.field("target"), view.ctx.policy_settings()[0])
    except ValueError as exc:
        return redirect("/console/suppressions?" + urlencode({"done": str(exc)}))
    if not why:
        return _back(target, "not removed: give a reason")
    scope = view.field("scope") or None
    removed = await view.ctx.gateway.state.suppressions.remove(target, scope, view.actor,
                                                               view.ctx.now())
    # The store audits the removal; the operator's reason goes beside it.
    await view.audit("suppress.remove.reason", {"target": target, "scope": scope or "*",
                                                   "reason": why, "removed": removed})
    return _back(target, f"removed {removed} suppression(s) of {target}")


@guarded
async def export_csv(view: View) -> web.StreamResponse:
    out = io.StringIO()
    write_suppression_csv(await view.ctx.gateway.state.suppressions.all(), out)
    await view.audit("suppress.export", {})
    return web.Response(text=out.getvalue(), content_type="text/csv", headers={
        "Content-Disposition": 'attachment; filename="suppressions.csv"',
        "Cache-Control": "no-store"})
