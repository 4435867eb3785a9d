"""Exceptions named for what the caller must do.

    GatewayError
     ├── ConfigError        refuse to start / refuse the reload (carries file:line)
     ├── DeliveryError      raised inside delivery, mapped at the module boundary
     │    ├── TempFail      try again later (4xx, timeouts, SERVFAIL, refused connection)
     │    └── PermFail      give up on these recipients now (5xx, NXDOMAIN, null MX)
     ├── SpoolError         the spool cannot take the message (disk full, I/O error)
     └── StateUnavailable   the shared state backend cannot answer now: 451 4.3.0

aiosmtplib, dnspython and OSError exceptions never leave the module that calls
those libraries: they are translated into TempFail / PermFail there.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ConfigError",
    "ConfigProblem",
    "DeliveryError",
    "GatewayError",
    "PermFail",
    "SpoolError",
    "StateUnavailable",
    "TempFail",
]


class GatewayError(Exception):
    """Base class of every error the gateway raises on purpose."""


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong in a configuration file, at a place a human can open."""

    file: str
    line: int  # 1-based; 0 when the problem is about the file as a whole
    column: int  # 1-based; 0 when unknown
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line:
            where += f":{self.line}"
            if self.column:
                where += f":{self.column}"
        return f"{where}: {self.message}"


class ConfigError(GatewayError):
    """The configuration cannot be used. `problems` lists every error found."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class DeliveryError(GatewayError):
    """A delivery step failed; `code`/`enhanced`/`text` describe why, SMTP-style."""

    def __init__(self, code: int, enhanced: str, text: str) -> None:
        self.code = code
        self.enhanced = enhanced
        self.text = text
        super().__init__(f"{code} {enhanced} {text}")


class TempFail(DeliveryError):
    """Retry later: the failure may go away by itself."""


class PermFail(DeliveryError):
    """Do not retry: the failure is about the address or the message."""


class SpoolError(GatewayError):
    """The spool could not store the message; intake answers 4xx (452 4.3.1 if disk_full)."""

    def __init__(self, message: str, *, disk_full: bool = False) -> None:
        self.disk_full = disk_full
        super().__init__(message)


class StateUnavailable(GatewayError):
    """The state backend (PostgreSQL, Redis) cannot answer now. A policy that needs the
    answer fails closed — 451 4.3.0, the client retries — unless configured to fail open."""
