"""The `admin:` section of config.yaml → AdminConfig (validated, file:line:col errors).

Decisions an operator can rely on:

- The admin listener runs when config.yaml has an `admin:` section (the shipped
  config.yaml has one) and `enabled` is not false; loopback 127.0.0.1:9025 by
  default. A config without the section has no admin listener, so nothing is
  bound that the operator did not ask for.
- Tokens come from files (`token_file`, mode 0600 like every secret) or the
  environment (`token_env`), never from the YAML itself, and are held as
  `Secret`s (their repr is '***', so no log line can show one). `tokens:` lists
  several named tokens; the name is the audit actor ("api:<name>"); the
  shorthand `token_file`/`token_env` is one token named "admin".
- Without a token the listener still serves /healthz, /readyz, /metrics,
  /openapi.json and the public unsubscribe endpoint; the other endpoints answer
  403. Binding an address other than loopback without a token is refused.

Security: reads token files; a token shorter than 16 characters is refused.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from gateway.core.listen import is_loopback, listen_address
from gateway.core.secret_files import SecretFileError, read_text_secret
from gateway.core.yamlnodes import Section
from gateway.model import Secret
from gateway.policy.rules_file import parse_rate

__all__ = ["DEFAULT_PORT", "MIN_TOKEN_LENGTH", "AdminConfig", "AdminToken", "parse_admin"]

DEFAULT_PORT = 9025
MIN_TOKEN_LENGTH = 16
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class AdminToken:
    name: str  # the audit actor is "api:<name>"
    secret: Secret


@dataclass(frozen=True)
class AdminConfig:
    address: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    tokens: tuple[AdminToken, ...] = ()
    # Header fields recorded at intake so that a trace can find a message by them
    # (e.g. X-Booking-Id); lower-case names.
    correlation_headers: tuple[str, ...] = ()
    # One-click unsubscribe: per client IP, `burst` requests then one per interval.
    unsubscribe_interval: float = 6.0  # 10/m
    unsubscribe_burst: int = 10
    # Requests from these addresses (a reverse proxy) are rate-limited by the last
    # address of their X-Forwarded-For instead of their own.
    trusted_proxies: tuple[IPNetwork, ...] = ()
    max_body: int = 1024 * 1024  # bytes of a request body; more gets 413

    @property
    def is_loopback(self) -> bool:
        return is_loopback(self.address)


def parse_admin(root: Section, base: Path) -> AdminConfig | None:
    """None when there is no `admin:` section or `enabled: false`."""
    if not root.has("admin"):
        return None
    sec = root.section("admin")
    enabled = sec.get_bool("enabled", True)
    address = listen_address(sec)
    tokens = _tokens(sec, base)
    interval, burst = _unsubscribe_limit(sec.section("unsubscribe_limit"))
    out = AdminConfig(
        address=address,
        port=sec.get_int("port", DEFAULT_PORT, 0, 65535),
        tokens=tokens,
        correlation_headers=_header_names(sec),
        unsubscribe_interval=interval,
        unsubscribe_burst=burst,
        trusted_proxies=_networks(sec, "trusted_proxies"),
        max_body=sec.size("max_body", 1024 * 1024),
    )
    if enabled and not tokens and not out.is_loopback:
        sec.error("address", f"the admin listener on {address} (not loopback) needs a token: "
                  "set 'admin.token_file' or 'admin.token_env'")
    sec.done()
    return out if enabled else None


def _tokens(sec: Section, base: Path) -> tuple[AdminToken, ...]:
    out: list[AdminToken] = []
    single = _secret(sec, base)
    if single is not None:
        out.append(AdminToken("admin", single))
    for item in sec.sections("tokens"):
        name = item.get_str("name", "")
        if not name or not name.replace("-", "").replace("_", "").isalnum():
            item.error("name" if name else None,
                       "every admin token needs a 'name' (letters, digits, - and _)")
        secret = _secret(item, base)
        if secret is None and not item.has("token_file") and not item.has("token_env"):
            item.error(None, f"token '{name}' needs 'token_file' or 'token_env'")
        if secret is not None and name:
            out.append(AdminToken(name, secret))
        item.done()
    names = [t.name for t in out]
    for name in sorted({n for n in names if names.count(n) > 1}):
        sec.error("tokens", f"admin token name '{name}' is used twice")
    return tuple(out)


def _secret(sec: Section, base: Path) -> Secret | None:
    if sec.has("token"):
        sec.value_node("token")
        sec.error("token", "put the admin token in a file ('token_file') or the environment "
                  "('token_env'), not in config.yaml")
        return None
    file_name = sec.opt_str("token_file")
    env_name = sec.opt_str("token_env")
    value: str | None = None
    if file_name:
        path = base / file_name
        try:
            value = read_text_secret(path, what="admin token")
        except SecretFileError as exc:
            sec.error("token_file", str(exc))
            return None
        where = "token_file"
    elif env_name:
        value = os.environ.get(env_name)
        if value is None:
            sec.error("token_env", f"environment variable {env_name} is not set")
            return None
        value = value.strip()
        where = "token_env"
    else:
        return None
    if len(value) < MIN_TOKEN_LENGTH:
        sec.error(where, f"the admin token must have at least {MIN_TOKEN_LENGTH} characters "
                  "(make one with: head -c 32 /dev/urandom | base64)")
        return None
    return Secret(value)


def _header_names(sec: Section) -> tuple[str, ...]:
    out: list[str] = []
    for text, node in sec.str_list("correlation_headers"):
        name = text.strip()
        if not name or any(c <= " " or c == ":" or ord(c) > 126 for c in name):
            sec.problems.add(sec.file, node, f"'{text}' is not a header field name")
            continue
        if name.lower() not in out:
            out.append(name.lower())
    return tuple(out)


def _unsubscribe_limit(sec: Section) -> tuple[float, int]:
    interval = 6.0
    if sec.has("rate"):
        try:
            interval = parse_rate(sec.get_str("rate", ""))
        except ValueError as exc:
            sec.error("rate", str(exc))
    burst = sec.get_int("burst", 10, 1)
    sec.done()
    return interval, burst


def _networks(sec: Section, key: str) -> tuple[IPNetwork, ...]:
    out: list[IPNetwork] = []
    for text, node in sec.str_list(key):
        try:
            out.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            sec.problems.add(sec.file, node, f"'{text}' is not an IP network (CIDR)")
    return tuple(out)
