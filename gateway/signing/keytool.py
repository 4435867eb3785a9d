"""The `smtp-gateway dkim keygen | list | check` verbs' logic (OpenDKIM's opendkim-genkey
and opendkim-testkey); gateway.cli.dkim is the thin command-line layer over it.

`keygen` makes an RSA 2048 (default) or Ed25519 (RFC 8463) key at the path the
configuration expects: `dkim.keys_dir/<domain>.<selector>.key`, or the selector's
`key_file`. `check` looks up `<selector>._domainkey.<domain>` and compares it with
the private key, catching the usual deployment mistakes: record missing, truncated
by a DNS web form, or still the old key after a rotation.

Security: handles private keys (through gateway.signing.keys, which never shows
them). `check` reads DNS answers from the network; they are only compared, never used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.resolver

from gateway.delivery.settings import DnsConfig
from gateway.signing.keys import (
    DEFAULT_RSA_BITS,
    KeyFileError,
    PrivateKey,
    RecordStatus,
    compare_record,
    dns_record_value,
    generate_private_key,
    normalize_domain,
    permission_problem,
    read_private_key,
    record_name,
    valid_selector,
    write_private_key,
    zone_record,
)
from gateway.signing.settings import DkimConfig, DkimKey

__all__ = [
    "KeyCheck",
    "KeyListing",
    "KeygenResult",
    "check_domain",
    "check_key",
    "key_path",
    "keygen",
    "list_keys",
]


def key_path(config: DkimConfig, domain: str, selector: str) -> Path:
    """Where the configuration expects this key: its `key_file`, or the keys_dir default."""
    for key in config.keys:
        if (key.domain, key.selector) == (domain, selector):
            return key.key_file
    return config.keys_dir / f"{domain}.{selector}.key"


def _lookup_txt(name: str, dns_config: DnsConfig) -> list[str]:
    """TXT strings at `name`, each record's strings joined; [] when there are none."""
    resolver = dns.resolver.Resolver(configure=not dns_config.nameservers)
    if dns_config.nameservers:
        resolver.nameservers = list(dns_config.nameservers)
    resolver.port = dns_config.port
    resolver.lifetime = dns_config.timeout
    try:
        answer = resolver.resolve(name + ".", "TXT", raise_on_no_answer=False)
    except dns.resolver.NXDOMAIN:
        return []
    return [b"".join(r.strings).decode("utf-8", errors="replace") for r in answer]


@dataclass(frozen=True)
class KeyCheck:
    domain: str
    selector: str
    algorithm: str
    active: bool
    name: str  # the DNS name looked up
    status: RecordStatus
    detail: str
    expected: str  # the record value to publish


def check_key(key: DkimKey, dns_config: DnsConfig) -> KeyCheck:
    assert key.private_key is not None, "check needs the keys read"
    name = record_name(key.selector, key.domain)
    expected = dns_record_value(key.private_key)

    def result(status: RecordStatus, detail: str) -> KeyCheck:
        return KeyCheck(key.domain, key.selector, key.algorithm, key.active, name, status,
                        detail, expected)

    try:
        records = _lookup_txt(name, dns_config)
    except dns.exception.Timeout:
        return result(RecordStatus.DNS_ERROR,
                      f"no answer from the DNS servers within {dns_config.timeout:g}s")
    except dns.resolver.NoNameservers:
        return result(RecordStatus.DNS_ERROR, "the DNS servers failed to answer (SERVFAIL)")
    except (dns.exception.DNSException, OSError) as exc:
        return result(RecordStatus.DNS_ERROR, f"lookup failed: {type(exc).__name__}")
    if not records:
        return result(RecordStatus.MISSING, f"no TXT record at {name}")
    outcomes = [compare_record(text, key.private_key) for text in records]
    for status, detail in outcomes:
        if status.ok:
            extra = f" ({len(records)} TXT records there)" if len(records) > 1 else ""
            return result(status, detail + extra)
    return result(*outcomes[0])


def check_domain(config: DkimConfig, dns_config: DnsConfig, domain: str,
                 selector: str | None = None) -> list[KeyCheck]:
    """Check the configured keys of `domain` (or one selector) against DNS."""
    keys = [k for k in config.keys
            if k.domain == domain and (selector is None or k.selector == selector)]
    return [check_key(k, dns_config) for k in keys]


@dataclass(frozen=True)
class KeyListing:
    domain: str
    selector: str
    algorithm: str
    active: bool
    key_file: Path
    state: str  # "ok", or what is wrong with the file
    fingerprint: str  # "" when the file cannot be read


def list_keys(config: DkimConfig) -> list[KeyListing]:
    """Every configured key and the state of its file (read here, not by the loader)."""
    out: list[KeyListing] = []
    for key in config.keys:
        state, fingerprint = "ok", ""
        try:
            private = read_private_key(key.key_file)
            fingerprint = private.fingerprint
            if private.algorithm != key.algorithm:
                state = f"the file holds an {private.algorithm} key"
        except KeyFileError as exc:
            state = str(exc)
        problem = permission_problem(key.key_file)
        if problem and state == "ok":
            state = problem
        out.append(KeyListing(key.domain, key.selector, key.algorithm, key.active,
                              key.key_file, state, fingerprint))
    return out


@dataclass(frozen=True)
class KeygenResult:
    path: Path
    key: PrivateKey
    record: str  # zone-file line to publish
    configured: bool  # the configuration already names this selector


def keygen(config: DkimConfig, domain: str, selector: str, algorithm: str | None = None,
           *, bits: int = DEFAULT_RSA_BITS, overwrite: bool = False) -> KeygenResult:
    """Make a key where the configuration expects it; raise ValueError on bad input."""
    domain = normalize_domain(domain)
    if not valid_selector(selector):
        raise ValueError(f"'{selector}' is not a selector (DNS labels: letters, digits, -, _)")
    configured = next((k for k in config.keys
                       if (k.domain, k.selector) == (domain, selector)), None)
    if configured is not None and algorithm not in (None, configured.algorithm):
        raise ValueError(f"the configuration says {domain} selector {selector} is "
                         f"{configured.algorithm}, not {algorithm}")
    algorithm = algorithm or (configured.algorithm if configured else "rsa")
    path = key_path(config, domain, selector)
    write_private_key(path, generate_private_key(algorithm, bits), overwrite=overwrite)
    key = read_private_key(path)
    return KeygenResult(path, key, zone_record(selector, domain, dns_record_value(key)),
                        configured is not None)
