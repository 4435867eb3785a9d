"""smtpd helpers: reading the envelope path as the client wrote it."""

from __future__ import annotations

import ipaddress

import pytest

from gateway.intake.addresses import envelope_path
from gateway.intake.smtpd import _in_networks


@pytest.mark.parametrize(
    ("argument", "keyword", "path"),
    [
        ("FROM:<a@example.com>", "FROM:", "a@example.com"),
        ("from:<a@example.com> SIZE=100 BODY=8BITMIME", "FROM:", "a@example.com"),
        ("FROM: <a@example.com>", "FROM:", "a@example.com"),
        ("FROM:<>", "FROM:", ""),
        ("FROM:a@example.com", "FROM:", "a@example.com"),
        ('TO:<"odd > local"@example.com>', "TO:", '"odd > local"@example.com'),
        ('TO:<"esc\\"aped"@example.com>', "TO:", '"esc\\"aped"@example.com'),
        ("TO:<@relay.example,@other.example:user@example.com>", "TO:", "user@example.com"),
        ("TO:<a b@example.com>", "TO:", "a b@example.com"),  # kept, so the check refuses it
        ("TO:<unterminated@example.com", "TO:", None),
        ("FROM:<a@example.com>", "TO:", None),
    ],
)
def test_envelope_path(argument: str, keyword: str, path: str | None) -> None:
    assert envelope_path(argument, keyword) == path


def test_networks_match_ipv4_mapped_addresses() -> None:
    nets = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8::/32"))
    assert _in_networks("10.1.2.3", nets)
    assert _in_networks("::ffff:10.1.2.3", nets)
    assert _in_networks("2001:db8::1", nets)
    assert not _in_networks("127.0.0.1", nets)
    assert not _in_networks("", nets)
