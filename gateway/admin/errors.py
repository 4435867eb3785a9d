"""JSON errors for every failure: `{"error": {"code": ..., "message": ...}}` and its status.

Handlers raise ApiError; the middleware turns it, aiohttp's own HTTP errors
(unknown path 404, wrong method 405, body too large 413), a state store that
cannot answer now (503 `state_unavailable` with Retry-After: the shared database
is away, which the state module has logged; the caller retries as an SMTP
client does after 451 4.3.0) and any unexpected exception (500, logged with its
traceback, never shown) into the same shape.

Security: messages never echo a token or a request body; a 500 says only that
something failed and where to look (the log).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from gateway.errors import StateUnavailable

__all__ = ["ApiError", "error_middleware", "error_response", "json_body", "json_response"]

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
          405: "method_not_allowed", 409: "conflict", 413: "body_too_large",
          415: "unsupported_media_type", 422: "invalid", 429: "rate_limited",
          500: "internal", 503: "not_ready"}
STATE_RETRY_AFTER = "5"  # seconds: about the shared backends' first reconnection backoffs


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, *,
                 headers: Mapping[str, str] | None = None,
                 extra: Mapping[str, object] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})


def json_response(data: object, status: int = 200,
                  headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(text=json.dumps(data, ensure_ascii=False, sort_keys=True),
                        status=status, content_type="application/json", headers=headers)


def error_response(status: int, code: str, message: str, *,
                   headers: Mapping[str, str] | None = None,
                   extra: Mapping[str, object] | None = None) -> web.Response:
    body: dict[str, object] = {"code": code, "message": message, **(extra or {})}
    return json_response({"error": body}, status, headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message, headers=exc.headers,
                              extra=exc.extra)
    except StateUnavailable:
        return error_response(503, "state_unavailable",
                              "the state store cannot answer now; try again shortly",
                              headers={"Retry-After": STATE_RETRY_AFTER})
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
        return error_response(exc.status, _CODES.get(exc.status, "error"),
                              _http_message(request, exc), headers=headers)
    except Exception:
        log.exception("admin API: %s %s failed", request.method, request.path)
        return error_response(500, "internal", "internal error (see the gateway's log)")


def _http_message(request: web.Request, exc: web.HTTPException) -> str:
    if exc.status == 404:
        return f"no such endpoint: {request.path}"
    if exc.status == 405:
        return f"{request.method} is not allowed on {request.path}"
    if exc.status == 413:
        return "the request body is too large"
    return exc.reason


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object; 400 for anything else (malformed, not an object)."""
    raw = await request.read()  # 413 past client_max_size
    if not raw:
        raise ApiError(400, "bad_json", "a JSON object is required as the request body")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "bad_json", f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "bad_json", "the body must be a JSON object")
    return data
