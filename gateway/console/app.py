"""The console's plumbing on the admin listener: its state (sessions, event counts), the
session/CSRF guard every page goes through, login and logout (no Postfix
counterpart; Postal's web UI is the model).

Console routes are named `public:console.*` so that the admin API's bearer-token
middleware lets them through: a browser has no bearer token. Each of them is
guarded here instead — a page without a valid session redirects to the login form,
a change without a session or with a bad CSRF token or foreign Origin gets 403.

Security: the login form takes the admin token (compared in constant time by
gateway.admin.auth.match_token); session cookies and CSRF in gateway.console.session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from multidict import MultiDictProxy

from gateway.admin.auth import PUBLIC, match_token
from gateway.admin.context import CONTEXT, AdminContext, context
from gateway.console.page import esc, page
from gateway.console.session import COOKIE, Session, Sessions, csrf_ok, origin_ok, set_cookie
from gateway.state.counts import Counts, EventCounts
from gateway.state.counts_postgres import PostgresEventCounts
from gateway.state.db import StateDb
from gateway.state.migrations.sqlite import EVENTS

__all__ = ["CONSOLE", "Console", "View", "guarded", "redirect", "route_name", "setup_console"]

log = logging.getLogger(__name__)

ROLLUP_INTERVAL = 30.0  # seconds between background roll-ups of the event counts


@dataclass
class Console:
    sessions: Sessions = field(default_factory=Sessions)
    counts: Counts | None = None  # set while the app runs (gateway.state.counts)


CONSOLE = web.AppKey("console", Console)


@dataclass(frozen=True)
class View:
    """What a guarded handler gets: the request, the admin context, the session."""

    request: web.Request
    ctx: AdminContext
    session: Session
    console: Console
    form: MultiDictProxy[str | bytes | bytearray | web.FileField] | None = None

    @property
    def actor(self) -> str:
        return self.session.actor

    def field(self, name: str) -> str:
        value = self.form.get(name) if self.form is not None else None
        return value.strip() if isinstance(value, str) else ""

    def fields(self, name: str) -> list[str]:
        if self.form is None:
            return []
        return [v for v in self.form.getall(name, []) if isinstance(v, str)]

    def render(self, title: str, body: str, current: str, status: int = 200) -> web.Response:
        return page(title, body, current=current, csrf=self.session.csrf, actor=self.actor,
                    status=status)

    async def audit(self, action: str, detail: dict[str, object]) -> None:
        await self.ctx.gateway.state.audit.record(self.actor, action, detail, self.ctx.now())


Handler = Callable[[View], Awaitable[web.StreamResponse]]


def route_name(name: str) -> str:
    return f"{PUBLIC}console.{name}"


def guarded(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A page or action that needs a session (and, for POST, the CSRF token)."""

    async def run(request: web.Request) -> web.StreamResponse:
        ctx = context(request)
        console = request.app[CONSOLE]
        session = console.sessions.get(request.cookies.get(COOKIE), ctx.now())
        if request.method == "GET":
            if session is None:
                return redirect("/console/login")
            return await handler(View(request, ctx, session, console))
        form = await request.post()
        if session is None or not origin_ok(request) or not csrf_ok(session, form.get("csrf")):
            log.warning("console: refused a %s to %s without a valid session and CSRF token",
                        request.method, request.path)
            return page("Refused", "<p>This change was refused: the session has ended or "
                        "the form did not come from this console. "
                        '<a href="/console/login">Log in again</a>.</p>', status=403)
        return await handler(View(request, ctx, session, console, form))

    run.__name__ = handler.__name__
    return run


async def root(request: web.Request) -> web.StreamResponse:
    return redirect("/console/overview")


def _login_body(problem: str = "") -> str:
    note = f'<p class="alert">{esc(problem)}</p>' if problem else ""
    return (f'{note}<form method="post" action="/console/login">'
            '<label>Admin token<br><input type="password" name="token" autocomplete='
            '"current-password" required size="40"></label><br>'
            '<button type="submit">Log in</button></form>'
            '<p class="muted">The token of admin.token_file or admin.tokens in config.yaml.</p>')


async def login_form(request: web.Request) -> web.StreamResponse:
    return page("Log in", _login_body())


async def login(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    admin = ctx.gateway.config.admin
    form = await request.post()
    given = form.get("token")
    token = (match_token(given.strip(), admin.tokens)
             if admin is not None and isinstance(given, str) and origin_ok(request) else None)
    if token is None:
        log.warning("console: a login with a wrong token from %s", request.remote)
        return page("Log in", _login_body("That token is not valid."), status=401)
    actor = f"console:{token.name}"
    sid, _ = request.app[CONSOLE].sessions.create(actor, ctx.now())
    await ctx.gateway.state.audit.record(actor, "console.login",
                                         {"remote": request.remote or ""}, ctx.now())
    response = redirect("/console/overview")
    set_cookie(response, sid, secure=not (admin is not None and admin.is_loopback))
    return response


@guarded
async def logout(view: View) -> web.StreamResponse:
    view.console.sessions.end(view.request.cookies.get(COOKIE))
    await view.audit("console.logout", {})
    response = redirect("/console/login")
    response.del_cookie(COOKIE, path="/console")
    return response


def setup_console(app: web.Application) -> None:
    app[CONSOLE] = Console()
    app.cleanup_ctx.append(_counts_context)
    r = app.router
    r.add_get("/console", root, name=route_name("root"), allow_head=False)
    r.add_get("/console/login", login_form, name=route_name("login_form"), allow_head=False)
    r.add_post("/console/login", login, name=route_name("login"))
    r.add_post("/console/logout", logout, name=route_name("logout"))


async def _counts_context(app: web.Application) -> AsyncIterator[None]:
    """The state backend's event counts, rolled up every ROLLUP_INTERVAL."""
    console = app[CONSOLE]
    state = app[CONTEXT].gateway.state
    counts: Counts
    if state.postgres is not None:
        counts = PostgresEventCounts(state.postgres)
    else:
        counts = EventCounts(StateDb(state.path, EVENTS))
    console.counts = counts
    task = asyncio.get_running_loop().create_task(_rollups(counts))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await counts.close()


async def _rollups(counts: Counts) -> None:
    while True:
        try:
            await counts.rollup()
        except Exception as exc:  # a locked or missing state.db: next time
            log.warning("console: event counts not rolled up: %s", exc)
        await asyncio.sleep(ROLLUP_INTERVAL)


def redirect(location: str) -> web.Response:
    """303 See Other: after a POST, the browser GETs the page that shows the result."""
    return web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})
