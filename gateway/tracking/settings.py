"""The `tracking:` section of config.yaml → TrackingConfig (file:line:col errors).

Engagement tracking is off unless this section exists, and even then it applies only
to categories of consent.yaml with `tracking: true` and to recipients whose consent
record names the purpose "tracking" (gateway.tracking.decide).

    tracking:
      url: https://t.example.com        # how recipients reach the listener (in the mail)
      address: 0.0.0.0                  # the public tracking listener, its own port
      port: 8443
      key_file: tracking.key            # HMAC key of the tokens: 32+ random bytes, 0600
      cert: tls/t.example.com.pem       # TLS, required unless the address is loopback
      key: tls/t.example.com.key
      scanner_window: 2s                # clicks on several links within this: a scanner

Security: reads the token key file (refused when other users may read it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from gateway.core.files import check_tls_pair, existing_path
from gateway.core.listen import is_loopback, listen_address
from gateway.core.secret_files import SecretFileError, read_key
from gateway.core.yamlnodes import Section

__all__ = ["MIN_KEY_BYTES", "TrackingConfig", "parse_tracking"]

MIN_KEY_BYTES = 32


@dataclass(frozen=True)
class TrackingConfig:
    url: str  # base URL, no trailing slash: <url>/o/<token>, <url>/c/<token>
    key: bytes = field(repr=False)
    address: str = "127.0.0.1"
    port: int = 8090
    cert_file: Path | None = None
    key_file: Path | None = None
    scanner_window: float = 2.0

    @property
    def is_loopback(self) -> bool:
        return is_loopback(self.address)


def parse_tracking(root: Section, base: Path) -> TrackingConfig | None:
    """None when config.yaml has no `tracking:` section (tracking off)."""
    if not root.has("tracking"):
        return None
    sec = root.section("tracking")
    url = sec.get_str("url", "").rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
        sec.error("url", f"'tracking.url': '{url}' must be an http(s) URL without a query")
    address = listen_address(sec)
    cert, key = existing_path(sec, "cert", base), existing_path(sec, "key", base)
    out = TrackingConfig(
        url=url, key=_key(sec, base), address=address,
        port=sec.get_int("port", 8090, 0, 65535), cert_file=cert, key_file=key,
        scanner_window=sec.duration("scanner_window", 2.0))
    if (cert is None) != (key is None):
        sec.error("cert", "'tracking.cert' and 'tracking.key' go together")
    check_tls_pair(sec, "cert", cert, key)
    if cert is None and not out.is_loopback:
        sec.error("address", f"the tracking listener on {address} (not loopback) needs TLS: "
                  "set 'tracking.cert' and 'tracking.key'")
    sec.done()
    return out


def _key(sec: Section, base: Path) -> bytes:
    name = sec.opt_str("key_file")
    if name is None:
        sec.error(None, "'tracking.key_file' is required (make one with: "
                  "smtp-gateway keygen tracking.key)")
        return b""
    path = base / name
    try:  # the file's bytes are the key material (hex text too: 64 bytes of it)
        return read_key(path, min_bytes=MIN_KEY_BYTES, hex_ok=False)
    except SecretFileError as exc:
        sec.error("key_file", str(exc))
        return b""
