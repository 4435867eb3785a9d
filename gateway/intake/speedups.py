"""Two per-connection costs of aiosmtpd 1.4.6 that we avoid (measured; see BENCHMARKS.md).

1. `SMTP.__init__` reflects on every new session: `inspect.getmembers()` on the
   protocol and on the handler (only to find `auth_*` methods) and
   `inspect.signature()` of the EHLO hook. The answers depend only on the
   classes, so `cache_reflection()` gives aiosmtpd.smtp — and nothing else — an
   `inspect` whose getmembers/signature remember them per class.
2. `SMTP._getaddr()` defines a `typing.Protocol` class on every MAIL and RCPT
   (class creation is most of its cost); `parse_path()` is the same parse with
   the stdlib's RFC 5322 address parser, minus that.

Together they were ~20% of a session's CPU in the relay benchmark.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from email._header_value_parser import get_addr_spec, get_angle_addr
from email.errors import HeaderParseError
from typing import Any

import aiosmtpd.smtp

__all__ = ["cache_reflection", "parse_path"]


class _ClassReflection:
    """Stands in for the `inspect` module inside aiosmtpd.smtp only."""

    def __init__(self) -> None:
        self._auth_names: dict[type, tuple[str, ...]] = {}
        self._signatures: dict[Callable[..., Any], inspect.Signature] = {}

    def getmembers(self, obj: object) -> list[tuple[str, Any]]:
        # aiosmtpd keeps only the members named auth_*; which exist is a property of the class.
        names = self._auth_names.get(type(obj))
        if names is None:
            names = tuple(n for n, _ in inspect.getmembers(obj) if n.startswith("auth_"))
            self._auth_names[type(obj)] = names
        return [(name, getattr(obj, name)) for name in names]

    def signature(self, fn: Callable[..., Any]) -> inspect.Signature:
        key = getattr(fn, "__func__", fn)
        sig = self._signatures.get(key)
        if sig is None:
            sig = self._signatures[key] = inspect.signature(fn)
        return sig

    def __getattr__(self, name: str) -> Any:
        return getattr(inspect, name)


def cache_reflection() -> None:
    if not isinstance(getattr(aiosmtpd.smtp, "inspect", None), _ClassReflection):
        setattr(aiosmtpd.smtp, "inspect", _ClassReflection())  # noqa: B010 (a module global)


def parse_path(arg: str, local_part_limit: int) -> tuple[str | None, str | None]:
    """A MAIL/RCPT argument → (address, rest), (None, None) when unparsable, ('', '') empty."""
    if not arg:
        return "", ""
    parse = get_angle_addr if arg.lstrip().startswith("<") else get_addr_spec
    try:
        address, rest = parse(arg)
    except HeaderParseError:
        return None, None
    addr = str(address.addr_spec)
    if local_part_limit and len(addr.rpartition("@")[0]) > local_part_limit:
        return None, None
    return addr, str(rest)
