"""What the admin handlers reach: the running gateway (through a narrow view) and helpers
shared by the route modules (query parameters, paging, the running policy's settings)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

from gateway.admin.auth import ACTOR
from gateway.admin.errors import ApiError
from gateway.admin.ratelimit import IpRateLimiter
from gateway.clock import Clock
from gateway.config import Config
from gateway.delivery.tlsrpt import TlsReporter
from gateway.policy.rules_file import ConsentSettings
from gateway.policy.runtime import PolicyRuntime
from gateway.scheduler.queue_admin import QueueAdmin
from gateway.spool import Spool
from gateway.state.store import StateStore

__all__ = ["CONTEXT", "AdminContext", "GatewayView", "actor", "int_param", "limit_param",
           "query_param"]

MAX_PAGE = 1000
MAX_INT = 2**63 - 1  # SQLite's integers


class GatewayView(Protocol):
    """The part of gateway.supervisor.Gateway the API uses."""

    config: Config
    clock: Clock
    state: StateStore
    spool: Spool
    policy: PolicyRuntime
    tls_reports: TlsReporter | None

    def listener_problems(self) -> list[str]: ...


@dataclass
class AdminContext:
    gateway: GatewayView
    unsubscribe_limiter: IpRateLimiter

    def now(self) -> float:
        return self.gateway.clock.now()

    def queue(self) -> QueueAdmin:
        """The CLI's queue code on the running gateway's spool and event store, with the
        configuration in force now (a reload may have changed the routes)."""
        gw = self.gateway
        return QueueAdmin(gw.config, gw.clock.now, files=gw.spool.files,
                          index=gw.spool.index, events=gw.state.events)

    def policy_settings(self) -> tuple[bool, ConsentSettings]:
        """(strip +tags?, consent settings) of the policy in force, as the CLI reads them."""
        stage = self.gateway.policy.stage
        if stage is None:
            return False, ConsentSettings()
        return stage.policies.suppression.strip_plus_tags, stage.policies.consent


CONTEXT = web.AppKey("context", AdminContext)


def context(request: web.Request) -> AdminContext:
    return request.app[CONTEXT]


def actor(request: web.Request) -> str:
    return str(request.get(ACTOR, "api:admin"))


def query_param(request: web.Request, name: str) -> str | None:
    """A query parameter given at most once (None: absent); twice is a 400."""
    values = request.query.getall(name, [])
    if len(values) > 1:
        raise ApiError(400, "bad_parameter", f"'{name}' is given more than once")
    return values[0] if values else None


def int_param(request: web.Request, name: str, default: int, minimum: int = 0,
              maximum: int = MAX_INT) -> int:
    text = query_param(request, name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ApiError(400, "bad_parameter", f"'{name}' must be a whole number") from None
    if not minimum <= value <= maximum:
        raise ApiError(400, "bad_parameter", f"'{name}' must be between {minimum} and {maximum}")
    return value


def limit_param(request: web.Request, default: int = 100) -> int:
    return int_param(request, "limit", default, 1, MAX_PAGE)
