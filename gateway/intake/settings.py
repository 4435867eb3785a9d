"""The intake stage's settings: `listeners:`, `limits:`, `auth:`, `intake_workers:` and
`idempotency:` of config.yaml (Postfix's master.cf smtpd lines and smtpd_* limits).

gateway.config composes them; errors carry file:line:column like every other section.

Security: reads the SMTP AUTH credentials file (password hashes, never passwords) and
refuses listener key files that other users can read.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from gateway.core.files import check_private_file, check_tls_pair, existing_path
from gateway.core.yamlnodes import Problems, Section
from gateway.errors import ConfigProblem
from gateway.intake.passwords import is_valid_hash

__all__ = [
    "IdempotencyConfig",
    "Limits",
    "ListenerConfig",
    "parse_credentials",
    "parse_idempotency",
    "parse_limits",
    "parse_listeners",
    "parse_users",
    "parse_workers",
]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


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
class IdempotencyConfig:
    """A resubmitted message (same key, same client) gets the original queue id."""

    enabled: bool = True
    window: float = 86400.0  # seconds a key is remembered
    header: str = "Idempotency-Key"  # preferred over Message-ID when present


def parse_workers(root: Section) -> int:
    """`intake_workers: auto` is one process per CPU (at most 8); a number is taken as is."""
    if root.has("intake_workers") and getattr(root.value_node("intake_workers"), "value",
                                              None) == "auto":
        return max(1, min(8, os.cpu_count() or 1))
    return root.get_int("intake_workers", 1, 1, 64)



def parse_listeners(root: Section, base: Path) -> tuple[ListenerConfig, ...]:
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
    cert = existing_path(sec, "cert", base)
    key = existing_path(sec, "key", base)
    if tls != "none" and (cert is None or key is None):
        sec.error("tls", f"tls: {tls} needs both 'cert' and 'key'")
    if kind == "submission" and tls == "none":
        sec.error("tls", "a submission listener needs tls: starttls or implicit "
                  "(AUTH only over TLS)")
    if kind == "relay" and not sec.has("networks"):
        sec.error("networks", "a relay listener needs 'networks' (who may relay without AUTH)")
    if key is not None:
        check_private_file(sec, "key", key)
    check_tls_pair(sec, "cert", cert, key)
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



def parse_limits(sec: Section) -> Limits:
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


def parse_users(sec: Section, base: Path, problems: Problems) -> dict[str, str]:
    users: dict[str, str] = {}
    for name, hashed, node in sec.mapping("users"):
        if not is_valid_hash(hashed):
            problems.add(sec.file, node, f"user '{name}': not a password hash (make one with "
                         "'smtp-gateway passwd')")
        users[name] = hashed
    cred_file = sec.opt_str("credentials_file")
    sec.done()
    if cred_file:
        users.update(parse_credentials(base / cred_file, problems))
    return users


def parse_credentials(path: Path, problems: Problems) -> dict[str, str]:
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



def parse_idempotency(sec: Section) -> IdempotencyConfig:
    d = IdempotencyConfig()
    out = IdempotencyConfig(
        enabled=sec.get_bool("enabled", d.enabled),
        window=sec.duration("window", d.window),
        header=sec.get_str("header", d.header),
    )
    if out.window <= 0:
        sec.error("window", "'idempotency.window' must be longer than zero")
    sec.done()
    return out
