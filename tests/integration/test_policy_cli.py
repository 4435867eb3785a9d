"""`smtp-gateway suppress|consent|check-config` against a real state.db: CSV round trip,
audit rows, and policy-file errors at file:line:col."""

from __future__ import annotations

import asyncio
import csv
import io
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import load_config
from gateway.state.store import StateStore
from tests.fixtures.gateway import write_config
from tests.fixtures.policy import write_policy


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def audit_actions(config: Path) -> list[tuple[str, str]]:
    async def read() -> list[tuple[str, str]]:
        state = StateStore(load_config(config).state_path)
        await state.open()
        try:
            return [(e.actor, e.action) for e in await state.audit.entries()]
        finally:
            await state.close()
    return asyncio.run(read())


def test_suppress_add_list_remove_audited(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    config = str(write_config(tmp_path, 1))
    assert run(capsys, "suppress", "add", "Guest@Example.NET", "-c", config, "--reason",
               "unsubscribe", "--scope", "marketing", "--by", "alice")[0] == 0
    assert run(capsys, "suppress", "add", "@spam.example", "-c", config, "--ttl", "7d")[0] == 0
    code, out, _ = run(capsys, "suppress", "list", "-c", config)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("@spam.example\tall\tmanual\tby=cli:") and "expires=" in lines[0]
    assert lines[1].startswith("guest@example.net\tmarketing\tunsubscribe\tby=alice")
    code, out, _ = run(capsys, "suppress", "remove", "guest@example.net", "-c", config,
                       "--by", "bob")
    assert code == 0 and "removed 1 entry" in out
    assert audit_actions(Path(config))[:2] == [("bob", "suppress.remove"),
                                               (audit_actions(Path(config))[1][0],
                                                "suppress.add")]
    assert ("alice", "suppress.add") in audit_actions(Path(config))
    code, _, err = run(capsys, "suppress", "add", "x@example.net", "-c", config,
                       "--scope", "promotions")
    assert code == 1 and "unknown scope 'promotions'" in err


def test_suppress_csv_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = str(write_config(tmp_path, 1))
    source = tmp_path / "in.csv"
    source.write_text(
        "target,scope,reason,created,added_by,expires,note\n"
        "a@example.net,all,hard_bounce,2026-01-02T03:04:05+00:00,bounces,,\"550, no user\"\n"
        "@example.org,marketing,complaint,,,2027-01-01,\n"
        "B@Example.NET,all,soft_bounce,,,2027-01-01T00:00:00,\n")
    code, out, _ = run(capsys, "suppress", "import", str(source), "-c", config)
    assert (code, out.strip()) == (0, "imported 3 suppression entries")
    exported = tmp_path / "out.csv"
    assert run(capsys, "suppress", "export", "-c", config, "-o", str(exported))[0] == 0
    rows = list(csv.DictReader(io.StringIO(exported.read_text())))
    assert [(r["target"], r["scope"], r["reason"]) for r in rows] == [
        ("@example.org", "marketing", "complaint"), ("a@example.net", "all", "hard_bounce"),
        ("b@example.net", "all", "soft_bounce")]
    assert rows[1]["created"] == "2026-01-02T03:04:05+00:00"
    assert rows[1]["note"] == "550, no user"
    # The export imports into a fresh store unchanged.
    other = tmp_path / "other"
    other.mkdir()
    config2 = str(write_config(other, 1))
    assert run(capsys, "suppress", "import", str(exported), "-c", config2)[0] == 0
    again = other / "again.csv"
    assert run(capsys, "suppress", "export", "-c", config2, "-o", str(again))[0] == 0
    assert again.read_text() == exported.read_text()


def test_suppress_import_refuses_a_bad_row_entirely(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    config = str(write_config(tmp_path, 1))
    source = tmp_path / "in.csv"
    source.write_text("target,reason\na@example.net,manual\nb@example.net,angry\n")
    code, _, err = run(capsys, "suppress", "import", str(source), "-c", config)
    assert code == 1 and "line 3:" in err and "angry" in err
    assert run(capsys, "suppress", "list", "-c", config)[1] == ""


def test_consent_grant_withdraw_show_import(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    config = str(write_config(tmp_path, 1))
    assert run(capsys, "consent", "grant", "g@example.net", "--category", "marketing",
               "--source", "booking form", "--purpose", "tracking", "-c", config)[0] == 0
    assert run(capsys, "consent", "withdraw", "G@example.net", "--category", "marketing",
               "-c", config)[0] == 0
    code, out, _ = run(capsys, "consent", "show", "g@example.net", "-c", config)
    assert code == 0
    assert "\tmarketing\tgranted\texplicit\tbooking form\ttracking\n" in out
    assert "\tmarketing\twithdrawn\texplicit\t\n" in out
    assert out.strip().endswith("current: marketing withdrawn")
    source = tmp_path / "consent.csv"
    source.write_text("address,category,status,time,method,source\n"
                      "g@example.net,marketing,granted,2099-01-01,imported,crm\n")
    assert run(capsys, "consent", "import", str(source), "-c", config)[0] == 0
    out = run(capsys, "consent", "show", "g@example.net", "-c", config)[1]
    assert out.strip().endswith("current: marketing granted")
    code, _, err = run(capsys, "consent", "grant", "g@example.net", "--category", "news",
                       "-c", config)
    assert code == 1 and "unknown category 'news'" in err
    actions = [a for _, a in audit_actions(Path(config))]
    assert actions.count("consent.grant") == 2 and actions.count("consent.withdraw") == 1


def test_check_config_reports_policy_errors(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    config = str(write_config(tmp_path, 1))
    code, out, _ = run(capsys, "check-config", "-c", config)
    assert code == 0 and "no policy files (policies off)" in out
    path = write_policy(tmp_path, "ratelimits.yaml", "limits:\n  - name: x\n    rate: 3/q\n")
    code, _, err = run(capsys, "check-config", "-c", config)
    assert code == 1
    assert f"{path}:2:5: limit 'x' needs a 'key' list" in err
    assert f"{path}:3:11: '3/q' is not a rate" in err.replace("'rate': ", "")
