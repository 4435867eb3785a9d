"""The admin listener: an aiohttp application in the master process (started and stopped
by gateway.supervisor, like Postfix's showq/postqueue side, but over HTTP).

Routes (documented in openapi.yaml beside this file, served at /openapi.json):

    /healthz /readyz /openapi.json               public (probes)
    /metrics                                     public on loopback (Prometheus)
    /unsubscribe[/{token}]                       public, rate-limited (RFC 8058)
    /v1/trace /v1/summary                        message trace, figures
    /v1/queue[/{id}[/retry|hold|release]]        the queue (gateway.scheduler.queue_admin)
    /v1/suppressions[/{target}] /v1/consent[/{address}] /v1/audit
    /console/...                                 the operator console (gateway.console):
                                                 its own session login, not the token

Everything else needs a bearer token (gateway.admin.auth); every answer that
is not a success is a JSON error (gateway.admin.errors).

Security: listens on loopback unless configured otherwise (and then only with
a token); reads untrusted HTTP requests, bodies bounded by admin.max_body.
"""

from __future__ import annotations

import json
import logging
from functools import cache
from pathlib import Path

import yaml
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from gateway.admin.auth import PUBLIC, auth_middleware
from gateway.admin.context import CONTEXT, AdminContext, GatewayView
from gateway.admin.errors import error_middleware
from gateway.admin.health import add_health_routes
from gateway.admin.ratelimit import IpRateLimiter
from gateway.admin.routes_policy import add_policy_routes
from gateway.admin.routes_queue import add_queue_routes
from gateway.admin.routes_tls import add_tls_routes
from gateway.admin.routes_trace import add_trace_routes
from gateway.admin.settings import AdminConfig, AdminToken
from gateway.admin.unsubscribe import add_unsubscribe_routes
from gateway.console import add_console_routes
from gateway.core.listen import bind_tcp

__all__ = ["OPENAPI_PATH", "AdminServer", "build_app", "openapi_document"]

log = logging.getLogger(__name__)

OPENAPI_PATH = Path(__file__).with_name("openapi.yaml")


class _ClientErrorsInOneLine(logging.Filter):
    """aiohttp logs a malformed request (bad header bytes, a broken request line) at
    ERROR with a traceback. It is the client's fault, and anyone who can reach the
    public unsubscribe path could fill the log with them: one warning line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            first = (str(exc.message).strip().splitlines() or [""])[0]
            record.msg = f"{record.getMessage()}: {exc.code} {first}"
            record.args = None
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


logging.getLogger("aiohttp.server").addFilter(_ClientErrorsInOneLine())


@cache
def openapi_document() -> str:
    """openapi.yaml as JSON text (read once)."""
    return json.dumps(yaml.safe_load(OPENAPI_PATH.read_text(encoding="utf-8")))


async def _openapi(request: web.Request) -> web.Response:
    return web.Response(text=openapi_document(), content_type="application/json")


def build_app(ctx: AdminContext, settings: AdminConfig) -> web.Application:
    def tokens() -> tuple[AdminToken, ...]:
        admin = ctx.gateway.config.admin
        return admin.tokens if admin is not None else ()

    app = web.Application(
        middlewares=[error_middleware, auth_middleware(tokens, settings.is_loopback)],
        client_max_size=settings.max_body)
    app[CONTEXT] = ctx
    add_health_routes(app)
    app.router.add_get("/openapi.json", _openapi, name=f"{PUBLIC}openapi", allow_head=False)
    add_unsubscribe_routes(app)
    add_trace_routes(app)
    add_queue_routes(app)
    add_policy_routes(app)
    add_tls_routes(app)
    add_console_routes(app)  # the operator console (gateway.console), for browsers
    return app


class AdminServer:
    def __init__(self, gateway: GatewayView, settings: AdminConfig) -> None:
        self.settings = settings
        self.gateway = gateway
        self.port = settings.port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        gw = self.gateway
        limiter = IpRateLimiter(self.settings.unsubscribe_interval,
                                self.settings.unsubscribe_burst, gw.clock)
        app = build_app(AdminContext(gw, limiter), self.settings)
        # No access log: request lines would put unsubscribe tokens in the log.
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        sock = bind_tcp(self.settings.address, self.settings.port, "admin listener")
        self.port = int(sock.getsockname()[1])
        await web.SockSite(self._runner, sock).start()
        log.info("admin API on %s:%d (%d token%s)", self.settings.address, self.port,
                 len(self.settings.tokens), "" if len(self.settings.tokens) == 1 else "s")

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def __repr__(self) -> str:
        return f"<AdminServer {self.settings.address}:{self.port}>"
