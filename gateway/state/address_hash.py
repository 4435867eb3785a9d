"""The keyed hash that stands in for an erased address (GDPR right to erasure).

`erased:<HMAC-SHA256(key, normalized address), 128 bits hex>` replaces the
address in the stores, so a suppression of it still holds: a lookup hashes
the recipient too and finds the entry, yet nothing stored names the person.
Keyed, because a plain hash of an address is reversed by hashing a list of
addresses; the key never leaves the data directory.

The key file (32 random bytes written as hex, mode 0600; 32+ raw bytes are
accepted too, gateway.core.secret_files) is made on first use — the
gateway's first start or the first `erase`, whichever comes first — and never
changes: a new key would orphan every hashed entry. Back it up with the data.
Nodes sharing a PostgreSQL state database must all have the same key (copy the
file); its `fingerprint()`, kept in the database, lets each one check
(gateway.state.erasure_postgres).

Security: reads and creates a secret file; refuses one readable by others.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path

from gateway.core.secret_files import SecretFileError, read_key
from gateway.errors import ConfigError, ConfigProblem

__all__ = ["TOKEN_PREFIX", "AddressHasher"]

TOKEN_PREFIX = "erased:"
_RECHECK = 2.0  # seconds between looks for a key file that did not exist yet


class AddressHasher:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._key: bytes | None = None
        self._looked_at = -_RECHECK

    def token(self, normalized_address: str) -> str:
        """The stand-in for an address (makes the key if there is none yet)."""
        key = self._key or self.ensure_key()
        return _token(key, normalized_address)

    def token_if_keyed(self, normalized_address: str) -> str | None:
        """The token, or None when no key exists — then nothing was ever erased, so no
        stored entry can carry a token. Cheap enough for every RCPT: a file is looked
        for at most every 2 s, and the HMAC takes about a microsecond."""
        key = self._key
        if key is None:
            now = time.monotonic()  # not scheduling: a bound on stat() calls
            if now - self._looked_at < _RECHECK:
                return None
            self._looked_at = now
            key = self._load()
            if key is None:
                return None
        return _token(key, normalized_address)

    def fingerprint(self) -> str:
        """Names the key without revealing it (an HMAC of a fixed text under it)."""
        key = self._key or self.ensure_key()
        mac = hmac.new(key, b"smtp-gateway erasure key fingerprint", hashlib.sha256)
        return mac.hexdigest()[:32]

    def ensure_key(self) -> bytes:
        key = self._load()
        if key is None:
            key = self._create()
        return key

    def _load(self) -> bytes | None:
        """The key (gateway.core.secret_files: hex as written here, or 32+ raw bytes)."""
        if not os.path.lexists(self.path):
            return None
        try:
            key = read_key(self.path, min_bytes=32, hex_ok=True)
        except SecretFileError as exc:
            raise ConfigError([ConfigProblem(str(self.path), 0, 0,
                                             f"erasure key: {exc}")]) from None
        self._key = key
        return key

    def _create(self) -> bytes:
        """Write a new key atomically: a temporary file, then link() into place, which
        fails if another process made one first — then theirs is the key."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, secrets.token_hex(32).encode("ascii") + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, self.path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
        key = self._load()
        assert key is not None
        return key

    def __repr__(self) -> str:
        return f"<AddressHasher {self.path} {'keyed' if self._key else 'no key yet'}>"


def _token(key: bytes, normalized_address: str) -> str:
    # hmac.digest: the one-shot C path, a fifth of hmac.new's cost on every RCPT.
    return TOKEN_PREFIX + hmac.digest(key, normalized_address.encode("utf-8"), "sha256").hex()[:32]
