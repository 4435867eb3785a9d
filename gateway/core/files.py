"""Paths named in configuration files: they must exist, and private ones must stay private.

Shared by the stages' settings (listener keys, `delivery.ca_file`, …).

TLS private keys may be readable by their group (Debian gives them to the
`ssl-cert` group); only access by other users is refused. Every other secret
file is read by gateway.core.secret_files, which refuses group access too.
"""

from __future__ import annotations

import ssl
import stat
from pathlib import Path

from cryptography import x509

from gateway.core.yamlnodes import Section

__all__ = ["check_private_file", "check_tls_pair", "existing_path"]


def existing_path(sec: Section, key: str, base: Path) -> Path | None:
    text = sec.opt_str(key)
    if text is None:
        return None
    path = base / text
    if not path.exists():
        sec.error(key, f"'{text}': no such file")
    return path


def check_private_file(sec: Section, key: str, path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IROTH | stat.S_IWOTH):
        sec.error(key, f"'{path}' is readable by other users: chmod 600 it")


def check_tls_pair(sec: Section, cert_key: str, cert: Path | None, key: Path | None) -> None:
    """What the listener will load at start: a PEM certificate and the private key that
    matches it. Checked here so that check-config refuses what serve would."""
    if cert is None or key is None or not cert.exists() or not key.exists():
        return  # reported by existing_path / the caller
    try:
        data = cert.read_bytes()
    except OSError as exc:
        sec.error(cert_key, f"cannot read '{cert}': {exc.strerror}")
        return
    try:
        x509.load_pem_x509_certificate(data)
    except ValueError:
        sec.error(cert_key, f"'{cert}' is not a PEM certificate")
        return
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        # A password callback: an encrypted key is refused instead of prompting.
        context.load_cert_chain(cert, key, password=lambda: b"")
    except ssl.SSLError as exc:
        why = ("the key does not match the certificate" if "MISMATCH" in str(exc)
               else "not a usable PEM private key (encrypted, or not a key)")
        sec.error(cert_key, f"'{key}': {why}")
    except OSError as exc:
        sec.error(cert_key, f"cannot read '{key}': {exc.strerror}")
