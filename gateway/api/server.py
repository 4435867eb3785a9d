"""The HTTP submission listener: an aiohttp application in the master process,
beside the SMTP listeners (KumoMTA's and Postal's HTTP injection APIs; in
Postfix terms, another smtpd(8) front end in front of the same cleanup(8)).

Routes (documented in openapi.yaml beside this file, served at /openapi.json):

    POST /v1/messages               one message → 202 with its queue id
    POST /v1/messages/batch         up to 500 messages, one result each
    GET  /v1/messages/{queue_id}    its events (scope send+read, own messages only)

Every route but /openapi.json needs `Authorization: Bearer <API key>`
(gateway.api.keys); every answer that is not a success is a JSON error
`{"error": {"code", "message", …}}` (gateway.admin.errors, shared with the
admin API).

Security: reads untrusted HTTP requests from the network (bodies bounded by
api.max_body; only HTTPS off loopback); keys are checked in constant time
against scrypt hashes and failures are throttled per client address.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import yaml
from aiohttp import web

from gateway.admin.errors import ApiError, error_middleware, json_response
from gateway.admin.ratelimit import IpRateLimiter
from gateway.admin.routes_trace import group_events
from gateway.api.keys import ApiKey, KeyRing
from gateway.api.request import Limits, MessageRequest, RequestError, parse_message
from gateway.api.settings import ApiConfig
from gateway.api.submit import API_KEY_TAG, META_TAG, RETRY_AFTER, Fields, Outcome, Submitter
from gateway.clock import Clock
from gateway.config import Config
from gateway.core.listen import bind_tcp
from gateway.errors import ConfigError
from gateway.intake.accept import Acceptor
from gateway.intake.auth import AuthThrottle
from gateway.model import Client, Reply
from gateway.policy.rules_file import ConsentSettings
from gateway.policy.runtime import PolicyRuntime
from gateway.state.store import StateStore

__all__ = ["LISTENER", "OPENAPI_PATH", "ApiContext", "ApiServer", "build_app",
           "openapi_document"]

log = logging.getLogger(__name__)

OPENAPI_PATH = Path(__file__).with_name("openapi.yaml")
LISTENER = "api"  # the listener label of metrics, Received and events
MAX_BATCH = 500
BATCH_CONCURRENCY = 16  # messages of one batch in flight: the spool commits them together
_JSON_THREAD_THRESHOLD = 1024 * 1024
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="smtp-gateway"'}


class GatewayView(Protocol):
    """The part of gateway.supervisor.Gateway the API uses."""

    config: Config
    clock: Clock
    state: StateStore
    acceptor: Acceptor
    policy: PolicyRuntime


@dataclass
class ApiContext:
    gateway: GatewayView
    keys: KeyRing
    submitter: Submitter
    throttle: AuthThrottle = field(default_factory=AuthThrottle)
    key_limits: dict[str, IpRateLimiter] = field(default_factory=dict)

    def limits(self) -> Limits:
        gw = self.gateway
        consent = gw.policy.stage.policies.consent if gw.policy.stage else ConsentSettings()
        fields = self.fields()
        return Limits(gw.config.limits.max_recipients, gw.config.limits.max_message_size,
                      frozenset(consent.categories),
                      frozenset(f.lower() for f in (fields.idempotency, fields.category) if f))

    def fields(self) -> Fields:
        gw = self.gateway
        idem = gw.config.idempotency
        stage = gw.policy.stage
        return Fields(idem.header if idem.enabled else None,
                      stage.policies.consent.header if stage is not None else None)

    def rate_wait(self, key: ApiKey) -> float:
        """0.0, or the seconds until the key's own rate limit lets a message through."""
        interval = key.interval
        if interval is None:
            return 0.0
        limiter = self.key_limits.get(key.id)
        if limiter is None or (limiter.interval, limiter.burst) != (interval, key.burst):
            limiter = self.key_limits[key.id] = IpRateLimiter(interval, key.burst,
                                                              self.gateway.clock)
        return limiter.take(key.id)


CONTEXT = web.AppKey("api_context", ApiContext)
KEY = web.RequestKey("api_key", ApiKey)


@cache
def openapi_document() -> str:
    return json.dumps(yaml.safe_load(OPENAPI_PATH.read_text(encoding="utf-8")))


async def _openapi(request: web.Request) -> web.Response:
    return web.Response(text=openapi_document(), content_type="application/json")


@web.middleware
async def _auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    match = request.match_info
    if match.http_exception is not None or match.route.name == "openapi":
        return await handler(request)
    ctx = request.app[CONTEXT]
    address = request.remote or ""
    if ctx.throttle.locked(address):
        raise ApiError(429, "too_many_failures", "too many requests with a wrong API key "
                       "from your address: try again later",
                       headers={"Retry-After": str(int(ctx.throttle.settings.lockout))})
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise ApiError(401, "unauthorized", "an API key is required "
                       "(Authorization: Bearer <key>)", headers=_CHALLENGE)
    try:
        ctx.keys.refresh()
    except ConfigError as exc:
        log.error("API keys file cannot be read, the previous keys stay: %s", exc)
    key = await ctx.keys.check(given.strip())
    if key is None:
        ctx.throttle.failed(address, "")
        raise ApiError(401, "unauthorized", "the API key is not valid", headers=_CHALLENGE)
    request[KEY] = key
    return await handler(request)


def build_app(ctx: ApiContext, settings: ApiConfig) -> web.Application:
    app = web.Application(middlewares=[error_middleware, _auth],
                          client_max_size=settings.max_body)
    app[CONTEXT] = ctx
    app.router.add_get("/openapi.json", _openapi, name="openapi", allow_head=False)
    app.router.add_post("/v1/messages", send_one, name="send")
    app.router.add_post("/v1/messages/batch", send_batch, name="batch")
    # Only queue ids match, so /v1/messages/batch is the POST route's alone (Allow: POST).
    app.router.add_get("/v1/messages/{queue_id:[0-9A-HJKMNP-TV-Z]{18}}", message_events,
                       name="events", allow_head=False)
    return app


# -- handlers ---------------------------------------------------------------------------------


async def send_one(request: web.Request) -> web.Response:
    data = await _json_object(request)
    header_key = request.headers.get("Idempotency-Key")
    result = await _send(request, data, header_key)
    status = int(result.pop("status"))
    headers = {"Retry-After": RETRY_AFTER} if status in (429, 503) else None
    if status == 202:
        return json_response(result, 202)
    return json_response(result, status, headers)


async def send_batch(request: web.Request) -> web.Response:
    data = await _json_object(request)
    if "Idempotency-Key" in request.headers:
        raise ApiError(400, "bad_request", "a batch has no Idempotency-Key header: give "
                       "each message its own 'idempotency_key'")
    extra = sorted(set(data) - {"messages"})
    if extra:
        raise ApiError(422, "unknown_field", f"unknown field '{extra[0]}' (known: messages)",
                       extra={"field": extra[0]})
    messages = data.get("messages")
    if not isinstance(messages, list) or not 1 <= len(messages) <= MAX_BATCH \
            or not all(isinstance(m, dict) for m in messages):
        raise ApiError(422, "bad_batch", f"'messages' must be a list of 1 to {MAX_BATCH} "
                       "JSON objects", extra={"field": "messages"})
    gate = asyncio.Semaphore(BATCH_CONCURRENCY)

    async def one(item: dict[str, Any]) -> dict[str, Any]:
        async with gate:
            return await _send(request, item, None)

    results = await asyncio.gather(*(one(m) for m in messages))
    return json_response({"results": results}, 200)


async def message_events(request: web.Request) -> web.Response:
    key = request[KEY]
    if not key.can_read:
        raise ApiError(403, "forbidden", f"the key '{key.name}' has scope '{key.scope}': "
                       "reading needs 'send+read'")
    queue_id = request.match_info["queue_id"]
    store = request.app[CONTEXT].gateway.state.events
    tags = (await store.tags([queue_id])).get(queue_id, {})
    # Another key's message answers exactly like a missing one: ids are not secrets.
    if tags.get(API_KEY_TAG) != key.name:
        raise ApiError(404, "not_found", f"no message {queue_id} sent with this key")
    events = await store.by_queue_id(queue_id)
    message = group_events(events, {queue_id: tags})[0]
    headers = message.pop("headers")
    message["metadata"] = {k[len(META_TAG):]: v for k, v in headers.items()
                           if k.startswith(META_TAG)}
    message["headers"] = {k: v for k, v in headers.items() if not k.startswith(":")}
    return json_response(message)


# -- one message --------------------------------------------------------------------------


async def _send(request: web.Request, data: dict[str, Any], header_key: str | None
                ) -> dict[str, Any]:
    """The result of one message as JSON, with its HTTP status under "status"."""
    ctx = request.app[CONTEXT]
    key = request[KEY]
    try:
        message = parse_message(data, ctx.limits(), header_key)
    except RequestError as exc:
        return _error_result(exc.status, exc.code, exc.message, field=exc.field)
    fields = ctx.fields()
    if message.idempotency_key is not None and fields.idempotency is None:
        return _error_result(422, "idempotency_off", "idempotency is switched off on this "
                             "gateway (idempotency.enabled: false)", field="idempotency_key")
    if not key.may_send_from(message.sender):
        return _error_result(403, "sender_not_allowed", f"the key '{key.name}' may not send "
                             f"from '{message.sender}' (its sender domains: "
                             f"{', '.join(key.sender_domains)})", field="from")
    wait = ctx.rate_wait(key)
    if wait > 0:
        return _error_result(429, "rate_limited", f"the key '{key.name}' is limited to "
                             f"{key.rate}: try again in {wait:.0f}s")
    outcome = await ctx.submitter.submit(message, _client(request, key), fields,
                                         ctx.gateway.clock.now())
    return _outcome_json(outcome, message)


def _client(request: web.Request, key: ApiKey) -> Client:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    port = int(peer[1]) if isinstance(peer, tuple) and len(peer) >= 2 else 0
    return Client(listener=LISTENER, address=request.remote or "", port=port,
                  helo="api", auth_user=key.name, tls=request.secure)


def _outcome_json(outcome: Outcome, message: MessageRequest) -> dict[str, Any]:
    refused = dict(outcome.refused)
    recipients = [_recipient(rcpt, refused.get(rcpt), outcome) for rcpt in message.recipients]
    if outcome.status == 202:
        # A resend answered by idempotency stored nothing (no Message-ID of its own).
        return {"status": 202, "queue_id": outcome.queue_id, "message_id": outcome.message_id,
                "duplicate": outcome.message_id is None, "recipients": recipients}
    reply = outcome.reply
    code = {429: "rate_limited", 503: "try_again"}.get(outcome.status, "rejected")
    return _error_result(outcome.status, code, f"{reply.text} ({reply.code} {reply.enhanced})",
                         smtp=_smtp(reply), recipients=recipients)


def _recipient(rcpt: str, reply: Reply | None, outcome: Outcome) -> dict[str, Any]:
    if reply is not None:
        return {"address": rcpt, "status": "refused", "temporary": reply.is_transient,
                "smtp": _smtp(reply)}
    return {"address": rcpt, "status": "queued" if outcome.status == 202 else "refused"}


def _smtp(reply: Reply) -> dict[str, Any]:
    return {"code": reply.code, "enhanced": reply.enhanced or None, "text": reply.text}


def _error_result(status: int, code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"status": status, "error": {"code": code, "message": message, **extra}}


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        raw = await request.read()  # 413 past client_max_size
    except ConnectionResetError:
        # The client went away mid-body: nobody reads this answer, but no traceback either.
        raise ApiError(400, "bad_request", "the connection was lost while reading the "
                       "body") from None
    if not raw:
        raise ApiError(400, "bad_json", "a JSON object is required as the request body")
    try:
        data = (await asyncio.to_thread(json.loads, raw) if len(raw) > _JSON_THREAD_THRESHOLD
                else json.loads(raw))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ApiError(400, "bad_json", f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "bad_json", "the body must be a JSON object")
    return data


# -- the listener ---------------------------------------------------------------------------


class ApiServer:
    def __init__(self, gateway: GatewayView, settings: ApiConfig) -> None:
        self.settings = settings
        self.gateway = gateway
        self.port = settings.port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        keys = KeyRing(self.settings.keys_file)
        keys.refresh()  # a bad keys file stops the start, like a bad config
        ctx = ApiContext(self.gateway, keys, Submitter(self.gateway.acceptor))
        self._runner = web.AppRunner(build_app(ctx, self.settings), access_log=None,
                                     handle_signals=False)
        await self._runner.setup()
        sock = bind_tcp(self.settings.address, self.settings.port, "API listener")
        self.port = int(sock.getsockname()[1])
        await web.SockSite(self._runner, sock, ssl_context=self._tls()).start()
        log.info("HTTP API on %s://%s:%d (%d key%s)", "https" if self.settings.tls else "http",
                 self.settings.address, self.port, len(keys), "" if len(keys) == 1 else "s")

    def _tls(self) -> ssl.SSLContext | None:
        s = self.settings
        if s.cert_file is None or s.key_file is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(s.cert_file, s.key_file)
        return context

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def __repr__(self) -> str:
        return f"<ApiServer {self.settings.address}:{self.port}>"
