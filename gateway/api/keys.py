"""API keys: the keys file, and checking a presented key against it (Postfix's
counterpart is smtpd's SASL password map, which intake.auth already mirrors).

A key as the app holds it: `sgw_<id>_<secret>`. The file keeps, per key, the
id (public: it finds the entry without trying every hash), a name, the scrypt
hash of the whole key (gateway.intake.passwords, the SMTP AUTH hashes), the
scope (`send`, or `send+read` for GET /v1/messages/{id}), the sender domains
it may use and an optional rate limit. `smtp-gateway apikey create|list|revoke`
(gateway.cli.apikey) writes it; the running gateway notices a changed file at
the next request (one stat per request) and re-reads it, so a revoked key is
refused from then on without a reload.

scrypt costs ~50 ms by design, far too much per request, so a key once
verified is remembered by the SHA-256 digest of what was presented, until the
file changes. An unknown id still costs one scrypt (against a decoy), so the
answer time does not say which ids exist; failures are throttled per client
address with the SMTP AUTH throttle (gateway.intake.auth.AuthThrottle).

Security: reads the keys file (must not be readable by other users) and
untrusted presented keys; a key is never logged, only its id and name.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import secrets
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import yaml

from gateway.core.yamlnodes import Problems, Section, compose_file
from gateway.intake.auth import verify_decoy
from gateway.intake.passwords import hash_password, is_valid_hash, verify_password
from gateway.policy.rules_file import parse_rate

__all__ = ["SCOPES", "ApiKey", "KeyRing", "NewKey", "load_keys", "make_key", "write_keys"]

SCOPES = ("send", "send+read")
PREFIX = "sgw_"
_PRESENTED = re.compile(r"sgw_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str  # the events' actor, and `auth_user` for rate limits and idempotency
    hash: str
    scope: str = "send"
    sender_domains: tuple[str, ...] = ()  # "*" allows any
    rate: str | None = None  # e.g. "600/m": messages, per gateway process
    burst: int = 10
    created: str = ""
    revoked: str | None = None

    @property
    def can_read(self) -> bool:
        return self.scope == "send+read"

    def may_send_from(self, address: str) -> bool:
        domain = address.rpartition("@")[2].lower()
        return any(d == "*" or d == domain for d in self.sender_domains)

    @property
    def interval(self) -> float | None:
        """Seconds per message of the key's own rate limit, or None."""
        return parse_rate(self.rate) if self.rate else None

    def __repr__(self) -> str:
        state = "revoked" if self.revoked else self.scope
        return f"<ApiKey {self.name} id={self.id} {state} domains={','.join(self.sender_domains)}>"


@dataclass(frozen=True)
class NewKey:
    key: ApiKey
    secret: str  # shown once, at creation


def make_key(name: str, scope: str, sender_domains: tuple[str, ...], rate: str | None,
             now: float) -> NewKey:
    if not _NAME.fullmatch(name):
        raise ValueError(f"'{name}' is not a key name (letters, digits, '.', '_', '-')")
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}")
    if rate is not None:
        parse_rate(rate)  # ValueError with the reason
    key_id = secrets.token_hex(8)
    presented = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    created = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return NewKey(ApiKey(key_id, name, hash_password(presented), scope,
                         tuple(d.lower() for d in sender_domains), rate, created=created),
                  presented)


def load_keys(path: Path) -> tuple[ApiKey, ...]:
    """The keys of `path` (none if it does not exist); ConfigError with file:line:col."""
    if not path.exists():
        return ()
    problems = Problems()
    if path.stat().st_mode & (stat.S_IROTH | stat.S_IWOTH):
        problems.add(str(path), None, f"'{path}' is readable by other users: chmod 600 it")
    root = Section(str(path), compose_file(str(path), problems), problems, "")
    out = [_key(item) for item in root.sections("keys")]
    root.done()
    ids = [k.id for k in out]
    for dup in sorted({i for i in ids if ids.count(i) > 1}):
        problems.add(str(path), None, f"key id {dup} is listed twice")
    problems.raise_if_any()
    return tuple(out)


def _key(sec: Section) -> ApiKey:
    key = ApiKey(
        id=sec.get_str("id", ""), name=sec.get_str("name", ""), hash=sec.get_str("hash", ""),
        scope=sec.get_str("scope", "send", SCOPES),
        sender_domains=tuple(d.lower() for d, _ in sec.str_list("sender_domains")),
        rate=sec.opt_str("rate"), burst=sec.get_int("burst", 10, 1),
        created=sec.get_str("created", ""), revoked=sec.opt_str("revoked"))
    if not re.fullmatch(r"[0-9a-f]{16}", key.id):
        sec.error("id", "'id' must be 16 hexadecimal digits")
    if not _NAME.fullmatch(key.name):
        sec.error("name", f"'{key.name}' is not a key name")
    if not is_valid_hash(key.hash):
        sec.error("hash", "'hash' is not a password hash (make keys with "
                  "`smtp-gateway apikey create`)")
    if not key.sender_domains:
        sec.error("sender_domains", "list the sender domains the key may use ('*': any)")
    if key.rate is not None:
        try:
            parse_rate(key.rate)
        except ValueError as exc:
            sec.error("rate", str(exc))
    sec.done()
    return key


def write_keys(path: Path, keys: tuple[ApiKey, ...]) -> None:
    """Write the file atomically (temp file, fsync, rename), mode 0600."""
    doc = {"keys": [_entry(k) for k in keys]}
    text = ("# API keys of the HTTP submission API (smtp-gateway apikey create|list|revoke).\n"
            "# Only scrypt hashes are kept: a lost key cannot be recovered, make a new one.\n"
            + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _entry(key: ApiKey) -> dict[str, object]:
    out: dict[str, object] = {"id": key.id, "name": key.name, "scope": key.scope,
                              "sender_domains": list(key.sender_domains)}
    if key.rate:
        out["rate"] = key.rate
        out["burst"] = key.burst
    out["created"] = key.created
    if key.revoked:
        out["revoked"] = key.revoked
    out["hash"] = key.hash
    return out


class KeyRing:
    """The keys of one file as the listener checks them (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._signature: tuple[int, int, int] | None = None
        self._by_id: dict[str, ApiKey] = {}
        self._verified: dict[bytes, ApiKey] = {}  # SHA-256 of a presented key → its key

    def refresh(self) -> None:
        """Re-read the file if it changed (ConfigError if it is bad: the old keys stay)."""
        try:
            st = self.path.stat()
            signature = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            signature = (0, 0, 0)
        if signature == self._signature:
            return
        keys = load_keys(self.path)
        self._by_id = {k.id: k for k in keys if not k.revoked}
        self._verified = {}
        self._signature = signature

    def __len__(self) -> int:
        return len(self._by_id)

    async def check(self, presented: str) -> ApiKey | None:
        digest = hashlib.sha256(presented.encode("utf-8", "replace")).digest()
        known = self._verified.get(digest)
        if known is not None:
            return known
        match = _PRESENTED.fullmatch(presented)
        key = self._by_id.get(match.group(1)) if match else None
        if key is None:
            await asyncio.to_thread(verify_decoy, presented)
            return None
        if not await asyncio.to_thread(verify_password, presented, key.hash):
            return None
        if self._by_id.get(key.id) is key:  # not revoked while scrypt ran
            self._verified[digest] = key
        return key

    def __repr__(self) -> str:
        return f"<KeyRing {self.path} keys={len(self._by_id)} verified={len(self._verified)}>"

