"""Queue ids: time-sortable, fixed-width, safe as file names.

10 Crockford base-32 digits of the arrival time in milliseconds, then 8 of
randomness (40 bits), e.g. `01JD5Q8W3K7H2M9XQ4RT`. `ls` shows queue files in
arrival order, and the id alone says when a message came in.
"""

from __future__ import annotations

import re
import secrets

__all__ = ["arrival_time", "is_queue_id", "new_queue_id"]

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_TIME_DIGITS = 10
_RANDOM_DIGITS = 8
_PATTERN = re.compile(f"^[{_ALPHABET}]{{{_TIME_DIGITS + _RANDOM_DIGITS}}}$")


def new_queue_id(now: float) -> str:
    return _encode(int(now * 1000), _TIME_DIGITS) + _encode(
        secrets.randbits(5 * _RANDOM_DIGITS), _RANDOM_DIGITS
    )


def is_queue_id(text: str) -> bool:
    return bool(_PATTERN.match(text))


def arrival_time(queue_id: str) -> float:
    value = 0
    for ch in queue_id[:_TIME_DIGITS]:
        value = value * 32 + _ALPHABET.index(ch)
    return value / 1000.0


def _encode(value: int, digits: int) -> str:
    out = []
    for _ in range(digits):
        value, rem = divmod(value, 32)
        out.append(_ALPHABET[rem])
    return "".join(reversed(out))
