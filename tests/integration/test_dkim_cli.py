"""`smtp-gateway dkim keygen | list | check` against a real DNS server.

keygen's printed record is pasted into the NSD zone as is; `check` must then
tell the right record from a missing one, a truncated one and an old key's.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.signing.keys import dns_record_value, generate_private_key, parse_private_key
from tests.fixtures.dkim import KeySet
from tests.fixtures.dns import TEST_ZONE, running_nsd

CONFIG = """\
    data_dir: ./var
    delivery:
      dns: {{nameservers: [127.0.0.1], port: {port}, timeout: 3s}}
    dkim:
      domains:
        example.com:
          - {{selector: right, active: true}}
          - {{selector: old}}
          - {{selector: cut}}
          - {{selector: gone}}
          - {{selector: ed, algorithm: ed25519}}
      domain_map:
        .example.com: example.com
    """


def write_config(directory: Path, dns_port: int) -> Path:
    path = directory / "config.yaml"
    path.write_text(textwrap.dedent(CONFIG.format(port=dns_port)))
    return path


def keygen(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "dkim", "keygen", "-c", str(config), *args],
        capture_output=True, text=True, timeout=60)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    return code, capsys.readouterr().out


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory
              ) -> tuple[Path, dict[str, str], list[str]]:
    """Keys made with the CLI; the zone lines to publish (right, old, cut, ed)."""
    config = write_config(tmp_path_factory.mktemp("cli"), 9)  # DNS port set once NSD runs
    records = {}
    for selector, algo in (("right", []), ("old", []), ("cut", []), ("gone", []),
                           ("ed", ["--algo", "ed25519"])):
        done = keygen(config, "--domain", "Example.com", "--selector", selector, *algo)
        assert done.returncode == 0, done.stderr
        records[selector] = done.stdout.strip()
    old = parse_private_key(generate_private_key("rsa"))  # the key "old" used to have
    cut = re.findall(r'"([^"]*)"', records["cut"])[0]  # only the first 255-octet string
    zone = [records["right"], records["ed"],
            f'old._domainkey.example.com. IN TXT "{dns_record_value(old)[:250]}" '
            f'"{dns_record_value(old)[250:]}"',
            f'cut._domainkey.example.com. IN TXT "{cut}"']
    return config, records, zone


def zones(lines: list[str]) -> dict[str, str | None]:
    keys = KeySet(Path("/nonexistent"))
    text = keys.zones()
    text["example.com."] = ("$ORIGIN example.com.\n$TTL 60\n@ IN SOA ns hostmaster 1 3600 600 "
                            "86400 60\n@ IN NS ns\nns IN A 127.0.0.1\n" + "\n".join(lines) + "\n")
    return text


def test_keygen_writes_0600_where_the_config_expects_it_and_prints_the_record(
        published: tuple[Path, dict[str, str], list[str]]) -> None:
    config, records, _ = published
    key_file = config.parent / "dkim" / "example.com.right.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert (config.parent / "dkim").stat().st_mode & 0o777 == 0o700
    assert records["right"].startswith('right._domainkey.example.com. 3600 IN TXT ( "v=DKIM1; '
                                       'k=rsa; p=MIIB')
    assert records["ed"].startswith('ed._domainkey.example.com. 3600 IN TXT ( "v=DKIM1; '
                                    'k=ed25519; p=')
    again = keygen(config, "--domain", "example.com", "--selector", "right")
    assert again.returncode == 1 and "exists" in again.stderr  # a live key is never replaced
    unconfigured = keygen(config, "--domain", "example.org", "--selector", "s1")
    assert "add it to" in unconfigured.stderr and "example.org:" in unconfigured.stderr
    assert (config.parent / "dkim" / "example.org.s1.key").exists()


def test_check_tells_right_wrong_truncated_and_missing_records(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        published: tuple[Path, dict[str, str], list[str]]) -> None:
    config, _, zone = published
    with running_nsd(tmp_path / "nsd", zones(zone)) as nsd:
        write_config(config.parent, nsd.port)
        code, out = run(capsys, "dkim", "check", "-c", str(config), "--domain", "example.com")
        assert code == 1
        status = {line.split()[1].split(".")[0]: line.split()[0]
                  for line in out.splitlines() if not line.startswith(" ")}
        assert status == {"right": "ok", "old": "mismatch", "cut": "truncated",
                          "gone": "missing", "ed": "ok"}
        assert "publish: old._domainkey.example.com. 3600 IN TXT" in out
        code, out = run(capsys, "dkim", "check", "-c", str(config), "--domain", "example.com",
                        "--selector", "right")
        assert code == 0
        assert out.startswith("ok              right._domainkey.example.com (rsa, active): "
                              "the record matches the private key")
        code, out = run(capsys, "dkim", "check", "-c", str(config), "--domain", "EXAMPLE.com",
                        "--selector", "ed", "--json")
        assert (code, json.loads(out)[0]["status"]) == (0, "ok")


def test_check_reports_a_dns_failure_as_such(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        published: tuple[Path, dict[str, str], list[str]]) -> None:
    config, _, _ = published
    # A zone NSD cannot load: SERVFAIL for every name in it.
    with running_nsd(tmp_path / "nsd", {"test.": TEST_ZONE, "example.com.": None}) as nsd:
        code, out = run(capsys, "dkim", "check", "-c", str(config), "--domain", "example.com",
                        "--selector", "right", "--nameserver", "127.0.0.1",
                        "--port", str(nsd.port))
    assert code == 1
    assert out == ("dns-error       right._domainkey.example.com (rsa, active): the DNS servers "
                   "failed to answer (SERVFAIL)\n")


def test_list_shows_domains_selectors_algorithms_and_the_active_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        published: tuple[Path, dict[str, str], list[str]]) -> None:
    config, _, _ = published
    code, out = run(capsys, "dkim", "list", "-c", str(config))
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "signing: on; fallback: unsigned; dual signing: off"
    assert lines[1] == "map: .example.com -> example.com"
    rows = [line.split()[:4] for line in lines[3:]]
    assert rows == [["example.com", "right", "rsa", "active"],
                    ["example.com", "old", "rsa", "inactive"],
                    ["example.com", "cut", "rsa", "inactive"],
                    ["example.com", "gone", "rsa", "inactive"],
                    ["example.com", "ed", "ed25519", "inactive"]]
    gone = config.parent / "dkim" / "example.com.gone.key"
    gone.rename(gone.with_suffix(".away"))
    try:
        code, out = run(capsys, "dkim", "list", "-c", str(config), "--json")
    finally:
        gone.with_suffix(".away").rename(gone)
    listing = json.loads(out)
    assert code == 1
    assert [k["state"].endswith("no such file") for k in listing["keys"]] == [
        False, False, False, True, False]
    assert "BEGIN" not in out
