"""The public tracking listener: GET /o/<token> (the open pixel) and GET /c/<token>
(a wrapped link) on an address and port of its own, over TLS unless on loopback
(no Postfix counterpart; Postal's "track" server, KumoMTA leaves it to others).

A valid open answers a 1x1 transparent GIF (never cached, so each open is seen); a
valid click answers 302 to the link the token sealed — only ever a URL that was in
the message, so this is no open redirector. Anything else, a forged or altered
token included, is 404 with no Location. Each valid hit is an `opened` or `clicked`
event (so webhooks send it, retention and erasure treat it like any other event)
and a metric, with `machine=yes|no` and the reason (gateway.tracking.machine) and
the client network truncated. A hit whose recipient has since withdrawn consent
(or the tracking purpose) for the category is answered the same way but not
recorded: consent is asked again at each hit, not only when the mail was sent
(answers kept a few seconds: gateway.tracking.consent_cache says how fresh).
Nothing is logged per request (no access log: the paths are tokens).

Security: public, reads untrusted requests: only GET/HEAD on two paths; tokens are
length-bounded and authenticated before any field is used (gateway.tracking.token).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl

from aiohttp import web

from gateway import metrics
from gateway.clock import Clock
from gateway.core.listen import bind_tcp
from gateway.model import Event, EventType
from gateway.state.store import ConsentStore, EventStore
from gateway.tracking.consent_cache import ConsentCache
from gateway.tracking.machine import HUMAN, BurstDetector, Verdict, judge, truncate_ip
from gateway.tracking.settings import TrackingConfig
from gateway.tracking.token import Hit, HitKind, TokenKeys, open_token

__all__ = ["PIXEL", "TrackingHandler", "TrackingListener", "hit_event"]

log = logging.getLogger(__name__)

PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
_NO_CACHE = {"Cache-Control": "no-store, no-cache, must-revalidate, private",
             "Pragma": "no-cache", "Referrer-Policy": "no-referrer"}


def hit_event(hit: Hit, verdict: Verdict, network: str, now: float) -> Event:
    kind = EventType.OPENED if hit.kind is HitKind.OPEN else EventType.CLICKED
    detail = (f"machine={'yes' if verdict.machine else 'no'}"
              f"{f' why={verdict.reason}' if verdict.machine else ''} ip={network or '-'}"
              f"{f' link={hit.url}' if hit.kind is HitKind.CLICK else ''}")
    return Event(time=now, queue_id=hit.queue_id, type=kind, recipient=hit.recipient,
                 detail=detail)


class TrackingHandler:
    def __init__(self, settings: TrackingConfig, events: EventStore, consent: ConsentStore,
                 clock: Clock) -> None:
        self.keys = TokenKeys(settings.key)
        self.events = events
        self.consent = ConsentCache(consent, clock)
        self.clock = clock
        self.bursts = BurstDetector(settings.scanner_window)

    async def _hit(self, request: web.BaseRequest, kind: HitKind, token: str
                   ) -> tuple[Hit, Verdict] | None:
        hit = open_token(self.keys, token)
        if hit is None or hit.kind is not kind:
            metrics.record_tracking_hit(kind.name.lower(), None)
            return None
        if not await self.consent.allows(hit.recipient, hit.category):
            return hit, HUMAN  # answered as usual, not recorded
        now = self.clock.now()
        network = truncate_ip(request.remote)
        verdict = judge(request.method, request.headers.get("User-Agent"))
        if (kind is HitKind.CLICK and verdict is HUMAN and self.bursts.click(
                (hit.queue_id, hit.recipient, network), hit.url, now)):
            verdict = Verdict(True, "burst")
        self.events.record([hit_event(hit, verdict, network, now)])
        metrics.record_tracking_hit(kind.name.lower(), verdict.machine)
        return hit, verdict

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        """Every request: GET or HEAD of /o/<token> or /c/<token>, else 404 (405 for
        other methods). aiohttp's low-level server, without an application's router
        and middlewares: a hit is the hot path, and that is all it needs."""
        if request.method not in ("GET", "HEAD"):
            return web.Response(status=405, headers={"Allow": "GET, HEAD", **_NO_CACHE})
        prefix, token = request.path[:3], request.path[3:]
        if prefix == "/o/" and "/" not in token:
            if await self._hit(request, HitKind.OPEN, token) is None:
                return _not_found()
            return web.Response(body=PIXEL, content_type="image/gif", headers=_NO_CACHE)
        if prefix == "/c/" and "/" not in token:
            found = await self._hit(request, HitKind.CLICK, token)
            if found is not None:
                return web.Response(status=302, headers={"Location": found[0].url,
                                                         **_NO_CACHE})
        return _not_found()


def _not_found() -> web.Response:
    return web.Response(status=404, text="not found\n", headers=_NO_CACHE)


class TrackingListener:
    def __init__(self, settings: TrackingConfig, events: EventStore, consent: ConsentStore,
                 clock: Clock) -> None:
        self.settings = settings
        self.port = settings.port
        self._handler = TrackingHandler(settings, events, consent, clock)
        self._server: web.Server | None = None
        self._listening: asyncio.Server | None = None

    async def start(self) -> None:
        # No access log: the paths are tokens. Bodies are never read (max_field_size
        # bounds the request line and headers; tokens are at most MAX_TOKEN long).
        self._server = web.Server(self._handler, access_log=None, max_field_size=8190)
        sock = bind_tcp(self.settings.address, self.settings.port, "tracking listener", 512)
        self.port = int(sock.getsockname()[1])
        self._listening = await asyncio.get_running_loop().create_server(
            self._server, sock=sock, ssl=self._tls())
        log.info("tracking listener on %s:%d (%s)", self.settings.address, self.port,
                 "TLS" if self.settings.cert_file else "plain HTTP, loopback")

    def _tls(self) -> ssl.SSLContext | None:
        s = self.settings
        if s.cert_file is None or s.key_file is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(s.cert_file, s.key_file)
        return context

    async def stop(self) -> None:
        """Stop listening, end the open connections (keep-alive ones too), then wait."""
        listening, server = self._listening, self._server
        self._listening = self._server = None
        if listening is not None:
            listening.close()
        if server is not None:
            await server.shutdown(5.0)
        if listening is not None:
            await listening.wait_closed()

    def __repr__(self) -> str:
        return f"<TrackingListener {self.settings.address}:{self.port}>"
