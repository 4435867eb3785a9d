"""policies/*.yaml → one immutable PolicySet; every error as `file:line:col: message`.

Three files, each optional, one schema each (see the commented examples in
policies/): suppression.yaml, consent.yaml, ratelimits.yaml. With none of them
present `load_policies()` returns None and intake runs no policy code at all.

`PolicyFiles` watches the files' mtimes; the Gateway polls it (and reloads on
SIGHUP). A reload builds a complete new PolicySet first and swaps it in with
one assignment; a file with errors is logged, counted, and changes nothing.

Security: reads operator-written files (trusted, but validated in full);
header-match patterns are compiled here, once, never from message content.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import yaml
from email_validator import EmailNotValidError, validate_email

from gateway.bounces.rules import BounceRules, parse_bounce_rules
from gateway.core.yamlnodes import Problems, Section, compose_text, parse_duration
from gateway.errors import ConfigError, ConfigProblem
from gateway.model import Suppression, SuppressionReason
from gateway.policy.addresses import normalize_address, normalize_domain_name
from gateway.policy.unsubscribe_token import TokenSigner, read_key

__all__ = [
    "BASES",
    "FILES",
    "RATE_KEYS",
    "Category",
    "CategoryRule",
    "ConsentSettings",
    "PolicyFiles",
    "PolicySet",
    "RateLimit",
    "SuppressionSettings",
    "load_policies",
    "parse_rate",
    "read_policy_texts",
]

FILES = ("suppression.yaml", "consent.yaml", "ratelimits.yaml", "bounces.yaml")
# GDPR Art. 6(1) legal bases; only `consent` needs a recorded, current grant.
BASES = ("consent", "contract", "legal_obligation", "vital_interests", "public_task",
         "legitimate_interest")
RATE_KEYS = ("auth_user", "client_ip", "sender", "sender_domain", "recipient",
             "recipient_domain", "category")
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(\S+)\s*$")
_HEADER_NAME = re.compile(r"^[!-9;-~]+$")


@dataclass(frozen=True)
class Category:
    name: str
    basis: str
    # Open/click tracking (gateway.tracking) for this category's mail, and then only to
    # recipients whose consent record includes the purpose "tracking". Off by default.
    tracking: bool = False

    @property
    def requires_consent(self) -> bool:
        return self.basis == "consent"


@dataclass(frozen=True)
class CategoryRule:
    """Every condition given must hold; the first matching rule gives the category."""

    name: str
    category: str
    senders: frozenset[str] = frozenset()  # normalized addresses
    sender_domains: frozenset[str] = frozenset()
    list_unsubscribe: bool | None = None  # the message has (true) / lacks (false) the header
    precedence_bulk: bool | None = None
    header: str | None = None  # lower-cased field name that must be present …
    header_pattern: re.Pattern[str] | None = None  # … and whose value must match (search)


@dataclass(frozen=True)
class ConsentSettings:
    categories: dict[str, Category] = field(default_factory=lambda: {
        "transactional": Category("transactional", "contract"),
        "marketing": Category("marketing", "consent")})
    header: str = "X-Gateway-Category"
    keep_header: bool = False
    default: str = "transactional"
    rules: tuple[CategoryRule, ...] = ()
    unsubscribe: TokenSigner | None = None  # None: no List-Unsubscribe is added


@dataclass(frozen=True)
class SuppressionSettings:
    strip_plus_tags: bool = False
    # Static entries by target ("addr" or "@domain"): an in-memory set, no query needed.
    static: dict[str, tuple[Suppression, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class RateLimit:
    name: str
    keys: tuple[str, ...]
    interval: float  # seconds per token (period / count)
    burst: int
    action: str  # tempfail (451 4.7.1) | delay (accept, hold the first attempt back)
    categories: frozenset[str] = frozenset()  # only messages of these (empty: all)

    @property
    def at_data(self) -> bool:
        """Checked at DATA: `delay` limits (they shape stored messages), and limits keyed
        by or limited to categories, which are known only once the message is in."""
        return self.action == "delay" or "category" in self.keys or bool(self.categories)


@dataclass(frozen=True)
class PolicySet:
    directory: Path
    suppression: SuppressionSettings
    consent: ConsentSettings
    rate_limits: tuple[RateLimit, ...]
    files: tuple[str, ...]  # the policy files it was built from
    bounces: BounceRules | None = None  # None: no bounces.yaml, bounces suppress nothing

    def __repr__(self) -> str:
        return (f"<PolicySet {self.directory} files={','.join(self.files)} "
                f"static_suppressions={len(self.suppression.static)} "
                f"limits={len(self.rate_limits)}>")


def read_policy_texts(directory: Path) -> dict[str, str]:
    """The policy files' texts by name (absent files are left out)."""
    texts = {}
    for name in FILES:
        try:
            texts[name] = (directory / name).read_text(encoding="utf-8")
        except FileNotFoundError:
            continue
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError([ConfigProblem(str(directory / name), 0, 0,
                                             f"cannot read: {exc}")]) from None
    return texts


def load_policies(directory: Path, texts: dict[str, str] | None = None) -> PolicySet | None:
    """Read and validate every policy file; None if there are none (policies off).

    `texts` (name → YAML) replaces the files' contents: a last-good snapshot; paths
    inside (secret_file) still resolve against `directory`.
    """
    if texts is None:
        texts = read_policy_texts(directory)
    if not texts:
        return None
    problems = Problems()
    consent = _consent_file(directory / "consent.yaml", texts, problems)
    suppression = _suppression_file(directory / "suppression.yaml", texts, problems, consent)
    limits = _ratelimits_file(directory / "ratelimits.yaml", texts, problems, consent)
    bounce_root = _root(directory / "bounces.yaml", texts, problems)
    bounces = (parse_bounce_rules(bounce_root, tuple(consent.categories))
               if bounce_root is not None else None)
    problems.raise_if_any()
    return PolicySet(directory, suppression, consent, limits,
                     tuple(name for name in FILES if name in texts), bounces)


def _root(path: Path, texts: dict[str, str], problems: Problems) -> Section | None:
    text = texts.get(path.name)
    if text is None:
        return None
    return Section(str(path), compose_text(str(path), text, problems), problems, "")


# -- consent.yaml ---------------------------------------------------------------------------


def _consent_file(path: Path, texts: dict[str, str], problems: Problems) -> ConsentSettings:
    root = _root(path, texts, problems)
    if root is None:
        return ConsentSettings()
    d = ConsentSettings()
    categories = _categories(root) if root.has("categories") else d.categories
    header = root.get_str("header", d.header)
    if not _HEADER_NAME.match(header):
        root.error("header", f"'{header}' is not a header field name")
    default = root.get_str("default", d.default)
    if default not in categories:
        root.error("default", f"unknown category '{default}'")
    out = ConsentSettings(
        categories=categories, header=header, keep_header=root.get_bool("keep_header", False),
        default=default, rules=tuple(_rule(s, categories) for s in root.sections("rules")),
        unsubscribe=_unsubscribe(root.section("unsubscribe"), path.parent),
    )
    root.done()
    return out


def _categories(root: Section) -> dict[str, Category]:
    sec = root.section("categories")
    out: dict[str, Category] = {}
    for name in sec.keys():  # noqa: SIM118 (Section is not a dict)
        item = sec.section(name)
        out[name] = Category(name, item.get_str("basis", "contract", BASES),
                             item.get_bool("tracking", False))
        if not item.has("basis"):
            sec.error(name, f"category '{name}' needs a 'basis' ({', '.join(BASES)})")
        item.done()
    sec.done()
    if not out:
        root.error("categories", "declare at least one category")
    return out


def _rule(sec: Section, categories: dict[str, Category]) -> CategoryRule:
    name = sec.get_str("name", sec.where)
    category = sec.get_str("category", "")
    if category not in categories:
        sec.error("category" if category else None,
                  f"unknown category '{category}'" if category else f"'{name}' needs a category")
    senders = frozenset(normalize_address(a) for a in _addresses(sec, "sender"))
    domains = frozenset(normalize_domain_name(d) for d in _strings(sec, "sender_domain"))
    lu = sec.get_bool("list_unsubscribe", False) if sec.has("list_unsubscribe") else None
    bulk = sec.get_bool("precedence_bulk", False) if sec.has("precedence_bulk") else None
    header = sec.opt_str("header")
    if header is not None and not _HEADER_NAME.match(header):
        sec.error("header", f"'{header}' is not a header field name")
    pattern = None
    if sec.has("header_matches"):
        text = sec.get_str("header_matches", "")
        if header is None:
            sec.error("header_matches", "'header_matches' needs 'header'")
        try:
            pattern = re.compile(text, re.IGNORECASE)
        except re.error as exc:
            sec.error("header_matches", f"bad regular expression: {exc}")
    if not (senders or domains or lu is not None or bulk is not None or header):
        sec.error(None, f"rule '{name}' has no condition (sender, sender_domain, "
                  "list_unsubscribe, precedence_bulk, header)")
    sec.done()
    return CategoryRule(name, category, senders, domains, lu, bulk,
                        header.lower() if header else None, pattern)


def _items(sec: Section, key: str) -> list[tuple[str, yaml.Node]]:
    """One string or a list of them, each with its node."""
    node = sec.value_node(key)
    if isinstance(node, yaml.SequenceNode):
        return list(sec.str_list(key))
    if node is not None:
        text = sec.opt_str(key)
        return [(text, node)] if text else []
    return []


def _strings(sec: Section, key: str) -> list[str]:
    return [text for text, _ in _items(sec, key)]


def _addresses(sec: Section, key: str) -> list[str]:
    """One address or a list of them, each checked for syntax."""
    out = []
    for text, item in _items(sec, key):
        problem = _address_problem(text)
        if problem:
            sec.problems.add(sec.file, item, f"'{text}': {problem}")
        else:
            out.append(text)
    return out


def _address_problem(text: str) -> str | None:
    try:
        validate_email(text, check_deliverability=False, allow_smtputf8=True,
                       globally_deliverable=False, test_environment=True)
    except EmailNotValidError as exc:
        return f"not an address: {exc}"
    return None


def _unsubscribe(sec: Section, base: Path) -> TokenSigner | None:
    if sec.node is None:
        return None
    url = sec.get_str("base_url", "")
    if not url.startswith(("https://", "http://")):
        sec.error("base_url" if url else None, "'unsubscribe.base_url' must be an http(s) URL")
    key_text = sec.get_str("secret_file", "")
    key = b""
    if not key_text:
        sec.error(None, "'unsubscribe' needs 'secret_file' (the HMAC key for tokens)")
    else:
        try:
            key = read_key(base / key_text)
        except ValueError as exc:
            sec.error("secret_file", str(exc))
    sec.done()
    return TokenSigner(key, url) if key else None


# -- suppression.yaml -----------------------------------------------------------------------


def _suppression_file(path: Path, texts: dict[str, str], problems: Problems,
                      consent: ConsentSettings) -> SuppressionSettings:
    root = _root(path, texts, problems)
    if root is None:
        return SuppressionSettings()
    plus = root.get_str("plus_tags", "keep", ("keep", "strip"))
    strip = plus == "strip"
    static: dict[str, list[Suppression]] = {}
    for sec in root.sections("entries"):
        entry = _entry(sec, strip, consent)
        if entry is not None:
            static.setdefault(entry.target, []).append(entry)
    root.done()
    return SuppressionSettings(strip, {k: tuple(v) for k, v in static.items()})


def _entry(sec: Section, strip: bool, consent: ConsentSettings) -> Suppression | None:
    address, domain = sec.opt_str("address"), sec.opt_str("domain")
    target = None
    if (address is None) == (domain is None):
        sec.error(None, f"'{sec.where}' needs one of 'address' or 'domain'")
    elif address is not None:
        problem = _address_problem(address)
        if problem:
            sec.error("address", f"'{address}': {problem}")
        target = normalize_address(address, strip_plus_tags=strip)
    elif domain is not None:
        if "@" in domain or "." not in domain.strip("."):
            sec.error("domain", f"'{domain}' is not a domain name")
        target = "@" + normalize_domain_name(domain)
    reasons = tuple(r.value for r in SuppressionReason)
    reason = SuppressionReason(sec.get_str("reason", "manual", reasons))
    scope = sec.get_str("scope", "all")
    if scope != "all" and scope not in consent.categories:
        sec.error("scope", f"unknown category '{scope}' (scope is 'all' or a category)")
    expires = _time(sec, "expires")
    note = sec.get_str("note", "")
    sec.done()
    if target is None:
        return None
    return Suppression(target, reason, scope, 0.0, "suppression.yaml", expires, note)


def _time(sec: Section, key: str) -> float | None:
    text = sec.opt_str(key)
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        sec.error(key, f"'{text}' is not a date or time (use 2026-12-31 or 2026-12-31T18:00Z)")
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


# -- ratelimits.yaml ------------------------------------------------------------------------


def parse_rate(text: str) -> float:
    """'20/m', '5/s', '1000/d', '3/10m' → seconds per token."""
    m = _RATE.match(text)
    problem = ValueError(f"'{text}' is not a rate (use e.g. 20/m, 5/s, 100/h, 3/10m)")
    if not m or float(m.group(1)) <= 0:
        raise problem
    unit = m.group(2)
    try:
        period = parse_duration(("1" + unit) if unit.isalpha() else unit)
    except ValueError:
        raise problem from None
    if period <= 0:
        raise ValueError(f"'{text}': the period must be longer than zero")
    return period / float(m.group(1))


def _ratelimits_file(path: Path, texts: dict[str, str], problems: Problems,
                     consent: ConsentSettings) -> tuple[RateLimit, ...]:
    root = _root(path, texts, problems)
    if root is None:
        return ()
    limits = [_limit(sec, consent) for sec in root.sections("limits")]
    names = [lim.name for lim in limits]
    for name in {n for n in names if names.count(n) > 1}:
        root.error("limits", f"limit name '{name}' is used twice")
    root.done()
    return tuple(limits)


def _limit(sec: Section, consent: ConsentSettings) -> RateLimit:
    name = sec.get_str("name", "")
    if not name:
        sec.error(None, f"'{sec.where}' needs a 'name' (events and replies carry it)")
    keys = tuple(k for k, _ in sec.str_list("key"))
    for text, node in sec.str_list("key"):
        if text not in RATE_KEYS:
            sec.problems.add(sec.file, node, f"unknown key '{text}' (one of: "
                             f"{', '.join(RATE_KEYS)})")
    if not keys:
        sec.error("key" if sec.has("key") else None, f"limit '{name}' needs a 'key' list")
    interval = 1.0
    if not sec.has("rate"):
        sec.error(None, f"limit '{name}' needs a 'rate' (e.g. 20/m)")
    else:
        try:
            interval = parse_rate(sec.get_str("rate", ""))
        except ValueError as exc:
            sec.error("rate", str(exc))
    burst = sec.get_int("burst", 1, 1)
    categories = []
    for text, node in sec.str_list("categories"):
        if text not in consent.categories:
            sec.problems.add(sec.file, node, f"unknown category '{text}'")
        categories.append(text)
    action = sec.get_str("action", "tempfail", ("tempfail", "delay"))
    sec.done()
    return RateLimit(name, tuple(dict.fromkeys(keys)), interval, burst, action,
                     frozenset(categories))


# -- watching -------------------------------------------------------------------------------


class PolicyFiles:
    """The policy files' mtimes, to notice an edit (polled by the Gateway)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._seen = self._stamp()
        self.errors = 0  # reloads refused because of bad files (exported as a metric later)

    def _stamp(self) -> tuple[tuple[str, int, int], ...]:
        out = []
        for name in FILES:
            try:
                st = (self.directory / name).stat()
            except OSError:
                continue
            out.append((name, st.st_mtime_ns, st.st_size))
        return tuple(out)

    def changed(self) -> bool:
        stamp = self._stamp()
        if stamp == self._seen:
            return False
        self._seen = stamp
        return True

    def load(self) -> tuple[PolicySet | None, dict[str, str]]:
        """load_policies() and the texts it was built from; a ConfigError is counted
        and re-raised."""
        try:
            texts = read_policy_texts(self.directory)
            return load_policies(self.directory, texts), texts
        except ConfigError:
            self.errors += 1
            raise
