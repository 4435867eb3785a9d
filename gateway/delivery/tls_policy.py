"""What TLS a destination asks for, and what happened: the contract between direct
delivery (deliver.py, smtp_client.py), MTA-STS (mta_sts.py, RFC 8461), DANE (dane.py,
RFC 7672) and TLS reporting (tlsrpt.py, RFC 8460).

Delivery asks an `StsSource` for the recipient domain's MTA-STS policy and the resolver
for each MX host's TLSA records, applies the stronger one (DANE wins over MTA-STS for a
host that has both, RFC 8461 section 2), and hands every TLS outcome to an
`OutcomeSink`, which feeds TLS reports, metrics and events.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class StsMode(StrEnum):
    ENFORCE = "enforce"
    TESTING = "testing"
    NONE = "none"


@dataclass(frozen=True)
class StsPolicy:
    """One parsed MTA-STS policy (RFC 8461 section 3.2)."""

    domain: str  # the policy domain (the recipient domain)
    id: str  # from the _mta-sts TXT record
    mode: StsMode
    mx: tuple[str, ...]  # patterns: "mail.example.com" or "*.example.net"
    max_age: int  # seconds
    fetched_at: float  # clock time of the fetch that produced it
    text: str  # the policy as served, for TLS reports' policy-string

    def matches(self, host: str) -> bool:
        """RFC 8461 section 4.1: exact name, or "*." matching exactly one leftmost label."""
        name = host.rstrip(".").lower()
        for pattern in self.mx:
            pattern = pattern.rstrip(".").lower()
            if pattern.startswith("*."):
                label, _, rest = name.partition(".")
                if label and rest == pattern[2:]:
                    return True
            elif name == pattern:
                return True
        return False


@dataclass(frozen=True)
class StsLookup:
    """What the MTA-STS source knows about a domain right now.

    `policy` is None when the domain publishes none (or mode none); `error` names a
    fetch failure in RFC 8460's result types ("sts-policy-fetch-error",
    "sts-policy-invalid", "sts-webpki-invalid") even when a cached policy is still used.
    """

    policy: StsPolicy | None
    error: str | None = None
    detail: str = ""  # what went wrong with the fetch, for logs and failure-reason-code


class StsSource(Protocol):
    async def lookup(self, domain: str) -> StsLookup: ...


class PolicyType(StrEnum):
    """RFC 8460 section 4.4 policy-type."""

    STS = "sts"
    TLSA = "tlsa"
    NONE = "no-policy-found"


@dataclass(frozen=True)
class TlsOutcome:
    """One TLS session attempt's result, for TLS reports, metrics and events.

    `result` is "success" or an RFC 8460 result-type ("starttls-not-supported",
    "certificate-host-mismatch", "certificate-expired", "certificate-not-trusted",
    "validation-failure", "tlsa-invalid", "dnssec-invalid", "dane-required",
    "sts-policy-fetch-error", "sts-policy-invalid", "sts-webpki-invalid").
    """

    policy_type: PolicyType
    policy_domain: str
    policy_strings: tuple[str, ...]  # STS: the policy's lines; TLSA: the records
    mx_host: str
    receiving_ip: str
    result: str
    detail: str = ""  # failure-reason-code / additional-information
    tls_version: str = ""
    cipher: str = ""

    @property
    def ok(self) -> bool:
        return self.result == "success"


class OutcomeSink(Protocol):
    def record(self, outcome: TlsOutcome) -> None: ...


class DiscardOutcomes:
    """The sink when TLS reporting is off: outcomes still count in metrics elsewhere."""

    def record(self, outcome: TlsOutcome) -> None:
        return None
