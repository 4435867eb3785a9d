"""Bearer-token authentication for the admin API.

Every route needs `Authorization: Bearer <token>` except the public ones:
/healthz and /readyz (probes), /openapi.json (it documents nothing secret) and
the one-click unsubscribe endpoint (mail providers and recipients call it).
/metrics is public while the listener is on loopback (a local Prometheus or
agent scrapes it); on any other address it needs the token too (Prometheus
sends one with `authorization: {credentials_file: …}`). An unknown path
answers 404 whether or not a token is given: the route table is public in
/openapi.json anyway.

Missing or wrong token: 401 with `WWW-Authenticate: Bearer`. No token
configured at all: 403 (the protected API is off, the public part works).

Security: tokens are compared in constant time, as SHA-256 digests (equal
lengths, so compare_digest leaks nothing about the length either), against
every configured token without stopping at the first match.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from gateway.admin.errors import ApiError
from gateway.admin.settings import AdminToken

__all__ = ["ACTOR", "LOCAL", "PUBLIC", "auth_middleware", "match_token", "needs_token"]

PUBLIC = "public:"  # route names starting with this need no token
LOCAL = "local:"  # … these need none while the listener is on loopback
ACTOR = web.RequestKey("actor", str)  # "api:<token name>", for the audit log

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="smtp-gateway"'}


def match_token(given: str, tokens: tuple[AdminToken, ...]) -> AdminToken | None:
    digest = hashlib.sha256(given.encode("utf-8", "replace")).digest()
    found = None
    for token in tokens:
        expected = hashlib.sha256(token.secret.value.encode("utf-8")).digest()
        if hmac.compare_digest(digest, expected) and found is None:
            found = token
    return found


def needs_token(route_name: str, loopback: bool) -> bool:
    if route_name.startswith(PUBLIC):
        return False
    return not (loopback and route_name.startswith(LOCAL))


def auth_middleware(tokens: Callable[[], tuple[AdminToken, ...]], loopback: bool) -> Middleware:
    """`tokens()` is read per request, so a reload's new tokens apply at once."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        match = request.match_info
        if match.http_exception is not None or not needs_token(match.route.name or "",
                                                               loopback):
            return await handler(request)
        configured = tokens()
        if not configured:
            raise ApiError(403, "forbidden", "no admin token is configured "
                           "(admin.token_file or admin.token_env): only the public endpoints "
                           "are served")
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise ApiError(401, "unauthorized", "a bearer token is required "
                           "(Authorization: Bearer <token>)", headers=_CHALLENGE)
        token = match_token(given.strip(), configured)
        if token is None:
            raise ApiError(401, "unauthorized", "the bearer token is not valid",
                           headers=_CHALLENGE)
        request[ACTOR] = f"api:{token.name}"
        return await handler(request)

    return middleware
