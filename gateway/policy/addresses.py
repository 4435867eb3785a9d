"""How policy compares addresses: the one rule suppression, consent and rate limits share.

- The domain is compared case-insensitively (RFC 5321 2.4), after IDNA
  lower-casing of what the client sent (no DNS, no punycode conversion).
- The local part is compared case-insensitively too. RFC 5321 lets a server
  treat `Guest` and `guest` as different mailboxes, but no mainstream provider
  does, and for a suppression list the safe error is to suppress both.
- `+tags` (`guest+booking@example.net`) are kept by default, so they are
  different addresses; with `plus_tags: strip` in suppression.yaml the tag is
  removed before comparing, so suppressing `guest@` covers every `guest+x@`.
- Quoted local parts are compared as written (quotes included), lower-cased.

Security: reads untrusted input (addresses from SMTP clients and CSV files);
only string operations, no parsing beyond the last '@'.
"""

from __future__ import annotations

from functools import lru_cache

__all__ = ["domain_of", "normalize_address", "normalize_domain_name", "normalize_target"]


def normalize_address(address: str, *, strip_plus_tags: bool = False) -> str:
    """The comparison form of an address: lower-cased, optionally without its +tag."""
    return _normalized(address, strip_plus_tags)


# Several checks ask for the same few addresses of a transaction (suppression at
# RCPT and DATA, rate-limit keys, consent); bounded, so a client sending many
# distinct addresses only churns it.
@lru_cache(maxsize=4096)
def _normalized(address: str, strip_plus_tags: bool) -> str:
    local, at, domain = address.strip().rpartition("@")
    if not at:
        return address.strip().lower()
    local = local.lower()
    if strip_plus_tags and not local.startswith('"'):
        local = local.split("+", 1)[0] or local
    return f"{local}@{normalize_domain_name(domain)}"


def normalize_domain_name(domain: str) -> str:
    return domain.strip().rstrip(".").lower()


def domain_of(address: str) -> str:
    """The normalized domain of an address ("" for the null sender)."""
    return normalize_domain_name(address.rpartition("@")[2]) if "@" in address else ""


def normalize_target(text: str, strip: bool) -> str:
    """A suppression target as the CLI and the admin API take it: an address or `@domain`."""
    if text.startswith("@"):
        domain = normalize_domain_name(text[1:])
        if not domain or "@" in domain:
            raise ValueError(f"'{text}' is not @domain")
        return "@" + domain
    if "@" not in text:
        raise ValueError(f"'{text}' is neither an address nor @domain")
    return normalize_address(text, strip_plus_tags=strip)
