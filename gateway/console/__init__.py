"""The operator console: server-rendered pages on the admin listener that answer "did
B-1234's confirmation arrive?", "what is stuck or refused?", "are newsletters read?"
(Postal's web UI; KumoMTA has none). Plain HTML and SVG: no script at all, nothing
fetched from elsewhere (README: "The console").

app.py           state, session guard, login/logout   session.py  cookies and CSRF
overview.py      figures, charts, alerts              trace.py    a message's life
queue.py         deferred and held mail, bulk actions suppressions.py  and consent
page.py charts.py  HTML and SVG helpers
"""

from __future__ import annotations

from aiohttp import web

from gateway.console.app import route_name, setup_console
from gateway.console.overview import overview
from gateway.console.queue import bulk, queue_page
from gateway.console.suppressions import (
    add_suppression,
    export_csv,
    remove_suppression,
    suppressions_page,
)
from gateway.console.trace import trace_action, trace_page

__all__ = ["add_console_routes"]


def add_console_routes(app: web.Application) -> None:
    setup_console(app)
    r = app.router
    r.add_get("/console/overview", overview, name=route_name("overview"), allow_head=False)
    r.add_get("/console/trace", trace_page, name=route_name("trace"), allow_head=False)
    r.add_post("/console/trace/action", trace_action, name=route_name("trace.action"))
    r.add_get("/console/queue", queue_page, name=route_name("queue"), allow_head=False)
    r.add_post("/console/queue/bulk", bulk, name=route_name("queue.bulk"))
    r.add_get("/console/suppressions", suppressions_page, name=route_name("suppressions"),
              allow_head=False)
    r.add_get("/console/suppressions.csv", export_csv, name=route_name("suppressions.csv"),
              allow_head=False)
    r.add_post("/console/suppressions/add", add_suppression,
               name=route_name("suppressions.add"))
    r.add_post("/console/suppressions/remove", remove_suppression,
               name=route_name("suppressions.remove"))
