"""config.yaml → one frozen Config; every error carries file:line:column.

This module only reads the file and composes the sections: each stage parses its
own section in `gateway/<stage>/settings.py` (intake, delivery, scheduler, signing,
state, bounces, admin, webhooks, logs, metrics) and reports its problems into the
shared `Problems`, so every mistake in the file is listed at once.

`load_config()` is what `serve`, SIGHUP reload and `check-config` all call, so
a file that check-config accepts is exactly a file the gateway will run.
Relative paths are resolved against the directory of the config file.

Security: the sections read secrets from files or the environment (never from the
YAML itself for passwords) and wrap them in `Secret`, whose repr is '***'.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass, field, replace
from pathlib import Path

from gateway.admin.settings import AdminConfig, parse_admin
from gateway.api.settings import ApiConfig, parse_api
from gateway.bounces.settings import BounceConfig, parse_bounces
from gateway.core.yamlnodes import Problems, Section, compose_file
from gateway.delivery.settings import DeliveryConfig, parse_delivery, parse_retry, parse_routes
from gateway.intake.settings import (
    IdempotencyConfig,
    Limits,
    ListenerConfig,
    parse_idempotency,
    parse_limits,
    parse_listeners,
    parse_users,
    parse_workers,
)
from gateway.logs.settings import LogConfig, parse_logging
from gateway.metrics.settings import parse_metrics
from gateway.model import RetrySchedule, Route
from gateway.scheduler.settings import PriorityConfig, parse_priorities
from gateway.signing.settings import DkimConfig, parse_dkim
from gateway.state.settings import RetentionConfig, StateConfig, parse_retention, parse_state
from gateway.tracking.settings import TrackingConfig, parse_tracking
from gateway.webhooks.settings import WebhookConfig, parse_webhooks

__all__ = ["Config", "load_config"]

_NODE_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


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
    api: ApiConfig | None = None  # None: no HTTP submission listener (gateway.api.settings)
    webhooks: tuple[WebhookConfig, ...] = ()  # gateway.webhooks.settings
    tracking: TrackingConfig | None = None  # None: no tracking (gateway.tracking.settings)
    retention: RetentionConfig = field(default_factory=RetentionConfig)  # gateway.state.retention
    # Category → priority and each priority's share of delivery (gateway.scheduler.settings).
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
    retry = parse_retry(root.section("retry"), RetrySchedule())
    priorities = parse_priorities(root.section("priorities"))
    listeners = parse_listeners(root, base)
    cfg = Config(
        path=Path(file).resolve(),
        hostname=hostname,
        data_dir=base / root.get_str("data_dir", "./var"),
        listeners=listeners,
        limits=parse_limits(root.section("limits")),
        users=parse_users(root.section("auth"), base, problems),
        delivery=replace(parse_delivery(root.section("delivery"), hostname, base),
                         priority_lanes=priorities.lanes),
        retry=retry,
        routes=parse_routes(root, retry, base),
        shutdown_timeout=root.duration("shutdown_timeout", 30.0),
        log_level=root.get_str("log_level", "info", ("debug", "info", "warning", "error")),
        intake_workers=parse_workers(root),
        dkim=parse_dkim(root.section("dkim"), base, read_keys),
        policies_dir=base / root.get_str("policies_dir", "./policies"),
        logging=parse_logging(root.section("logging")),
        metrics_sample_interval=parse_metrics(root.section("metrics")),
        admin=parse_admin(root, base),
        api=parse_api(root, base),
        webhooks=parse_webhooks(root, base),
        tracking=parse_tracking(root, base),
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
