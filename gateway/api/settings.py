"""The `api:` section of config.yaml → ApiConfig (validated, file:line:col errors).

    api:
      address: 0.0.0.0          # default 127.0.0.1
      port: 9587
      cert_file: tls/api.crt    # required unless the address is loopback
      key_file: tls/api.key     # mode 0600
      keys_file: api_keys.yaml  # made by `smtp-gateway apikey create`
      max_body: 40M             # bytes of a request; more gets 413

Decisions an operator can rely on:

- No `api:` section (or `enabled: false`): no listener, nothing bound.
- It is a listener of its own, never the admin one: apps reach it, the admin
  API stays on loopback.
- Keys travel in a header, so on any address but loopback the listener only
  speaks HTTPS: `cert_file`/`key_file` are required there, and a private key
  readable by other users is refused, as for SMTP's.

Security: reads file names only; the files themselves are read at start (the
certificate) and per request when changed (the keys file, gateway.api.keys).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gateway.core.files import check_private_file, check_tls_pair, existing_path
from gateway.core.listen import is_loopback, listen_address
from gateway.core.yamlnodes import Section

__all__ = ["DEFAULT_PORT", "ApiConfig", "parse_api"]

DEFAULT_PORT = 9587
DEFAULT_MAX_BODY = 40 * 1024 * 1024  # a 25 MB message in base64 is ~34 MB of JSON


@dataclass(frozen=True)
class ApiConfig:
    keys_file: Path
    address: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    cert_file: Path | None = None
    key_file: Path | None = None
    max_body: int = DEFAULT_MAX_BODY

    @property
    def is_loopback(self) -> bool:
        return is_loopback(self.address)

    @property
    def tls(self) -> bool:
        return self.cert_file is not None


def parse_api(root: Section, base: Path) -> ApiConfig | None:
    """None when there is no `api:` section or `enabled: false`."""
    if not root.has("api"):
        return None
    sec = root.section("api")
    enabled = sec.get_bool("enabled", True)
    address = listen_address(sec)
    out = ApiConfig(
        keys_file=base / sec.get_str("keys_file", "api_keys.yaml"),
        address=address,
        port=sec.get_int("port", DEFAULT_PORT, 0, 65535),
        cert_file=existing_path(sec, "cert_file", base),
        key_file=existing_path(sec, "key_file", base),
        max_body=sec.size("max_body", DEFAULT_MAX_BODY),
    )
    if (out.cert_file is None) != (out.key_file is None):
        sec.error("cert_file", "'api.cert_file' and 'api.key_file' go together")
    if enabled and not out.tls and not out.is_loopback:
        sec.error("address", f"the API listener on {address} (not loopback) needs TLS: set "
                  "'api.cert_file' and 'api.key_file' (API keys must not cross a network "
                  "in clear text)")
    if out.key_file is not None:
        check_private_file(sec, "key_file", out.key_file)
    check_tls_pair(sec, "cert_file", out.cert_file, out.key_file)
    sec.done()
    return out if enabled else None

