"""Per-connection and per-command costs of aiosmtpd 1.4.6 that we avoid (measured; see
BENCHMARKS.md).

1. `SMTP.__init__` reflects on every new session: `inspect.getmembers()` on the
   protocol and on the handler (only to find `auth_*` methods),
   `inspect.signature()` of the EHLO hook, and `dir()` of both (for the
   `smtp_*` and `handle_*` methods). The answers depend only on the classes, so
   `cache_reflection()` gives aiosmtpd.smtp — and nothing else — an `inspect`
   whose getmembers/signature, and a `dir`, that remember them per class.
2. `SMTP._getaddr()` defines a `typing.Protocol` class on every MAIL and RCPT
   (class creation is most of its cost); `parse_path()` is the same parse with
   the stdlib's RFC 5322 address parser, minus that, and for the usual
   `<local@domain>` a regex held to the parser's answers.

Together they were ~20% of a session's CPU in the relay benchmark; the `dir()`
calls and the stdlib address parse were another ~15% of an intake worker's
(issue 15), and 1.5% went to sanitizing each command line for debug and info
log calls that were then dropped (`cache_reflection()` also skips those).
"""

from __future__ import annotations

import inspect
import logging
import re
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


_names_by_class: dict[type, list[str]] = {}


def _class_dir(obj: object) -> list[str]:
    # aiosmtpd calls dir() on the protocol and the handler only to keep the names starting
    # with smtp_ or handle_, which are the class's methods: once per class, and only those.
    names = _names_by_class.get(type(obj))
    if names is None:
        names = [n for n in dir(type(obj)) if n.startswith(("smtp_", "handle_"))]
        _names_by_class[type(obj)] = names
    return names


def _sanitized_log_if_enabled(func: Callable[..., None], msg: str, *args: Any,
                              **kwargs: Any) -> None:
    # aiosmtpd sanitizes every command line for log.debug and log.info before the logger
    # can say it drops them (it does, below WARNING: smtpd._quiet_aiosmtpd).
    logger = getattr(func, "__self__", None)
    level = logging.getLevelName(getattr(func, "__name__", "").upper())
    if isinstance(logger, logging.Logger) and isinstance(level, int) \
            and not logger.isEnabledFor(level):
        return
    _sanitized_log(func, msg, *args, **kwargs)


_sanitized_log = aiosmtpd.smtp.sanitized_log


def cache_reflection() -> None:
    if not isinstance(getattr(aiosmtpd.smtp, "inspect", None), _ClassReflection):
        setattr(aiosmtpd.smtp, "inspect", _ClassReflection())  # noqa: B010 (a module global)
        setattr(aiosmtpd.smtp, "dir", _class_dir)  # noqa: B010 (shadows the builtin there only)
        setattr(aiosmtpd.smtp, "sanitized_log", _sanitized_log_if_enabled)  # noqa: B010


# `<dot-atom@dot-atom>` in ASCII, the form nearly every client sends: for it the stdlib
# parser's answer is the text between the brackets and what follows '>', so a regex gives
# the same answer for a fortieth of the cost (2.5 against 99 µs, measured). Anything else
# (quotes, comments, literals, UTF-8, no brackets) still goes through the stdlib parser.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_SIMPLE_PATH = re.compile(rf"<({_ATEXT}(?:\.{_ATEXT})*@{_ATEXT}(?:\.{_ATEXT})*)>")


def parse_path(arg: str, local_part_limit: int) -> tuple[str | None, str | None]:
    """A MAIL/RCPT argument → (address, rest), (None, None) when unparsable, ('', '') empty."""
    if not arg:
        return "", ""
    simple = _SIMPLE_PATH.match(arg)
    if simple is not None:
        # The stdlib parser also takes the blanks after '>' (and a comment, left to it).
        rest = arg[simple.end():].lstrip(" \t")
        if not rest.startswith("("):
            addr = simple.group(1)
            if local_part_limit and addr.rindex("@") > local_part_limit:
                return None, None
            return addr, rest
    return parse_with_stdlib(arg, local_part_limit)


def parse_with_stdlib(arg: str, local_part_limit: int) -> tuple[str | None, str | None]:
    """`parse_path` without its shortcut (the tests hold the two to the same answers)."""
    parse = get_angle_addr if arg.lstrip().startswith("<") else get_addr_spec
    try:
        address, rest = parse(arg)
        addr = str(address.addr_spec)
    except HeaderParseError:
        return None, None
    except Exception:  # CPython 3.11's parser also raises IndexError on "<" or '"', and
        return None, None  # AttributeError on others: unparsable all the same
    if local_part_limit and len(addr.rpartition("@")[0]) > local_part_limit:
        return None, None
    return addr, str(rest)
