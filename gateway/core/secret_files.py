"""Key and secret files: one format, one reader, one writer (README: "Key and secret files").

Two kinds of file hold secrets:

- **key files** (erasure key, tracking key, unsubscribe secret, VERP key): key
  material, at least 32 bytes. Either raw bytes (`head -c 32 /dev/urandom > FILE`)
  or hex digits (what `smtp-gateway keygen FILE` writes: 64 hex digits and a
  newline). A reader with `hex_ok` decodes a file that is only hex digits (and
  surrounding whitespace); one without uses the file's bytes as they are, so a hex
  file is 64 bytes of key material there — both are accepted everywhere.
- **text secrets** (webhook secret, admin token, passwords, a DSN in a file): one
  line of UTF-8 text; surrounding whitespace (the newline `echo` adds) is dropped.
  Raw random bytes are refused here with the fix: the value is shared with another
  program (a webhook receiver, an SMTP server), which expects text.

Every secret file must be a regular file (a FIFO or a device would block start-up
for ever) of at most 64 KiB, open to its owner only, as OpenSSH demands of a
private key: any group or other permission bit is refused ("chmod 600 it").
TLS private keys are the exception (gateway.core.files): Debian shares them with
the `ssl-cert` group, so only access by others is refused there.

Errors are SecretFileError (a ValueError) whose text names the file and the fix;
the settings parsers turn it into a `file:line:col` problem of the key that named
the file. Nothing here ever puts a secret's content into a message.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
from pathlib import Path

__all__ = ["MAX_SECRET_FILE", "SecretFileError", "read_key", "read_secret_bytes",
           "read_text_secret", "write_key"]

MAX_SECRET_FILE = 64 * 1024
_HEX = re.compile(rb"[0-9a-fA-F]+")
_MAKE = "make one with: smtp-gateway keygen FILE"


class SecretFileError(ValueError):
    """A key or secret file that cannot be used; str() is one line with the fix."""


def read_secret_bytes(path: Path) -> bytes:
    """The file's bytes, after the checks every secret file passes (see the module doc)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise SecretFileError(f"cannot read '{path}': {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SecretFileError(f"'{path}': not a regular file")
        if st.st_mode & 0o077:
            raise SecretFileError(f"'{path}' is readable by other users: chmod 600 it "
                                  f"(mode {stat.S_IMODE(st.st_mode):04o})")
        if st.st_size > MAX_SECRET_FILE:
            raise SecretFileError(f"'{path}': {st.st_size} bytes is too large for a key "
                                  f"or secret file (at most {MAX_SECRET_FILE})")
        chunks = []
        while chunk := os.read(fd, MAX_SECRET_FILE + 1):
            chunks.append(chunk)
        return b"".join(chunks)[:MAX_SECRET_FILE]
    except OSError as exc:
        raise SecretFileError(f"cannot read '{path}': {exc.strerror}") from None
    finally:
        os.close(fd)


def read_key(path: Path, *, min_bytes: int = 32, hex_ok: bool = True, strip: bool = False
             ) -> bytes:
    """Key material from a key file: hex digits decoded (with `hex_ok`), else raw bytes.

    `strip` drops surrounding whitespace from raw bytes (for files that were always
    read that way, so their keys stay the same)."""
    data = read_secret_bytes(path)
    text = data.strip()
    if hex_ok and len(text) % 2 == 0 and _HEX.fullmatch(text):
        key = bytes.fromhex(text.decode("ascii"))
    else:
        key = text if strip else data
    if len(key) < min_bytes:
        raise SecretFileError(f"'{path}' holds a {len(key)}-byte key; at least {min_bytes} "
                              f"bytes are needed ({_MAKE})")
    return key


def read_text_secret(path: Path, *, min_chars: int = 0, what: str = "secret") -> str:
    """One line of UTF-8 text, surrounding whitespace dropped."""
    data = read_secret_bytes(path)
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise SecretFileError(f"'{path}': the {what} must be text (UTF-8), not raw bytes "
                              f"({_MAKE})") from None
    if any(ord(c) < 0x20 or c == "\x7f" for c in text):
        raise SecretFileError(f"'{path}': the {what} must be one line of printable text")
    if len(text) < min_chars:
        raise SecretFileError(f"'{path}': the {what} must have at least {min_chars} "
                              f"characters ({_MAKE})")
    return text


def write_key(path: Path, nbytes: int = 32) -> None:
    """A new key file: `nbytes` random bytes as hex and a newline, mode 0600, never over
    an existing file (a new key would orphan what the old one protects)."""
    if nbytes < 16:
        raise SecretFileError(f"a key of {nbytes} bytes is too short (at least 16)")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.write(fd, secrets.token_hex(nbytes).encode("ascii") + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
