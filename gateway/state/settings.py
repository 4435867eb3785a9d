"""The state store's settings: its backends (`state:` → StateConfig, used by
gateway.state.open_state) and `retention:` (→ RetentionConfig, used by
gateway.state.retention).

    state: sqlite                       # default: SQLite files in data_dir (one node)
    state: postgresql://gw@db1/gateway  # shared by every node
    state_file: /etc/smtp-gateway/state.dsn   # or the DSN from a file ...
    state_env: SMTP_GATEWAY_STATE             # ... or from the environment
    rate_limits: local                  # default: a table shared by this node's processes
    rate_limits: redis://127.0.0.1:6379/0     # shared by every node (also _file / _env)
    rate_limits_fail_open: false        # Redis away: 451 (false) or no limits (true)
    rate_limits_prefix: "smtp-gateway:rate:"

gateway.config calls `parse_state()` and `parse_retention()`; nothing here imports
the stores, so reading the configuration never opens a database.

Security: a DSN or URL may carry a password. It is read into a Secret, and no
error message here ever repeats the value (only the key's name and place).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from gateway.core.secret_files import SecretFileError, read_text_secret
from gateway.core.yamlnodes import Section
from gateway.model import Secret

__all__ = ["RetentionConfig", "StateConfig", "parse_retention", "parse_state"]

_PG_SCHEMES = ("postgresql://", "postgres://")
_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


@dataclass(frozen=True)
class StateConfig:
    dsn: Secret | None = None  # PostgreSQL; None: the embedded SQLite files
    rate_limits_url: Secret | None = None  # Redis; None: this node's shared table
    rate_limits_fail_open: bool = False
    rate_limits_prefix: str = "smtp-gateway:rate:"

    @property
    def backend(self) -> str:
        return "postgresql" if self.dsn is not None else "sqlite"


def parse_state(root: Section, base: Path) -> StateConfig:
    dsn = _url(root, "state", "sqlite", _PG_SCHEMES, base)
    url = _url(root, "rate_limits", "local", _REDIS_SCHEMES, base)
    d = StateConfig()
    return StateConfig(
        dsn=dsn,
        rate_limits_url=url,
        rate_limits_fail_open=root.get_bool("rate_limits_fail_open", d.rate_limits_fail_open),
        rate_limits_prefix=root.get_str("rate_limits_prefix", d.rate_limits_prefix),
    )


def _url(root: Section, key: str, embedded: str, schemes: tuple[str, ...], base: Path
         ) -> Secret | None:
    """`key` (inline), `key_file` or `key_env`: at most one; `embedded` or absent: None."""
    given = [k for k in (key, f"{key}_file", f"{key}_env") if root.has(k)]
    if len(given) > 1:
        root.error(given[1], f"give only one of {', '.join(given)}")
        return None
    value = _read(root, key, base)
    if value is None or value == embedded:
        return None
    if not value.startswith(schemes):
        where = given[0] if given else key
        root.error(where, f"'{where}' must be '{embedded}' or a URL starting with "
                   f"{' or '.join(schemes)} (the value is not shown: it may hold a password)")
        return None
    return Secret(value)


def _read(root: Section, key: str, base: Path) -> str | None:
    if root.has(key):
        node = root.value_node(key)
        raw = getattr(node, "value", None)
        if not isinstance(raw, str):
            root.error(key, f"'{key}' must be a string")
            return None
        return raw.strip()
    file_name = root.opt_str(f"{key}_file")
    if file_name:
        try:
            return read_text_secret(base / file_name, what=f"'{key}' value")
        except SecretFileError as exc:
            root.error(f"{key}_file", str(exc))
            return None
    env_name = root.opt_str(f"{key}_env")
    if env_name:
        value = os.environ.get(env_name)
        if value is None:
            root.error(f"{key}_env", f"environment variable {env_name} is not set")
            return None
        return value.strip()
    return None


# -- retention: how long events are kept ---------------------------------------------------

DAY = 86400.0


@dataclass(frozen=True)
class RetentionConfig:
    events: float = 90 * DAY  # events older than this are purged
    purge_interval: float = 3600.0  # how often the purge runs
    erasure_key_file: Path | None = None  # None: <data_dir>/erasure.key


def parse_retention(sec: Section, base: Path) -> RetentionConfig:
    d = RetentionConfig()
    key_file = sec.opt_str("erasure_key_file")
    out = RetentionConfig(
        events=sec.duration("events", d.events),
        purge_interval=sec.duration("purge_interval", d.purge_interval),
        erasure_key_file=base / key_file if key_file else None,
    )
    if out.events < 3600:
        sec.error("events", "'retention.events' must be at least 1h")
    if out.purge_interval < 1:
        sec.error("purge_interval", "'retention.purge_interval' must be at least 1s")
    sec.done()
    return out
