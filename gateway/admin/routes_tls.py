"""TLS reports (RFC 8460) on demand: `POST /v1/tls-reports/send` sends every finished
day's reports not sent yet, at once, instead of waiting for `send_after` (the daily job
in gateway.delivery.tlsrpt does the same work; one node claims each report, so a call
while the job runs sends nothing twice).
"""

from __future__ import annotations

from aiohttp import web

from gateway.admin.context import actor, context
from gateway.admin.errors import ApiError, json_response

__all__ = ["add_tls_routes"]


def add_tls_routes(app: web.Application) -> None:
    app.router.add_post("/v1/tls-reports/send", send_reports, name="tls_reports.send")


async def send_reports(request: web.Request) -> web.Response:
    ctx = context(request)
    reporter = ctx.gateway.tls_reports
    if reporter is None:
        raise ApiError(409, "tls_reports_off", "TLS reports are off "
                       "(delivery.tls_reports.enabled: false)")
    sent = await reporter.send_due(force=True)
    await ctx.gateway.state.audit.record(actor(request), "tls_reports.send",
                                         {"sent": len(sent)}, ctx.now())
    return json_response({"sent": sent})
