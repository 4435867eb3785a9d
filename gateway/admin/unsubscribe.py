"""The public one-click unsubscribe endpoint (RFC 8058) behind List-Unsubscribe.

The policy stage writes `List-Unsubscribe: <{base_url}?token=…>` (consent.yaml
`unsubscribe.base_url`); point base_url at this listener's `/unsubscribe`
(through a reverse proxy that exposes only that path). Both forms are served:
`/unsubscribe?token=T` (what the policy stage writes) and `/unsubscribe/T`.

- POST with the form body `List-Unsubscribe=One-Click` (RFC 8058 §3.1, what
  mailbox providers send; the confirmation page's button sends the same):
  consent for the token's category is withdrawn and an `unsubscribe`
  suppression scoped to that category is added — the address keeps getting
  its booking confirmations. Audit actor "unsubscribe"; an `unsubscribed`
  event (for webhooks and the summary). Repeating it changes nothing more.
- GET shows a short page with a button; it never changes anything (link
  scanners follow GETs).
- Per client IP rate limit (admin.unsubscribe_limit): 429 with Retry-After.
- A malformed or forged token gets one answer, whatever was wrong with it: no
  oracle.

Security: the token is untrusted (it comes from a URL); TokenSigner.verify
bounds and checks it in constant time. The address is shown masked on the
page and never logged.
"""

from __future__ import annotations

import html
import ipaddress
import logging

from aiohttp import web

from gateway.admin.auth import PUBLIC
from gateway.admin.context import AdminContext, context
from gateway.admin.errors import error_response, json_response
from gateway.model import ConsentRecord, Event, EventType, Suppression, SuppressionReason
from gateway.policy.addresses import normalize_address
from gateway.policy.unsubscribe_token import TokenSigner, UnsubscribeRequest

__all__ = ["ACTOR", "add_unsubscribe_routes", "mask"]

log = logging.getLogger(__name__)

ACTOR = "unsubscribe"
ONE_CLICK = "List-Unsubscribe=One-Click"
_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",  # the token is in the URL
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "form-action 'self'",
    "X-Frame-Options": "DENY",
}


def add_unsubscribe_routes(app: web.Application) -> None:
    for path in ("/unsubscribe", "/unsubscribe/{token}"):
        suffix = "" if path == "/unsubscribe" else ".path"
        app.router.add_get(path, show_page, name=f"{PUBLIC}unsubscribe.page{suffix}",
                           allow_head=False)
        app.router.add_post(path, one_click, name=f"{PUBLIC}unsubscribe.post{suffix}")


def mask(address: str) -> str:
    local, _, domain = address.rpartition("@")
    return f"{local[:1]}***@{domain}" if local else "***"


def _wants_html(request: web.Request) -> bool:
    return request.method == "GET" or "text/html" in request.headers.get("Accept", "")


def _page(title: str, body: str, status: int = 200) -> web.Response:
    text = (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width\">"
            f"<title>{html.escape(title)}</title></head>"
            f"<body style=\"font-family:sans-serif;max-width:32em;margin:3em auto\">"
            f"<h1>{html.escape(title)}</h1>{body}</body></html>")
    return web.Response(text=text, status=status, content_type="text/html",
                        headers=_HEADERS)


def _fail(request: web.Request, status: int, code: str, message: str,
          headers: dict[str, str] | None = None) -> web.Response:
    if _wants_html(request):
        response = _page("Unsubscribe", f"<p>{html.escape(message)}</p>", status)
        response.headers.update(headers or {})
        return response
    return error_response(status, code, message, headers={**_HEADERS, **(headers or {})})


def _client(request: web.Request, ctx: AdminContext) -> str:
    remote = request.remote or ""
    admin = ctx.gateway.config.admin
    proxies = admin.trusted_proxies if admin else ()
    try:
        trusted = any(ipaddress.ip_address(remote) in net for net in proxies)
    except ValueError:
        trusted = False
    if trusted:
        forwarded = request.headers.get("X-Forwarded-For", "").split(",")[-1].strip()
        return forwarded or remote
    return remote


def _check(request: web.Request) -> tuple[TokenSigner, UnsubscribeRequest] | web.Response:
    """The signer and the verified request, or the response that refuses it."""
    ctx = context(request)
    wait = ctx.unsubscribe_limiter.take(_client(request, ctx))
    if wait > 0:
        return _fail(request, 429, "rate_limited", "Too many requests; try again later.",
                     {"Retry-After": str(max(1, round(wait)))})
    stage = ctx.gateway.policy.stage
    signer = stage.policies.consent.unsubscribe if stage is not None else None
    if signer is None:
        return _fail(request, 404, "not_found", "Unsubscribing is not configured here.")
    token = request.match_info.get("token") or request.query.get("token", "")
    verified = signer.verify(token) if token else None
    if verified is None:
        return _fail(request, 400, "invalid_token", "This unsubscribe link is not valid.")
    return signer, verified


async def show_page(request: web.Request) -> web.Response:
    checked = _check(request)
    if isinstance(checked, web.Response):
        return checked
    _, req = checked
    body = (f"<p>Stop {html.escape(req.category)} mail to {html.escape(mask(req.address))}? "
            f"Other mail, such as booking confirmations, still arrives.</p>"
            f"<form method=\"post\"><input type=\"hidden\" name=\"List-Unsubscribe\" "
            f"value=\"One-Click\"><button type=\"submit\">Unsubscribe</button></form>")
    return _page("Unsubscribe", body)


async def one_click(request: web.Request) -> web.Response:
    checked = _check(request)
    if isinstance(checked, web.Response):
        return checked
    _, req = checked
    form = await request.post()
    if form.get("List-Unsubscribe") != "One-Click":
        return _fail(request, 400, "bad_request",
                     f"The request body must be {ONE_CLICK} (RFC 8058).")
    changed = await unsubscribe(context(request), req)
    if _wants_html(request):
        return _page("Unsubscribed", f"<p>{html.escape(mask(req.address))} gets no more "
                     f"{html.escape(req.category)} mail.</p>")
    return json_response({"status": "unsubscribed", "category": req.category,
                          "changed": changed}, headers=_HEADERS)


async def unsubscribe(ctx: AdminContext, req: UnsubscribeRequest) -> bool:
    """Withdraw consent and add the scoped suppression; False if both were in place."""
    strip, _ = ctx.policy_settings()
    state = ctx.gateway.state
    now = ctx.now()
    address = normalize_address(req.address)
    target = normalize_address(req.address, strip_plus_tags=strip)
    current = (await state.consent.current((address,), req.category)).get(address)
    suppressed = any(s.scope == req.category
                     for s in await state.suppressions.lookup((target,), now))
    if suppressed and current is not None and not current.granted:
        return False
    if current is None or current.granted:
        await state.consent.record([ConsentRecord(address, req.category, False, now,
                                                  "explicit", "list-unsubscribe")], ACTOR, now)
    if not suppressed:
        await state.suppressions.add([Suppression(target, SuppressionReason.UNSUBSCRIBE,
                                                  req.category, now, ACTOR)], ACTOR, now)
    state.events.record([Event(time=now, queue_id="", type=EventType.UNSUBSCRIBED,
                               recipient=address, detail=f"category={req.category}")])
    log.info("one-click unsubscribe from %s mail", req.category)
    return True
