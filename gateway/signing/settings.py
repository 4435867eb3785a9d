"""The `dkim:` section of config.yaml → DkimConfig (gateway.signing.signer signs with it).

gateway.config calls `parse_dkim()`; errors carry
file:line:column like every other section. Key files readable by anyone but
their owner are refused here, at start-up and at every reload.

Security: reads private key files (never logs or shows them: PrivateKey's repr
is a fingerprint).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from gateway.core.yamlnodes import Section
from gateway.signing.keys import (
    KeyFileError,
    PrivateKey,
    normalize_domain,
    permission_problem,
    read_private_key,
    valid_selector,
)

__all__ = ["DEFAULT_SIGNED_HEADERS", "DkimConfig", "DkimKey", "parse_dkim"]

DEFAULT_SIGNED_HEADERS = (
    "From", "To", "Cc", "Subject", "Date", "Message-ID", "Reply-To", "MIME-Version",
    "Content-Type", "Content-Transfer-Encoding", "List-Unsubscribe", "List-Unsubscribe-Post",
)
_UNSIGNABLE_HEADERS = ("received", "return-path", "dkim-signature", "bcc", "resent-bcc",
                       "comments", "keywords")
_CANONICALIZATIONS = ("relaxed/relaxed", "relaxed/simple", "simple/relaxed", "simple/simple")
_HEADER_NAME = re.compile(r"^[!-9;-~]+$")  # RFC 5322 3.6.8 ftext


@dataclass(frozen=True)
class DkimKey:
    domain: str  # the signing domain (d=), lower-case A-labels
    selector: str  # s=; the record is at <selector>._domainkey.<domain>
    algorithm: str  # rsa | ed25519
    key_file: Path
    active: bool  # signs now; inactive keys are published before or after their turn
    private_key: PrivateKey | None = None  # None only when loaded with read_keys=False


@dataclass(frozen=True)
class DkimConfig:
    """DKIM signing (gateway/signing/signer.py); no keys means no signing."""

    enabled: bool = True
    keys_dir: Path = Path("dkim")
    keys: tuple[DkimKey, ...] = ()
    # From: domain → signing domain: exact names, or ".parent" for every subdomain.
    domain_map: tuple[tuple[str, str], ...] = ()
    fallback: str = "unsigned"  # no key for the From: domain: sign_with_default | unsigned | refuse
    default_domain: str | None = None  # for sign_with_default
    canonicalization: str = "relaxed/relaxed"  # header/body
    signed_headers: tuple[str, ...] = DEFAULT_SIGNED_HEADERS
    oversigned_headers: tuple[str, ...] = ("From",)  # signed once more, so none can be added
    dual_sign: bool = False  # a domain may have an active RSA and an active Ed25519 key

    @property
    def signing(self) -> bool:
        return self.enabled and bool(self.keys)


def parse_dkim(sec: Section, base: Path, read_keys: bool) -> DkimConfig:
    d = DkimConfig()
    keys_dir = base / sec.get_str("keys_dir", "./dkim")
    dual = sec.get_bool("dual_sign", d.dual_sign)
    keys = _dkim_domains(sec.section("domains"), keys_dir, base, dual, read_keys)
    domains = {k.domain for k in keys}
    fallback = sec.get_str("fallback", d.fallback, ("sign_with_default", "unsigned", "refuse"))
    default = _dkim_domain_ref(sec, "default_domain", domains)
    if fallback == "sign_with_default" and default is None and not sec.has("default_domain"):
        sec.error("fallback", "fallback: sign_with_default needs 'default_domain'")
    if fallback != "unsigned" and not keys:
        sec.error("fallback", f"fallback: {fallback} needs keys in 'dkim.domains'")
    out = DkimConfig(
        enabled=sec.get_bool("enabled", d.enabled),
        keys_dir=keys_dir,
        keys=keys,
        domain_map=_dkim_map(sec, domains),
        fallback=fallback,
        default_domain=default,
        canonicalization=sec.get_str("canonicalization", d.canonicalization,
                                     _CANONICALIZATIONS),
        signed_headers=_header_names(sec, "signed_headers", d.signed_headers),
        oversigned_headers=_header_names(sec, "oversigned_headers", d.oversigned_headers),
        dual_sign=dual,
    )
    if "from" not in {h.lower() for h in out.signed_headers}:
        sec.error("signed_headers", "'From' must be among the signed headers (RFC 6376 5.4)")
    sec.done()
    return out


def _dkim_domains(sec: Section, keys_dir: Path, base: Path, dual: bool,
                  read_keys: bool) -> tuple[DkimKey, ...]:
    keys: list[DkimKey] = []
    for name in sec.keys():  # noqa: SIM118 (Section is not a dict)
        try:
            domain = normalize_domain(name)
        except ValueError as exc:
            sec.value_node(name)
            sec.error(name, f"'dkim.domains': {exc}")
            continue
        entries = [_dkim_key(s, domain, keys_dir, base, read_keys) for s in sec.sections(name)]
        _dkim_check_active(sec, name, entries, dual)
        keys.extend(entries)
    sec.done()
    return tuple(keys)


def _dkim_key(sec: Section, domain: str, keys_dir: Path, base: Path,
              read_keys: bool) -> DkimKey:
    selector = sec.get_str("selector", "")
    if not valid_selector(selector):
        sec.error("selector" if selector else None,
                  f"'{sec.where}' needs a 'selector': DNS labels of letters, digits, - and _")
    algorithm = sec.get_str("algorithm", "rsa", ("rsa", "ed25519"))
    file_text = sec.opt_str("key_file")
    key_file = base / file_text if file_text else keys_dir / f"{domain}.{selector}.key"
    key = DkimKey(domain, selector, algorithm, key_file, sec.get_bool("active", False))
    if read_keys and valid_selector(selector):
        key = DkimKey(domain, selector, algorithm, key_file, key.active,
                      _dkim_private_key(sec, key))
    sec.done()
    return key


def _dkim_private_key(sec: Section, key: DkimKey) -> PrivateKey | None:
    where = "key_file" if sec.has("key_file") else "selector"
    problem = permission_problem(key.key_file)
    if problem is not None:
        sec.error(where, f"DKIM key {problem}")
        return None
    try:
        private = read_private_key(key.key_file)
    except KeyFileError as exc:
        hint = "" if key.key_file.exists() else (
            f" (make it with: smtp-gateway dkim keygen --domain {key.domain} "
            f"--selector {key.selector} --algo {key.algorithm})")
        sec.error(where, f"DKIM key {exc}{hint}")
        return None
    if private.algorithm != key.algorithm:
        sec.error("algorithm" if sec.has("algorithm") else where,
                  f"'{key.key_file}' holds an {private.algorithm} key, not {key.algorithm}")
        return None
    return private


def _dkim_check_active(sec: Section, name: str, keys: list[DkimKey], dual: bool) -> None:
    selectors = [k.selector for k in keys]
    for selector in {s for s in selectors if selectors.count(s) > 1}:
        sec.error(name, f"{name}: selector '{selector}' is listed twice")
    active = [k for k in keys if k.active]
    algorithms = [k.algorithm for k in active]
    if not active:
        sec.error(name, f"{name}: no key is active: set 'active: true' on the one to sign with")
    elif not dual and len(active) > 1:
        sec.error(name, f"{name}: {len(active)} keys are active "
                  f"({', '.join(k.selector for k in active)}); one signs at a time "
                  "(dual_sign: true signs with one RSA and one Ed25519 key)")
    elif len(set(algorithms)) < len(algorithms):
        sec.error(name, f"{name}: two active keys of one algorithm; dual signing uses one "
                  "RSA and one Ed25519 key")


def _dkim_domain_ref(sec: Section, key: str, domains: set[str]) -> str | None:
    text = sec.opt_str(key)
    if text is None:
        return None
    try:
        domain = normalize_domain(text)
    except ValueError as exc:
        sec.error(key, str(exc))
        return None
    if domain not in domains:
        sec.error(key, f"'{text}' has no keys in 'dkim.domains'")
    return domain


def _dkim_map(sec: Section, domains: set[str]) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    for pattern, target, node in sec.mapping("domain_map"):
        subdomains = pattern.startswith(".")
        try:
            name = normalize_domain(pattern[1:] if subdomains else pattern)
            signing = normalize_domain(target)
        except ValueError as exc:
            sec.problems.add(sec.file, node, f"'dkim.domain_map': {exc}")
            continue
        if signing not in domains:
            sec.problems.add(sec.file, node, f"'{target}' has no keys in 'dkim.domains'")
        elif not subdomains and name in domains:
            sec.problems.add(sec.file, node, f"'{pattern}' has keys of its own: remove it from "
                             "'dkim.domain_map'")
        out.append(("." + name if subdomains else name, signing))
    return tuple(out)


def _header_names(sec: Section, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
    if not sec.has(key):
        return default
    names: list[str] = []
    for text, node in sec.str_list(key):
        if not _HEADER_NAME.match(text):
            sec.problems.add(sec.file, node, f"'{text}' is not a header field name")
        elif text.lower() in _UNSIGNABLE_HEADERS:
            sec.problems.add(sec.file, node, f"'{text}' must not be signed: later hops add or "
                             "remove it, which would break the signature")
        else:
            names.append(text)
    return tuple(names)
