"""Was a tracking hit made by a person or by a machine? (no Postfix counterpart)

Machines fetch tracking URLs without anyone reading: mail providers' image proxies
prefetch every image when a message arrives (Apple Mail Privacy Protection, Gmail's
and Yahoo's proxies), and security gateways' link scanners follow every link
before the recipient sees it. Their hits are recorded, marked `machine=yes` with the
reason, and not counted as human opens or clicks (gateway.console's overview).

Signals, in order (the first that matches is the reason):
- `head`: a HEAD request (scanners check a link without reading it; browsers GET);
- `no-user-agent`: no User-Agent at all (mail clients and browsers always send one);
- `proxy:<name>` / `scanner:<name>`: a User-Agent that names a known image proxy or
  link scanner, or a generic HTTP library or crawler;
- `burst`: several different links of one message followed from one network within
  `scanner_window` seconds — a person clicks one link, a scanner all of them.

Also the client address is truncated before it is stored (IPv4 /24, IPv6 /48): enough
to tell a provider's network, not a household.

Security: reads untrusted request headers (User-Agent) — matched, never stored in full.
"""

from __future__ import annotations

import ipaddress
import re
from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["BurstDetector", "Verdict", "judge", "truncate_ip"]

# (kind, name, pattern); names are what the event's detail says.
_AGENTS: tuple[tuple[str, str, re.Pattern[str]], ...] = tuple(
    (kind, name, re.compile(pattern, re.I)) for kind, name, pattern in (
        ("proxy", "google", r"GoogleImageProxy|ggpht\.com"),
        ("proxy", "yahoo", r"YahooMailProxy"),
        ("proxy", "apple", r"AppleMailPrivacy|Apple-Mail-Proxy"),
        ("proxy", "microsoft", r"Microsoft Office Existence Discovery|ms-office.*preview"),
        ("scanner", "security-gateway",
         r"Barracuda|Mimecast|Proofpoint|SafeLinks|Symantec|Trend ?Micro|Sophos|FireEye"),
        ("scanner", "crawler", r"bot\b|spider|crawler|preview|HeadlessChrome|PhantomJS"),
        ("scanner", "http-library",
         r"^(curl|wget|python-requests|python-urllib|aiohttp|Go-http-client|Java/|okhttp"
         r"|libwww-perl|Apache-HttpClient)"),
    ))


@dataclass(frozen=True)
class Verdict:
    machine: bool
    reason: str  # "" for a person


HUMAN = Verdict(False, "")


def judge(method: str, user_agent: str | None) -> Verdict:
    """What the request alone says (the burst check needs history: BurstDetector)."""
    if method == "HEAD":
        return Verdict(True, "head")
    if not user_agent or not user_agent.strip():
        return Verdict(True, "no-user-agent")
    for kind, name, pattern in _AGENTS:
        if pattern.search(user_agent):
            return Verdict(True, f"{kind}:{name}")
    return HUMAN


class BurstDetector:
    """Remembers, per (message, recipient, network), when each link was first followed;
    bounded (least recently seen entries are forgotten)."""

    def __init__(self, window: float, capacity: int = 10_000) -> None:
        self.window = window
        self.capacity = capacity
        self._seen: OrderedDict[tuple[str, str, str], dict[str, float]] = OrderedDict()

    def click(self, key: tuple[str, str, str], url: str, now: float) -> bool:
        """True when another link of the same key was followed less than `window` ago."""
        links = self._seen.pop(key, {})
        burst = any(u != url and now - t < self.window for u, t in links.items())
        links.setdefault(url, now)
        self._seen[key] = links
        while len(self._seen) > self.capacity:
            self._seen.popitem(last=False)
        return burst


def truncate_ip(address: str | None) -> str:
    """203.0.113.7 → 203.0.113.0/24; 2001:db8:1:2::5 → 2001:db8:1::/48; junk → ''."""
    try:
        ip = ipaddress.ip_address((address or "").split("%")[0])
    except ValueError:
        return ""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))
