"""The state backends of config.yaml → StateConfig (gateway.state.open_state uses it).

    state: sqlite                       # default: SQLite files in data_dir (one node)
    state: postgresql://gw@db1/gateway  # shared by every node
    state_file: /etc/smtp-gateway/state.dsn   # or the DSN from a file ...
    state_env: SMTP_GATEWAY_STATE             # ... or from the environment
    rate_limits: local                  # default: a table shared by this node's processes
    rate_limits: redis://127.0.0.1:6379/0     # shared by every node (also _file / _env)
    rate_limits_fail_open: false        # Redis away: 451 (false) or no limits (true)
    rate_limits_prefix: "smtp-gateway:rate:"

Kept apart from gateway.config, which calls `parse_state()`.

Security: a DSN or URL may carry a password. It is read into a Secret, and no
error message here ever repeats the value (only the key's name and place).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from gateway.model import Secret
from gateway.yamlnodes import Section

__all__ = ["StateConfig", "parse_state"]

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
            return (base / file_name).read_text(encoding="utf-8").strip()
        except OSError as exc:
            root.error(f"{key}_file", f"cannot read '{file_name}': {exc.strerror}")
            return None
    env_name = root.opt_str(f"{key}_env")
    if env_name:
        value = os.environ.get(env_name)
        if value is None:
            root.error(f"{key}_env", f"environment variable {env_name} is not set")
            return None
        return value.strip()
    return None
