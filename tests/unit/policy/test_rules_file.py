"""policies/*.yaml: the examples load, and each kind of error is reported at file:line:col."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.model import SuppressionReason
from gateway.policy.rules_file import PolicyFiles, load_policies, parse_rate

EXAMPLES = Path(__file__).resolve().parents[3] / "policies"


def copy_examples(directory: Path) -> Path:
    directory.mkdir(exist_ok=True)
    for example in EXAMPLES.glob("*.yaml.example"):
        shutil.copy(example, directory / example.name.removesuffix(".example"))
    return directory


def problems(directory: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_policies(directory)
    return [str(p) for p in info.value.problems]


def write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(exist_ok=True)
    path = directory / name
    path.write_text(textwrap.dedent(text))
    return path


def test_no_policy_files_means_policies_off(tmp_path: Path) -> None:
    assert load_policies(tmp_path) is None
    assert load_policies(EXAMPLES) is None  # only *.example files there
    assert load_policies(tmp_path / "missing") is None


def test_examples_load(tmp_path: Path) -> None:
    policies = load_policies(copy_examples(tmp_path / "p"))
    assert policies is not None
    assert set(policies.consent.categories) == {"transactional", "marketing"}
    assert policies.consent.categories["marketing"].requires_consent
    assert [r.name for r in policies.consent.rules] == ["newsletter-domain", "bulk-mail"]
    static = policies.suppression.static
    assert static["guest@example.net"][0].reason is SuppressionReason.MANUAL
    assert static["@example.org"][0].scope == "all"
    assert static["newsletter-hater@example.com"][0].scope == "marketing"
    assert static["full-mailbox@example.com"][0].expires is not None
    assert [lim.name for lim in policies.rate_limits] == ["per-guest", "per-app-user",
                                                          "guest-shaping"]
    assert policies.rate_limits[2].action == "delay" and policies.rate_limits[2].at_data
    assert policies.rate_limits[0].interval == pytest.approx(3.0)


def test_errors_carry_file_line_column(tmp_path: Path) -> None:
    d = tmp_path / "p"
    write(d, "consent.yaml", """\
        default: transactional
        categories:
          transactional: {basis: contract}
          marketing: {basis: consentt}
        rules:
          - name: r1
            category: newsletter
            precedence_bulk: true
        surprise: 1
        """)
    write(d, "suppression.yaml", """\
        entries:
          - address: not-an-address
            reason: bounced
          - domain: example.org
            scope: promotions
            expires: next week
        """)
    write(d, "ratelimits.yaml", """\
        limits:
          - name: l1
            key: [recipient, planet]
            rate: fast
            burts: 3
        """)
    out = problems(d)
    c, s, r = str(d / "consent.yaml"), str(d / "suppression.yaml"), str(d / "ratelimits.yaml")
    assert any(p.startswith(f"{c}:4:22:") and "consentt" in p for p in out), out
    assert any(p.startswith(f"{c}:7:") and "unknown category 'newsletter'" in p for p in out)
    assert any(p.startswith(f"{c}:9:1:") and "unknown key 'surprise'" in p for p in out)
    assert any(p.startswith(f"{s}:2:") and "not-an-address" in p for p in out)
    assert any(p.startswith(f"{s}:3:") and "'bounced' is not one of" in p for p in out)
    assert any(p.startswith(f"{s}:5:") and "unknown category 'promotions'" in p for p in out)
    assert any(p.startswith(f"{s}:6:") and "not a date" in p for p in out)
    assert any(p.startswith(f"{r}:3:") and "unknown key 'planet'" in p for p in out)
    assert any(p.startswith(f"{r}:4:") and "not a rate" in p for p in out)
    assert any(p.startswith(f"{r}:5:") and "unknown key 'burts'" in p for p in out)


def test_yaml_syntax_error(tmp_path: Path) -> None:
    write(tmp_path, "ratelimits.yaml", "limits: [\n")
    (only,) = problems(tmp_path)
    assert only.startswith(f"{tmp_path / 'ratelimits.yaml'}:2:1: YAML syntax")


def test_unsubscribe_needs_a_long_enough_key(tmp_path: Path) -> None:
    write(tmp_path, "unsubscribe.key", "short\n")
    (tmp_path / "unsubscribe.key").chmod(0o600)
    write(tmp_path, "consent.yaml", """\
        unsubscribe:
          base_url: https://gw.example/unsubscribe
          secret_file: unsubscribe.key
        """)
    (only,) = problems(tmp_path)
    assert ":3:" in only and "at least 32" in only
    (tmp_path / "unsubscribe.key").write_text("k" * 40)
    (tmp_path / "unsubscribe.key").chmod(0o600)
    policies = load_policies(tmp_path)
    assert policies is not None and policies.consent.unsubscribe is not None


@pytest.mark.parametrize(("text", "interval"), [
    ("20/m", 3.0), ("5/s", 0.2), ("100/h", 36.0), ("1/d", 86400.0), ("3/10m", 200.0),
    ("0.5/s", 2.0),
])
def test_parse_rate(text: str, interval: float) -> None:
    assert parse_rate(text) == pytest.approx(interval)


@pytest.mark.parametrize("text", ["20", "/m", "0/m", "5/x", "-1/s", "5/0s"])
def test_parse_rate_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rate(text)


def test_policy_files_notices_edits(tmp_path: Path) -> None:
    files = PolicyFiles(tmp_path)
    assert not files.changed()
    write(tmp_path, "ratelimits.yaml", "limits: []\n")
    assert files.changed()
    assert not files.changed()


def test_rule_conditions_take_one_value_or_a_list(tmp_path: Path) -> None:
    write(tmp_path, "consent.yaml", """\
        rules:
          - name: one
            category: marketing
            sender_domain: News.Example.com
            sender: offers@example.com
          - name: many
            category: marketing
            sender_domain: [a.example, b.example]
        """)
    policies = load_policies(tmp_path)
    assert policies is not None
    one, many = policies.consent.rules
    assert one.sender_domains == {"news.example.com"}
    assert one.senders == {"offers@example.com"}
    assert many.sender_domains == {"a.example", "b.example"}
