from __future__ import annotations

import pytest

from gateway.policy.addresses import domain_of, normalize_address


@pytest.mark.parametrize(("raw", "strip", "expected"), [
    ("Guest@Example.NET", False, "guest@example.net"),
    ("guest+booking@example.net", False, "guest+booking@example.net"),
    ("guest+booking@example.net", True, "guest@example.net"),
    ("+only@example.net", True, "+only@example.net"),
    ('"a+b"@example.net', True, '"a+b"@example.net'),
    ("guest@example.net.", False, "guest@example.net"),
])
def test_normalize(raw: str, strip: bool, expected: str) -> None:
    assert normalize_address(raw, strip_plus_tags=strip) == expected


def test_domain_of() -> None:
    assert domain_of("a@B.example") == "b.example"
    assert domain_of("") == ""
