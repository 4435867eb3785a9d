"""Console sessions: log in with an admin token, get a session cookie; every change
carries the session's CSRF token (no Postfix counterpart; the admin API's bearer
tokens are for programs, this is for people with a browser).

- The cookie is HttpOnly and SameSite=Strict, and Secure unless the admin listener is
  on loopback (a browser on the same machine talks plain HTTP to it); its value is a
  random 256-bit id, and the server keeps only its SHA-256 (a leaked table of
  sessions opens none).
- Sessions live in the master's memory: a restart logs everyone out. They end after
  IDLE seconds without a request, or MAX_AGE after login, or at logout.
- Every POST must carry the session's CSRF token in the form (`csrf`), compared in
  constant time, and, when the browser sends Origin, come from this origin. A
  request that fails either is refused with 403 and changes nothing.
- The actor of every audited change is "console:<token name>".

Security: reads untrusted cookies and form fields; compares secrets in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from aiohttp import web

__all__ = ["COOKIE", "IDLE", "MAX_AGE", "Session", "Sessions", "csrf_ok", "origin_ok", "set_cookie"]

COOKIE = "gw_console"
IDLE = 3600.0  # seconds without a request
MAX_AGE = 12 * 3600.0  # seconds after login, however busy
MAX_SESSIONS = 1000  # the oldest go first: a login loop cannot grow memory


@dataclass
class Session:
    actor: str
    csrf: str
    created: float
    seen: float


class Sessions:
    def __init__(self) -> None:
        self._by_digest: dict[bytes, Session] = {}

    def create(self, actor: str, now: float) -> tuple[str, Session]:
        """(cookie value, session)."""
        sid = secrets.token_urlsafe(32)
        session = Session(actor, secrets.token_urlsafe(32), now, now)
        self._by_digest[_digest(sid)] = session
        while len(self._by_digest) > MAX_SESSIONS:
            del self._by_digest[next(iter(self._by_digest))]
        return sid, session

    def get(self, sid: str | None, now: float) -> Session | None:
        if not sid:
            return None
        key = _digest(sid)
        session = self._by_digest.get(key)
        if session is None:
            return None
        if now - session.seen > IDLE or now - session.created > MAX_AGE:
            del self._by_digest[key]
            return None
        session.seen = now
        return session

    def end(self, sid: str | None) -> None:
        if sid:
            self._by_digest.pop(_digest(sid), None)

    def __len__(self) -> int:
        return len(self._by_digest)

    def __repr__(self) -> str:
        return f"<Sessions {len(self)}>"


def csrf_ok(session: Session, given: object) -> bool:
    return isinstance(given, str) and hmac.compare_digest(
        given.encode("utf-8", "replace"), session.csrf.encode("ascii"))


def origin_ok(request: web.Request) -> bool:
    """No Origin (older browsers, same-origin GET) or one naming this host. The host only,
    not the scheme: behind a TLS reverse proxy the browser's origin is https:// while
    this listener is spoken to over plain HTTP, with the same Host."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    scheme, _, host = origin.partition("://")
    return scheme in ("http", "https") and host == request.host


def set_cookie(response: web.StreamResponse, sid: str, secure: bool) -> None:
    response.set_cookie(COOKIE, sid, path="/console", httponly=True, samesite="Strict",
                        secure=secure, max_age=int(MAX_AGE))


def _digest(sid: str) -> bytes:
    return hashlib.sha256(sid.encode("utf-8", "replace")).digest()
