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
    "MtaStsConfig",
    "TlsReportsConfig",
    "parse_delivery",
    "parse_retry",
    "parse_routes",
]


@dataclass(frozen=True)
class DnsConfig:
    nameservers: tuple[str, ...] = ()  # empty: the system's /etc/resolv.conf
    port: int = 53
    timeout: float = 10.0
    # "validating-resolver": the nameservers validate DNSSEC and are trusted to say so
    # with the AD bit (a resolver on this host, or reached over a trusted link), as
    # Postfix's smtp_dns_support_level=dnssec; "off": no answer counts as secure.
    dnssec: str = "off"


@dataclass(frozen=True)
class MtaStsConfig:
    """`delivery.mta_sts`: fetching and caching recipient domains' MTA-STS policies."""

    enabled: bool = True
    fetch_timeout: float = 20.0  # the whole HTTPS fetch: connect, TLS, request, body
    # How long a domain's TXT record (and so the policy id) is trusted before it is
    # asked again, in the background; a policy is refetched when its id changes.
    recheck: float = 3600.0
    port: int = 443  # the policy host's HTTPS port (tests use another)
    cache_size: int = 100_000  # domains kept in memory (policies and "has none")


@dataclass(frozen=True)
class TlsReportsConfig:
    """`delivery.tls_reports`: daily SMTP TLS reports (RFC 8460) to recipient domains."""

    enabled: bool = False
    organization: str = ""  # organization-name; default: the hostname
    contact: str = ""  # contact-info; default: the sender address
    sender: str = ""  # From: and MAIL FROM of mailto: reports; default tls-reports@hostname
    send_after: float = 3600.0  # after 00:00 UTC: when yesterday's reports go out
    http_timeout: float = 60.0  # an https: report upload
    flush_interval: float = 60.0  # counts kept in memory this long before they are stored
    keep_days: int = 14  # stored counts older than this are dropped, sent or not


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
    # DANE (RFC 7672) for MX routes: needs dns.dnssec: validating-resolver.
    dane: bool = False
    # Each priority's share of the limits above (from the `priorities:` section).
    priority_lanes: dict[Priority, Lane] = field(default_factory=lambda: dict(DEFAULT_LANES))
    mta_sts: MtaStsConfig = MtaStsConfig()
    tls_reports: TlsReportsConfig = TlsReportsConfig()


def parse_delivery(sec: Section, hostname: str, base: Path) -> DeliveryConfig:
    d = DeliveryConfig(helo_name=hostname)
    dns_sec = sec.section("dns")
    dns = DnsConfig(
        nameservers=tuple(t for t, _ in dns_sec.str_list("nameservers")),
        port=dns_sec.get_int("port", 53, 1, 65535),
        timeout=dns_sec.duration("timeout", 10.0),
        dnssec=_dnssec(dns_sec),
    )
    dns_sec.done()
    dane = sec.get_bool("dane", False)
    if dane and dns.dnssec != "validating-resolver":
        sec.error("dane", "DANE needs DNSSEC-validated answers: set 'dns.dnssec: "
                  "validating-resolver' (and point dns.nameservers at a validating "
                  "resolver you trust), or 'dane: off'")
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
        dane=dane,
        mta_sts=_mta_sts(sec.section("mta_sts")),
        tls_reports=_tls_reports(sec.section("tls_reports")),
    )
    sec.done()
    return out


def _mta_sts(sec: Section) -> MtaStsConfig:
    d = MtaStsConfig()
    out = MtaStsConfig(
        enabled=sec.get_bool("enabled", d.enabled),
        fetch_timeout=sec.duration("fetch_timeout", d.fetch_timeout),
        recheck=sec.duration("recheck", d.recheck),
        port=sec.get_int("port", d.port, 1, 65535),
        cache_size=sec.get_int("cache_size", d.cache_size, 100),
    )
    sec.done()
    return out


def _tls_reports(sec: Section) -> TlsReportsConfig:
    d = TlsReportsConfig()
    out = TlsReportsConfig(
        enabled=sec.get_bool("enabled", d.enabled),
        organization=sec.get_str("organization", d.organization),
        contact=sec.get_str("contact", d.contact),
        sender=sec.get_str("sender", d.sender),
        send_after=sec.duration("send_after", d.send_after),
        http_timeout=sec.duration("http_timeout", d.http_timeout),
        flush_interval=sec.duration("flush_interval", d.flush_interval),
        keep_days=sec.get_int("keep_days", d.keep_days, 2),
    )
    if out.sender and "@" not in out.sender:
        sec.error("sender", f"'{sec.where}.sender' must be an address (user@domain)")
    if out.send_after >= 86400:
        sec.error("send_after", f"'{sec.where}.send_after' must be less than a day")
    sec.done()
    return out


def _dnssec(sec: Section) -> str:
    """`off` | `validating-resolver`, read from the YAML text: YAML 1.1 reads a bare
    `off` as false."""
    node = sec.value_node("dnssec")
    raw = str(getattr(node, "value", "off")) if node is not None else "off"
    if raw not in ("off", "validating-resolver"):
        sec.error("dnssec", f"'{sec.where}.dnssec': '{raw}' is not one of: off, "
                  "validating-resolver")
        return "off"
    return raw


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
        mta_sts=sec.get_str("mta_sts", "enforce", ("enforce", "testing-only", "off")),
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
