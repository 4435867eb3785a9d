"""The delivery stage's settings: `delivery:` (with `dns:`), `retry:` and `routes:` of
config.yaml (Postfix's smtp_* parameters, transport(5) and the smarthost relayhost).

gateway.config composes them; errors carry file:line:column like every other section.
The dataclasses a delivery job carries (Route, Smarthost, RetrySchedule) are in
gateway.model, since the scheduler hands them to delivery.

Security: reads smarthost passwords from files or the environment (never from
config.yaml) into `Secret`, whose repr is '***'.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from gateway.core.files import existing_path
from gateway.core.secret_files import SecretFileError, read_text_secret
from gateway.core.yamlnodes import Section, parse_duration
from gateway.model import (
    BreakerSettings,
    Priority,
    RetrySchedule,
    Route,
    RouteMatch,
    Secret,
    Smarthost,
)
from gateway.scheduler.settings import DEFAULT_LANES, Lane

__all__ = [
    "DeliveryConfig",
    "DnsConfig",
    "parse_delivery",
    "parse_retry",
    "parse_routes",
]


@dataclass(frozen=True)
class DnsConfig:
    nameservers: tuple[str, ...] = ()  # empty: the system's /etc/resolv.conf
    port: int = 53
    timeout: float = 10.0


@dataclass(frozen=True)
class DeliveryConfig:
    helo_name: str
    mx_port: int = 25
    dns: DnsConfig = DnsConfig()
    connect_timeout: float = 30.0
    # RFC 5321 4.5.3.2: 5 min for greeting, MAIL, RCPT, DATA; 10 min for the final dot.
    command_timeout: float = 300.0
    data_timeout: float = 600.0
    max_concurrency: int = 100  # delivery sessions open at once, all routes together
    max_active: int = 20000  # messages in active/ at once (Postfix qmgr_message_active_limit)
    # Trust store for verifying servers' certificates (MX tls: verify, smarthost
    # verify_cert); None: the system's.
    ca_file: Path | None = None
    # An idle outbound connection is kept this long for the next message to the
    # same destination (Postfix smtp_connection_cache_time_limit).
    connection_idle_timeout: float = 5.0
    # Each priority's share of the limits above (from the `priorities:` section).
    priority_lanes: dict[Priority, Lane] = field(default_factory=lambda: dict(DEFAULT_LANES))


def parse_delivery(sec: Section, hostname: str, base: Path) -> DeliveryConfig:
    d = DeliveryConfig(helo_name=hostname)
    dns_sec = sec.section("dns")
    dns = DnsConfig(
        nameservers=tuple(t for t, _ in dns_sec.str_list("nameservers")),
        port=dns_sec.get_int("port", 53, 1, 65535),
        timeout=dns_sec.duration("timeout", 10.0),
    )
    dns_sec.done()
    out = DeliveryConfig(
        helo_name=sec.get_str("helo_name", hostname),
        mx_port=sec.get_int("mx_port", d.mx_port, 1, 65535),
        dns=dns,
        connect_timeout=sec.duration("connect_timeout", d.connect_timeout),
        command_timeout=sec.duration("command_timeout", d.command_timeout),
        data_timeout=sec.duration("data_timeout", d.data_timeout),
        max_concurrency=sec.get_int("max_concurrency", d.max_concurrency, 1),
        max_active=sec.get_int("max_active", d.max_active, 1),
        ca_file=existing_path(sec, "ca_file", base),
        connection_idle_timeout=sec.duration("connection_idle_timeout",
                                             d.connection_idle_timeout),
    )
    sec.done()
    return out


def parse_retry(sec: Section, inherit: RetrySchedule) -> RetrySchedule:
    delays: list[float] = list(inherit.delays)
    if sec.has("delays"):
        delays = []
        for text, node in sec.str_list("delays"):
            try:
                delays.append(parse_duration(text))
            except ValueError as exc:
                sec.problems.add(sec.file, node, f"'{sec.where}.delays': {exc}")
    repeat = inherit.repeat
    if sec.has("repeat"):
        # `repeat: never` (or null) ends the schedule after the listed delays.
        raw = getattr(sec.value_node("repeat"), "value", None)
        never = raw in (None, "", "null", "~", "none", "never")
        repeat = None if never else sec.duration("repeat", 0)
    out = RetrySchedule(
        delays=tuple(delays),
        repeat=repeat,
        max_age=sec.duration("max_age", inherit.max_age),
        max_attempts=(sec.opt_int("max_attempts", 1) if sec.has("max_attempts")
                      else inherit.max_attempts),
    )
    sec.done()
    return out



def parse_routes(root: Section, retry: RetrySchedule, base: Path) -> tuple[Route, ...]:
    sections = root.sections("routes")
    if not sections:
        return (Route(name="default", kind="mx", retry=retry),)
    routes = [_route(sec, retry, base) for sec in sections]
    names = [r.name for r in routes]
    for name in {n for n in names if names.count(n) > 1}:
        root.error("routes", f"route name '{name}' is used twice")
    catch_all = [r for r in routes if not r.match.recipient_domains and not r.match.sender_domains]
    if not catch_all:
        root.error("routes", "no route matches every message: add one without 'match' last")
    elif routes[-1] is not catch_all[0]:
        root.error("routes", f"route '{catch_all[0].name}' matches everything, so the routes "
                   "after it are never used: move it last")
    return tuple(routes)


def _route(sec: Section, retry: RetrySchedule, base: Path) -> Route:
    name = sec.get_str("name", "")
    if not name:
        sec.error(None, "every route needs a 'name'")
    kind = sec.get_str("type", "mx", ("mx", "smarthost"))
    match_sec = sec.section("match")
    match = RouteMatch(
        recipient_domains=tuple(t.lower() for t, _ in match_sec.str_list("recipient_domains")),
        sender_domains=tuple(t.lower() for t, _ in match_sec.str_list("sender_domains")),
    )
    match_sec.done()
    breaker_sec = sec.section("circuit_breaker")
    breaker = BreakerSettings(
        failures=breaker_sec.get_int("failures", 3, 1),
        recovery=breaker_sec.duration("recovery", 300.0),
    )
    breaker_sec.done()
    smarthosts = tuple(_smarthost(s, base) for s in sec.sections("smarthosts"))
    if kind == "smarthost" and not smarthosts:
        sec.error("smarthosts", "a smarthost route needs at least one smarthost")
    if kind == "mx" and smarthosts:
        sec.error("smarthosts", "an mx route delivers directly: remove 'smarthosts' or use "
                  "type: smarthost")
    route = Route(
        name=name,
        kind=kind,
        match=match,
        smarthosts=smarthosts,
        tls=sec.get_str("tls", "opportunistic", ("none", "opportunistic", "required", "verify")),
        retry=parse_retry(sec.section("retry"), retry),
        breaker=breaker,
        max_connections_per_destination=sec.get_int("max_connections_per_destination", 10, 1),
        messages_per_connection=sec.get_int("messages_per_connection", 100, 1),
        verp=sec.get_bool("verp", True) if sec.has("verp") else None,
        dsn=sec.get_bool("dsn", False),
    )
    sec.done()
    return route


def _smarthost(sec: Section, base: Path) -> Smarthost:
    host = sec.get_str("host", "")
    if not host:
        sec.error(None, "a smarthost needs a 'host'")
    tls = sec.get_str("tls", "starttls", ("none", "starttls", "implicit"))
    default_port = {"none": 25, "starttls": 587, "implicit": 465}[tls]
    out = Smarthost(
        name=sec.get_str("name", host),
        host=host,
        port=sec.get_int("port", default_port, 1, 65535),
        tls=tls,
        verify_cert=sec.get_bool("verify_cert", True),
        username=sec.opt_str("username"),
        password=_secret(sec, base),
        max_connections=sec.get_int("max_connections", 10, 1),
        messages_per_connection=sec.get_int("messages_per_connection", 100, 1),
    )
    if out.username and out.password is None and not sec.has("password"):
        sec.error("username", "'username' needs 'password_file' or 'password_env'")
    sec.done()
    return out


def _secret(sec: Section, base: Path) -> Secret | None:
    """Passwords come from a file or the environment, never from config.yaml itself."""
    if sec.has("password"):
        sec.value_node("password")
        sec.error("password", "put the password in a file ('password_file') or the environment "
                  "('password_env'), not in config.yaml")
        return None
    file_name = sec.opt_str("password_file")
    env_name = sec.opt_str("password_env")
    if file_name:
        path = base / file_name
        try:
            return Secret(read_text_secret(path, what="password"))
        except SecretFileError as exc:
            sec.error("password_file", str(exc))
            return None
    if env_name:
        value = os.environ.get(env_name)
        if value is None:
            sec.error("password_env", f"environment variable {env_name} is not set")
            return None
        return Secret(value)
    return None
