"""The `tracking:` section: off without it, every mistake reported with its place."""

from __future__ import annotations

from pathlib import Path

from gateway.config import load_config
from tests.unit.test_config import problems, write


def test_off_without_the_section(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "hostname: a.example\n")).tracking is None


def test_a_valid_section(tmp_path: Path) -> None:
    key = tmp_path / "t.key"
    key.write_bytes(bytes(range(40)))
    key.chmod(0o600)
    config = load_config(write(tmp_path, "tracking:\n  url: https://t.example.com/\n"
                                         "  key_file: t.key\n  port: 0\n"))
    assert config.tracking is not None
    assert (config.tracking.url, config.tracking.address) == ("https://t.example.com",
                                                              "127.0.0.1")
    assert config.tracking.key == bytes(range(40))
    assert "key=b" not in repr(config.tracking)  # the secret never shows in a repr


def test_mistakes_are_reported_with_their_place(tmp_path: Path) -> None:
    key = tmp_path / "short.key"
    key.write_bytes(b"x" * 8)
    key.chmod(0o644)
    found = problems(tmp_path, "tracking:\n  url: ftp://t.example.com\n  address: 0.0.0.0\n"
                               "  key_file: short.key\n")
    text = "\n".join(found)
    assert ":2:" in text and "must be an http(s) URL" in text
    assert "needs TLS" in text
    assert "chmod 600" in text
    key.chmod(0o600)
    assert "at least 32 bytes" in "\n".join(problems(tmp_path, "tracking:\n  url: https://t."
                                                     "example.com\n  key_file: short.key\n"))
    missing = "\n".join(problems(tmp_path, "tracking:\n  url: https://t.example.com\n"))
    assert "'tracking.key_file' is required" in missing


def test_an_address_that_is_not_an_ip_address_is_refused_at_its_place(tmp_path: Path) -> None:
    key = tmp_path / "t.key"
    key.write_bytes(bytes(range(40)))
    key.chmod(0o600)
    found = "\n".join(problems(tmp_path, "tracking:\n  url: https://t.example.com\n"
                                         "  address: tracker.example\n  key_file: t.key\n"))
    assert ":3:" in found and "'tracking.address': 'tracker.example' is not an IP address" \
        in found
