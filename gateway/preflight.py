"""Everything `serve` checks before it opens anything, in one function that
`check-config` runs too, so the two cannot disagree (Postfix's `postfix check`).

Per-value checks live with each stage's settings (a TLS certificate and its key
load and match, every key and secret file is read and validated: see
gateway.core.files and gateway.core.secret_files), so `load_config()` already
makes them. What needs the whole configuration, or files beside it, is here:

- `data_dir` is a directory the gateway can write (or can be made), and what the
  gateway keeps there has the right kind (state.db a file, spool/ a directory);
- no two listeners (SMTP, admin, API, tracking) share an address and port;
- the state store DSN and the rate-limit URL parse;
- the erasure key, when it exists, is a valid key file;
- the API keys file, when it exists, loads;
- the policy files load.

Binding the ports is the one thing left to `serve`. Every problem is collected
and raised as one ConfigError (one `file[:line:col]: what` line each).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from gateway.config import Config, load_config
from gateway.errors import ConfigError, ConfigProblem
from gateway.model import Secret
from gateway.policy.rules_file import PolicySet, load_policies

__all__ = ["Preflight", "preflight"]


@dataclass(frozen=True)
class Preflight:
    config: Config
    policies: PolicySet | None  # None: no policy files (policies off)


def preflight(path: str | os.PathLike[str]) -> Preflight:
    """Load and check everything serve needs; ConfigError listing every problem."""
    config = load_config(path)
    problems: list[ConfigProblem] = []
    file = str(config.path)

    def add(message: str) -> None:
        problems.append(ConfigProblem(file, 0, 0, message))

    _data_dir(config.data_dir, add)
    _data_files(config.data_dir, add)
    _addresses(config, add)
    _url(config.state.dsn, "state", add)
    _url(config.state.rate_limits_url, "rate_limits", add)
    policies = None
    for check in (_erasure_key, _api_keys):
        try:
            check(config)
        except ConfigError as exc:
            problems.extend(exc.problems)
    try:
        policies = load_policies(config.policies_dir) if config.policies_dir else None
    except ConfigError as exc:
        problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    return Preflight(config, policies)


def _data_dir(path: Path, add: Callable[[str], None]) -> None:
    """A writable directory, or one the gateway can make (its nearest existing parent
    is a writable directory)."""
    probe = path
    while not probe.exists():
        if probe.is_symlink():  # dangling
            add(f"data_dir '{path}': '{probe}' is a broken symbolic link")
            return
        probe = probe.parent
    if not probe.is_dir():
        add(f"data_dir '{path}': '{probe}' is not a directory")
    elif not os.access(probe, os.W_OK | os.X_OK):
        add(f"data_dir '{path}': '{probe}' is not writable by this user")


# What the gateway keeps in data_dir, by kind; anything else there is left alone.
_DATA_FILES = ("state.db", "policy.db", "bounces.db", "idempotency.db", "erasure.key",
               "log-redaction.key", "ratelimits.table")
_DATA_DIRS = ("spool",)


def _data_files(data_dir: Path, add: Callable[[str], None]) -> None:
    """A file of the gateway's that is a directory (or the reverse) never gets better:
    refused here, where check-config sees it too."""
    for name in _DATA_FILES:
        path = data_dir / name
        if path.exists() and not path.is_file():
            add(f"'{path}' is not a regular file")
    for name in _DATA_DIRS:
        path = data_dir / name
        if path.exists() and not path.is_dir():
            add(f"'{path}' is not a directory")


def _addresses(config: Config, add: Callable[[str], None]) -> None:
    """Two listeners on one address and port: the second bind would fail at start (or,
    with SO_REUSEPORT, silently share the port)."""
    named = [(f"listener '{lst.name}'", lst.address, lst.port) for lst in config.listeners]
    if config.admin is not None:
        named.append(("the admin listener", config.admin.address, config.admin.port))
    if config.api is not None:
        named.append(("the API listener", config.api.address, config.api.port))
    if config.tracking is not None:
        named.append(("the tracking listener", config.tracking.address,
                      config.tracking.port))
    for i, (name, address, port) in enumerate(named):
        for other, other_address, other_port in named[:i]:
            if port != 0 and port == other_port and _overlap(address, other_address):
                add(f"{name} and {other} both use {address}:{port} "
                    f"({other_address}:{other_port})")
                break


def _overlap(a: str, b: str) -> bool:
    """Whether binding both would conflict: the same address, or a wildcard of the
    same family (0.0.0.0 takes every IPv4 address; :: every address, dual-stack)."""
    if a == b:
        return True
    if "::" in (a, b):
        return True
    try:
        ia, ib = ipaddress.ip_address(a), ipaddress.ip_address(b)
    except ValueError:
        return False  # a host name: the bind decides
    return ia.version == ib.version and (ia.is_unspecified or ib.is_unspecified)


def _url(secret: Secret | None, key: str, add: Callable[[str], None]) -> None:
    """The URL's port and host parse (the scheme was checked with the settings); the
    value itself is never shown."""
    if secret is None:
        return
    try:
        parts = urlsplit(secret.value)
        parts.port  # noqa: B018 (parses the port: ValueError if not a number 0-65535)
        parts.hostname  # noqa: B018
    except ValueError:
        add(f"'{key}': not a valid URL: its port is not a number from 0 to 65535 (the "
            "value is not shown: it may hold a password)")


def _erasure_key(config: Config) -> None:
    from gateway.state.address_hash import AddressHasher

    AddressHasher(config.erasure_key_path).token_if_keyed("preflight@invalid")


def _api_keys(config: Config) -> None:
    if config.api is None:
        return
    from gateway.api.keys import load_keys

    load_keys(config.api.keys_file)
