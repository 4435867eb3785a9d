"""Parsing MTA-STS's two texts strictly: the `_mta-sts` TXT record (RFC 8461 section 3.1)
and the policy file (section 3.2). Pure functions; gateway.delivery.mta_sts fetches.

- TXT: `v=STSv1` first, then `;`-separated fields of which `id=` (1-32 letters and
  digits) is required; extensions are skipped if well formed. Records that do not
  start with `v=STSv1` are not MTA-STS records; more than one that does means the
  domain has no usable record (section 3.1: "treat as if no record").
- Policy: lines `key: value` ending in CRLF or LF; `version: STSv1`, `mode`
  (enforce | testing | none), `max_age` (whole seconds, at most 31557600) and,
  unless mode is none, at least one `mx` (a host name, optionally with a `*.`
  leftmost label). Unknown keys are ignored (section 3.2); a key other than mx
  given twice, a missing one or a bad value make the whole policy invalid.

Security: both texts come from the network (DNS, HTTPS). Only the fields above are
kept; names are checked against the host name syntax before they are compared with
MX names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.delivery.tls_policy import StsMode

__all__ = ["MAX_AGE_LIMIT", "PolicyError", "PolicyText", "parse_policy", "sts_record_id"]

MAX_AGE_LIMIT = 31_557_600  # RFC 8461 section 3.2: about a year
_ID = re.compile(r"[A-Za-z0-9]{1,32}")
_EXT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
_EXT_VALUE = re.compile(r"[\x21-\x3a\x3c\x3e-\x7e]+")
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_MX = re.compile(rf"(\*\.)?{_LABEL}(\.{_LABEL})+\.?")
_MAX_AGE = re.compile(r"[0-9]{1,10}")


class PolicyError(ValueError):
    """The policy file is not a valid MTA-STS policy (RFC 8460: sts-policy-invalid)."""


@dataclass(frozen=True)
class PolicyText:
    mode: StsMode
    mx: tuple[str, ...]
    max_age: int
    lines: tuple[str, ...]  # the policy's lines as served (a TLS report's policy-string)


def sts_record_id(records: list[str]) -> str | None:
    """The policy id from a domain's TXT records (each given with its strings joined);
    None when there is no valid MTA-STS record, or more than one."""
    ours = [r for r in records if r.startswith("v=STSv1")]
    if len(ours) != 1:
        return None
    return _record_id(ours[0])


def _record_id(record: str) -> str | None:
    fields = [f.strip(" \t") for f in record.split(";")]
    if fields[-1] == "":
        fields.pop()  # an optional trailing ";"
    if not fields or fields[0] != "v=STSv1" or len(fields) < 2:
        return None
    found: str | None = None
    for field in fields[1:]:
        name, eq, value = field.partition("=")
        if not eq:
            return None
        if name == "id":
            if found is not None or not _ID.fullmatch(value):
                return None
            found = value
        elif not (_EXT_NAME.fullmatch(name) and _EXT_VALUE.fullmatch(value)):
            return None
    return found


def parse_policy(text: str) -> PolicyText:
    """The policy file's meaning, or PolicyError saying what is wrong."""
    lines = _lines(text)
    single: dict[str, str] = {}
    mx: list[str] = []
    for number, line in enumerate(lines, start=1):
        key, colon, value = line.partition(":")
        key, value = key.strip(" \t"), value.strip(" \t")
        if not colon or not _KEY.fullmatch(key):
            raise PolicyError(f"line {number} is not 'key: value': {line[:80]!r}")
        if key == "mx":
            if not _MX.fullmatch(value):
                raise PolicyError(f"line {number}: {value[:80]!r} is not an MX host pattern")
            mx.append(value.rstrip(".").lower())
        elif key in ("version", "mode", "max_age"):
            if key in single:
                raise PolicyError(f"line {number}: '{key}' is given twice")
            single[key] = value
        # Other keys: ignored, as section 3.2 asks (room for later versions).
    return _checked(single, tuple(mx), tuple(lines))


def _lines(text: str) -> list[str]:
    # CRLF or LF (section 3.2 allows both); a last line without its end is accepted,
    # blank lines are not part of the grammar but harmless, so they are skipped.
    return [line for line in text.replace("\r\n", "\n").split("\n") if line.strip(" \t")]


def _checked(single: dict[str, str], mx: tuple[str, ...], lines: tuple[str, ...]
             ) -> PolicyText:
    for key in ("version", "mode", "max_age"):
        if key not in single:
            raise PolicyError(f"no '{key}' field")
    if single["version"] != "STSv1":
        raise PolicyError(f"version {single['version'][:20]!r} is not STSv1")
    try:
        mode = StsMode(single["mode"])
    except ValueError:
        raise PolicyError(f"mode {single['mode'][:20]!r} is not enforce, testing or none"
                          ) from None
    if not _MAX_AGE.fullmatch(single["max_age"]):
        raise PolicyError(f"max_age {single['max_age'][:20]!r} is not a number of seconds")
    max_age = int(single["max_age"])
    if max_age > MAX_AGE_LIMIT:
        raise PolicyError(f"max_age {max_age} is more than {MAX_AGE_LIMIT} (a year)")
    if mode is not StsMode.NONE and not mx:
        raise PolicyError(f"mode {mode.value} without any 'mx' field")
    return PolicyText(mode, mx, max_age, lines)
