"""The `bounces:` section of config.yaml → BounceConfig.

gateway.config calls `parse_bounces()`; errors carry
file:line:column like every other section.

    bounces:
      verp:                        # rewrite the envelope sender to b+<token>@domain
        domain: bounces.example.com
        key_file: secrets/verp.key # or key_env: NAME; at least 16 bytes
      smtp:
        listeners: [relay]         # which listeners take mail for the domain (default: all)
      maildir: /var/mail/bounces   # a Maildir to watch (new/ → cur/)
      imap:                        # a mailbox to poll (a provider's return path)
        host: imap.example.com
        ...
      poll_interval: 30s

Security: reads the VERP key and the IMAP password from files or the
environment (never from config.yaml itself) and keeps them in `Secret`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from gateway.core.secret_files import SecretFileError, read_text_secret
from gateway.core.yamlnodes import Section
from gateway.model import Secret

__all__ = ["BounceConfig", "ImapSettings", "VerpSettings", "parse_bounces"]

_MIN_KEY = 16


@dataclass(frozen=True)
class VerpSettings:
    domain: str
    key: Secret
    prefix: str = "b"


@dataclass(frozen=True)
class ImapSettings:
    host: str
    port: int
    username: str
    password: Secret
    tls: str = "implicit"  # none | starttls | implicit
    verify_cert: bool = True
    folder: str = "INBOX"
    # Where processed messages go; "" means flag them instead ($GatewayProcessed, \\Seen).
    processed_folder: str = "Processed"


@dataclass(frozen=True)
class BounceConfig:
    verp: VerpSettings | None = None
    # Listeners that accept mail for the VERP domain; None: every listener.
    smtp_listeners: tuple[str, ...] | None = None
    maildir: Path | None = None
    imap: ImapSettings | None = None
    poll_interval: float = 30.0

    @property
    def domain(self) -> str | None:
        return self.verp.domain if self.verp is not None else None


def parse_bounces(sec: Section, base: Path, listener_names: tuple[str, ...]) -> BounceConfig:
    if sec.node is None:
        return BounceConfig()
    verp = _verp(sec.section("verp"), base)
    smtp = sec.section("smtp")
    listeners: tuple[str, ...] | None = None
    if smtp.has("listeners"):
        listeners = tuple(t for t, _ in smtp.str_list("listeners"))
        for text, node in smtp.str_list("listeners"):
            if text not in listener_names:
                sec.problems.add(sec.file, node, f"no listener named '{text}'")
    smtp.done()
    maildir_text = sec.opt_str("maildir")
    out = BounceConfig(
        verp=verp,
        smtp_listeners=listeners,
        maildir=base / maildir_text if maildir_text else None,
        imap=_imap(sec.section("imap"), base),
        poll_interval=sec.duration("poll_interval", 30.0),
    )
    sec.done()
    return out


def _verp(sec: Section, base: Path) -> VerpSettings | None:
    if sec.node is None:
        return None
    domain = sec.get_str("domain", "").strip().rstrip(".").lower()
    if not domain or "." not in domain or "@" in domain:
        sec.error("domain" if sec.has("domain") else None,
                  "'bounces.verp' needs a 'domain' (e.g. bounces.example.com)")
    prefix = sec.get_str("prefix", "b").lower()
    if not prefix.isalnum():
        sec.error("prefix", f"'{prefix}': the prefix must be letters and digits")
    key = _secret(sec, base, "key")
    if key is None and not any(sec.has(k) for k in ("key", "key_file", "key_env")):
        sec.error(None, "'bounces.verp' needs 'key_file' or 'key_env' (the HMAC key)")
    elif key is not None and len(key.value.encode()) < _MIN_KEY:
        sec.error("key_file" if sec.has("key_file") else "key_env",
                  f"the VERP key must be at least {_MIN_KEY} bytes")
        key = None
    sec.done()
    return VerpSettings(domain, key, prefix) if key is not None and domain else None


def _imap(sec: Section, base: Path) -> ImapSettings | None:
    if sec.node is None:
        return None
    tls = sec.get_str("tls", "implicit", ("none", "starttls", "implicit"))
    host = sec.get_str("host", "")
    user = sec.get_str("username", "")
    if not host or not user:
        sec.error(None, "'bounces.imap' needs 'host' and 'username'")
    password = _secret(sec, base, "password")
    if password is None and not any(sec.has(k) for k in ("password", "password_file",
                                                          "password_env")):
        sec.error(None, "'bounces.imap' needs 'password_file' or 'password_env'")
    out = ImapSettings(
        host=host,
        port=sec.get_int("port", 993 if tls == "implicit" else 143, 1, 65535),
        username=user,
        password=password or Secret(""),
        tls=tls,
        verify_cert=sec.get_bool("verify_cert", True),
        folder=sec.get_str("folder", "INBOX"),
        processed_folder=sec.get_str("processed_folder", "Processed"),
    )
    sec.done()
    return out if host and user and password is not None else None


def _secret(sec: Section, base: Path, name: str) -> Secret | None:
    """`<name>_file` or `<name>_env`: secrets never sit in config.yaml itself."""
    if sec.has(name):
        sec.value_node(name)
        sec.error(name, f"put the {name} in a file ('{name}_file') or the environment "
                  f"('{name}_env'), not in config.yaml")
        return None
    file_name = sec.opt_str(f"{name}_file")
    env_name = sec.opt_str(f"{name}_env")
    if file_name:
        try:
            return Secret(read_text_secret(base / file_name, what=name))
        except SecretFileError as exc:
            sec.error(f"{name}_file", str(exc))
            return None
    if env_name:
        value = os.environ.get(env_name)
        if value is None:
            sec.error(f"{name}_env", f"environment variable {env_name} is not set")
            return None
        return Secret(value)
    return None
