"""config.yaml → frozen dataclasses; every error carries file:line:column.

`load_config()` is what `serve`, SIGHUP reload and `check-config` all call, so
a file that check-config accepts is exactly a file the gateway will run.
Relative paths are resolved against the directory of the config file.

Security: reads secrets from files or the environment (never from the YAML
itself for smarthost passwords) and wraps them in `Secret`, whose repr is '***'.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import stat
from dataclasses import dataclass, field, replace
from pathlib import Path

from gateway.admin.settings import AdminConfig, parse_admin
from gateway.bounces.settings import BounceConfig, parse_bounces
from gateway.dkim_config import DEFAULT_SIGNED_HEADERS, DkimConfig, DkimKey, parse_dkim
from gateway.errors import ConfigProblem
from gateway.model import (
    BreakerSettings,
    Priority,
    RetrySchedule,
    Route,
    RouteMatch,
    Secret,
    Smarthost,
)
from gateway.passwords import is_valid_hash
from gateway.priority_config import (
    DEFAULT_LANES,
    IdempotencyConfig,
    Lane,
    PriorityConfig,
    parse_idempotency,
    parse_priorities,
)
from gateway.retention_config import RetentionConfig, parse_retention
from gateway.state_config import StateConfig, parse_state
from gateway.webhooks.settings import WebhookConfig, parse_webhooks
from gateway.yamlnodes import Problems, Section, compose_file, parse_duration

__all__ = [
    "DEFAULT_SIGNED_HEADERS",
    "AdminConfig",
    "Config",
    "DeliveryConfig",
    "DkimConfig",
    "DkimKey",
    "DnsConfig",
    "Limits",
    "ListenerConfig",
    "LogConfig",
    "load_config",
]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_NODE_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


@dataclass(frozen=True)
class ListenerConfig:
    name: str
    kind: str  # relay | submission
    address: str
    port: int
    networks: tuple[IPNetwork, ...] = ()  # relay: who may relay without AUTH
    tls: str = "none"  # none | starttls | implicit
    cert_file: Path | None = None
    key_file: Path | None = None

    @property
    def requires_auth(self) -> bool:
        return self.kind == "submission"


@dataclass(frozen=True)
class Limits:
    max_message_size: int = 25 * 1024 * 1024
    max_recipients: int = 1000  # Postfix smtpd_recipient_limit
    command_timeout: float = 300.0  # Postfix smtpd_timeout
    session_timeout: float = 1800.0
    max_sessions: int = 200
    max_sessions_per_ip: int = 50  # Postfix smtpd_client_connection_count_limit


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


@dataclass(frozen=True)
class LogConfig:
    format: str = "text"  # text | json | logfmt
    redact_addresses: str = "none"  # none | partial | hash


# RFC 6376 5.4.1's core set plus what mailbox providers want signed for one-click unsubscribe
# (RFC 8058); Received, Return-Path and DKIM-Signature are never signed (hops change them).
@dataclass(frozen=True)
class Config:
    path: Path
    hostname: str
    data_dir: Path
    listeners: tuple[ListenerConfig, ...]
    limits: Limits
    users: dict[str, str]  # SMTP AUTH user → scrypt hash
    delivery: DeliveryConfig
    routes: tuple[Route, ...]
    retry: RetrySchedule
    shutdown_timeout: float = 30.0
    log_level: str = "info"
    intake_workers: int = 1  # processes serving SMTP sessions (serve only)
    dkim: DkimConfig = field(default_factory=DkimConfig)
    # Suppression, consent and rate-limit files (gateway.policy.rules_file);
    # None or a directory without policy files: no policy checks.
    policies_dir: Path | None = None
    logging: LogConfig = field(default_factory=lambda: LogConfig())
    metrics_sample_interval: float = 10.0  # seconds between queue gauge samples
    admin: AdminConfig | None = None  # None: no admin listener (gateway.admin.settings)
    webhooks: tuple[WebhookConfig, ...] = ()  # gateway.webhooks.settings
    retention: RetentionConfig = field(default_factory=RetentionConfig)  # gateway.retention
    # Category → priority and each priority's share of delivery (gateway.priority_config).
    priorities: PriorityConfig = field(default_factory=PriorityConfig)
    idempotency: IdempotencyConfig = field(default_factory=IdempotencyConfig)
    # Return paths (VERP) and bounce ingestion (gateway.bounces.settings).
    bounces: BounceConfig = field(default_factory=BounceConfig)
    # Where policy state lives: SQLite / this node's table, or PostgreSQL / Redis.
    state: StateConfig = field(default_factory=StateConfig)
    # This node's name among several (logs, /readyz, who changed a shared breaker).
    node_name: str = field(default_factory=socket.gethostname)

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"

    @property
    def state_path(self) -> Path:
        return self.data_dir / "state.db"

    @property
    def erasure_key_path(self) -> Path:
        """The key of erased addresses' hashes (gateway.state.address_hash)."""
        return self.retention.erasure_key_file or self.data_dir / "erasure.key"

    @property
    def policy_snapshot_path(self) -> Path:
        """The last policy that loaded (gateway.policy.runtime), for restarted workers."""
        return self.data_dir / "policies.last-good.json"


def load_config(path: str | os.PathLike[str], *, read_keys: bool = True) -> Config:
    """Read and validate a config file; raise ConfigError listing every problem.

    `read_keys=False` skips reading DKIM private keys (for `dkim keygen`, which makes
    them, and `dkim list`, which reports on them); everything else reads them.
    """
    file = str(path)
    problems = Problems()
    root = Section(file, compose_file(file, problems), problems, "")
    base = Path(file).resolve().parent
    hostname = root.get_str("hostname", socket.getfqdn())
    retry = _retry(root.section("retry"), RetrySchedule())
    priorities = parse_priorities(root.section("priorities"))
    listeners = _listeners(root, base)
    cfg = Config(
        path=Path(file).resolve(),
        hostname=hostname,
        data_dir=base / root.get_str("data_dir", "./var"),
        listeners=listeners,
        limits=_limits(root.section("limits")),
        users=_users(root.section("auth"), base, problems),
        delivery=replace(_delivery(root.section("delivery"), hostname, base),
                         priority_lanes=priorities.lanes),
        retry=retry,
        routes=_routes(root, retry, base),
        shutdown_timeout=root.duration("shutdown_timeout", 30.0),
        log_level=root.get_str("log_level", "info", ("debug", "info", "warning", "error")),
        intake_workers=_workers(root),
        dkim=parse_dkim(root.section("dkim"), base, read_keys),
        policies_dir=base / root.get_str("policies_dir", "./policies"),
        logging=_logging(root.section("logging")),
        metrics_sample_interval=_metrics(root.section("metrics")),
        admin=parse_admin(root, base),
        webhooks=parse_webhooks(root, base),
        retention=parse_retention(root.section("retention"), base),
        priorities=priorities,
        idempotency=parse_idempotency(root.section("idempotency")),
        bounces=parse_bounces(root.section("bounces"), base,
                              tuple(lst.name for lst in listeners)),
        state=parse_state(root, base),
        node_name=_node_name(root),
    )
    if cfg.bounces.verp is None and not problems.items and any(r.verp for r in cfg.routes):
        root.error("routes", "a route has 'verp: true' but 'bounces.verp' is not configured")
    root.done()
    problems.raise_if_any()
    return cfg


def _node_name(root: Section) -> str:
    """A label in logs and JSON: printable ASCII without spaces, at most 64 characters."""
    name = root.get_str("node_name", socket.gethostname())
    if not _NODE_NAME.fullmatch(name):
        root.error("node_name", f"'{name[:70]}' is not a node name: 1-64 characters of "
                   "letters, digits, '.', '-', '_'")
    return name


def _logging(sec: Section) -> LogConfig:
    cfg = LogConfig(sec.get_str("format", "text", ("text", "json", "logfmt")),
                    sec.get_str("redact_addresses", "none", ("none", "partial", "hash")))
    sec.done()
    return cfg


def _metrics(sec: Section) -> float:
    interval = sec.duration("queue_sample_interval", 10.0)
    if interval <= 0:
        sec.error("queue_sample_interval", "must be more than 0")
    sec.done()
    return interval


def _workers(root: Section) -> int:
    """`intake_workers: auto` is one process per CPU (at most 8); a number is taken as is."""
    if root.has("intake_workers") and getattr(root.value_node("intake_workers"), "value",
                                              None) == "auto":
        return max(1, min(8, os.cpu_count() or 1))
    return root.get_int("intake_workers", 1, 1, 64)


# -- listeners ------------------------------------------------------------------------------


def _listeners(root: Section, base: Path) -> tuple[ListenerConfig, ...]:
    sections = root.sections("listeners")
    if not sections and not root.has("listeners"):
        return (ListenerConfig("relay", "relay", "127.0.0.1", 2525, _nets(["127.0.0.0/8", "::1"])),)
    out: list[ListenerConfig] = []
    for sec in sections:
        out.append(_listener(sec, base))
        sec.done()
    names = [lst.name for lst in out]
    for name in {n for n in names if names.count(n) > 1}:
        root.error("listeners", f"listener name '{name}' is used twice")
    if not out:
        root.error("listeners", "at least one listener is needed")
    return tuple(out)


def _listener(sec: Section, base: Path) -> ListenerConfig:
    kind = sec.get_str("kind", "relay", ("relay", "submission"))
    name = sec.get_str("name", kind)
    tls = sec.get_str("tls", "none", ("none", "starttls", "implicit"))
    networks: list[IPNetwork] = []
    for text, node in sec.str_list("networks"):
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            sec.problems.add(sec.file, node, f"'{text}' is not an IP network (CIDR)")
    cert = _path(sec, "cert", base)
    key = _path(sec, "key", base)
    if tls != "none" and (cert is None or key is None):
        sec.error("tls", f"tls: {tls} needs both 'cert' and 'key'")
    if kind == "submission" and tls == "none":
        sec.error("tls", "a submission listener needs tls: starttls or implicit "
                  "(AUTH only over TLS)")
    if kind == "relay" and not sec.has("networks"):
        sec.error("networks", "a relay listener needs 'networks' (who may relay without AUTH)")
    if key is not None:
        _check_private_file(sec, "key", key)
    return ListenerConfig(
        name=name,
        kind=kind,
        address=sec.get_str("address", "127.0.0.1"),
        port=sec.get_int("port", 2525, 0, 65535),
        networks=tuple(networks),
        tls=tls,
        cert_file=cert,
        key_file=key,
    )


def _nets(texts: list[str]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(t, strict=False) for t in texts)


def _path(sec: Section, key: str, base: Path) -> Path | None:
    text = sec.opt_str(key)
    if text is None:
        return None
    path = base / text
    if not path.exists():
        sec.error(key, f"'{text}': no such file")
    return path


def _check_private_file(sec: Section, key: str, path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IROTH | stat.S_IWOTH):
        sec.error(key, f"'{path}' is readable by other users: chmod 600 it")


# -- limits, auth, delivery ---------------------------------------------------------------


def _limits(sec: Section) -> Limits:
    d = Limits()
    out = Limits(
        max_message_size=sec.size("max_message_size", d.max_message_size),
        max_recipients=sec.get_int("max_recipients", d.max_recipients, 1),
        command_timeout=sec.duration("command_timeout", d.command_timeout),
        session_timeout=sec.duration("session_timeout", d.session_timeout),
        max_sessions=sec.get_int("max_sessions", d.max_sessions, 1),
        max_sessions_per_ip=sec.get_int("max_sessions_per_ip", d.max_sessions_per_ip, 1),
    )
    sec.done()
    return out


def _users(sec: Section, base: Path, problems: Problems) -> dict[str, str]:
    users: dict[str, str] = {}
    for name, hashed, node in sec.mapping("users"):
        if not is_valid_hash(hashed):
            problems.add(sec.file, node, f"user '{name}': not a password hash (make one with "
                         "'smtp-gateway passwd')")
        users[name] = hashed
    cred_file = sec.opt_str("credentials_file")
    sec.done()
    if cred_file:
        users.update(_read_credentials(base / cred_file, problems))
    return users


def _read_credentials(path: Path, problems: Problems) -> dict[str, str]:
    """`user:hash` lines, '#' comments — the format `smtp-gateway passwd` prints."""
    out: dict[str, str] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        problems.items.append(ConfigProblem(str(path), 0, 0, f"cannot read: {exc.strerror}"))
        return out
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        user, sep, hashed = text.partition(":")
        if not sep or not user or not is_valid_hash(hashed):
            problems.items.append(ConfigProblem(str(path), number, 1, "expected 'user:scrypt$…'"))
            continue
        out[user] = hashed
    return out


def _delivery(sec: Section, hostname: str, base: Path) -> DeliveryConfig:
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
        ca_file=_path(sec, "ca_file", base),
        connection_idle_timeout=sec.duration("connection_idle_timeout",
                                             d.connection_idle_timeout),
    )
    sec.done()
    return out


def _retry(sec: Section, inherit: RetrySchedule) -> RetrySchedule:
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


# -- routes ---------------------------------------------------------------------------------


def _routes(root: Section, retry: RetrySchedule, base: Path) -> tuple[Route, ...]:
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
        retry=_retry(sec.section("retry"), retry),
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
            return Secret(path.read_text(encoding="utf-8").strip())
        except OSError as exc:
            sec.error("password_file", f"cannot read '{file_name}': {exc.strerror}")
            return None
    if env_name:
        value = os.environ.get(env_name)
        if value is None:
            sec.error("password_env", f"environment variable {env_name} is not set")
            return None
        return Secret(value)
    return None
