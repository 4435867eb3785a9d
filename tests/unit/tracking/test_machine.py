"""Machine opens and clicks, and IP truncation."""

from __future__ import annotations

import pytest

from gateway.tracking.machine import BurstDetector, Verdict, judge, truncate_ip

BROWSER = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 Version/17.1"


@pytest.mark.parametrize(("method", "agent", "verdict"), [
    ("GET", BROWSER, Verdict(False, "")),
    ("HEAD", BROWSER, Verdict(True, "head")),
    ("GET", None, Verdict(True, "no-user-agent")),
    ("GET", "Mozilla/5.0 (Windows NT 5.1) Firefox/11.0 (via ggpht.com GoogleImageProxy)",
     Verdict(True, "proxy:google")),
    ("GET", "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html",
     Verdict(True, "proxy:yahoo")),
    ("GET", "Mozilla/5.0 Mimecast URL Protect", Verdict(True, "scanner:security-gateway")),
    ("GET", "python-requests/2.31", Verdict(True, "scanner:http-library")),
    ("GET", "Mozilla/5.0 (compatible; Googlebot/2.1)", Verdict(True, "scanner:crawler")),
])
def test_judge(method: str, agent: str | None, verdict: Verdict) -> None:
    assert judge(method, agent) == verdict


def test_several_links_at_once_is_a_scanner_one_link_twice_is_not() -> None:
    bursts = BurstDetector(window=2.0, capacity=2)
    key = ("Q1", "a@example.net", "203.0.113.0/24")
    assert not bursts.click(key, "https://a", 100.0)
    assert not bursts.click(key, "https://a", 100.5)  # the same link again
    assert bursts.click(key, "https://b", 101.0)  # another link within the window
    assert not bursts.click(key, "https://c", 110.0)  # later: a person reading on
    bursts.click(("Q2", "b", "n"), "https://a", 1.0)
    bursts.click(("Q3", "c", "n"), "https://a", 1.0)
    assert len(bursts._seen) == 2  # bounded


@pytest.mark.parametrize(("address", "network"), [
    ("203.0.113.77", "203.0.113.0/24"),
    ("2001:db8:1:2::5", "2001:db8:1::/48"),
    ("::ffff:198.51.100.9", "198.51.100.0/24"),
    ("not an ip", ""),
    (None, ""),
])
def test_truncate_ip(address: str | None, network: str) -> None:
    assert truncate_ip(address) == network
