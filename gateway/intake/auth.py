"""SMTP AUTH credential check (Postfix: smtpd_sasl_auth_enable with a passwd map).

The SMTP side — which mechanisms (PLAIN, LOGIN), and that AUTH is offered and
accepted only once TLS is up — lives in `smtpd.py`; this module only answers
"do these credentials name a configured user?".

Security: reads untrusted input (the login and password a client sends). The
scrypt check (~50 ms) runs in a worker thread so it never stalls other sessions,
and an unknown user costs the same scrypt work as a known one, so response time
does not reveal which user names exist.

Password guessing is slowed and then stopped by `AuthThrottle` (Postfix leaves
this to anvil(8) and fail2ban): failures are counted per client address and per
user name over a sliding window; each failure delays the answer a little more,
and past the limit the address (or the user name) is locked out for a while —
AUTH then gets 454 4.7.0 without any password being checked, so even the right
password does not get through until the lockout ends. One throttle is shared
by all sessions of a listener in one process: with `intake_workers` ≥ 2 each
worker process counts on its own, so an attacker spread over N workers gets up
to N times the attempts.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from gateway.intake.passwords import hash_password, verify_password

__all__ = ["AuthThrottle", "Authenticator", "ThrottleSettings", "verify_decoy"]


class Authenticator:
    """Checks logins against `Config.users` (user → scrypt hash)."""

    def __init__(self, users: Mapping[str, str]) -> None:
        self._users = dict(users)

    @property
    def has_users(self) -> bool:
        return bool(self._users)

    async def check(self, login: bytes, password: bytes) -> str | None:
        """The user name if the credentials are right, else None."""
        try:
            user = login.decode("utf-8")
            secret = password.decode("utf-8")
        except UnicodeDecodeError:
            return None
        stored = self._users.get(user)
        if stored is None:
            await asyncio.to_thread(verify_decoy, secret)
            return None
        ok = await asyncio.to_thread(verify_password, secret, stored)
        return user if ok else None

    def __repr__(self) -> str:
        return f"<Authenticator users={len(self._users)}>"


def verify_decoy(secret: str) -> bool:
    """An equal-cost check that always fails (for unknown users, and unknown API key ids)."""
    # Runs in the worker thread: the first call also makes the decoy hash there.
    return verify_password(secret, _decoy_hash())


@functools.cache
def _decoy_hash() -> str:
    """A hash no password matches, for equal-cost answers about unknown users."""
    return hash_password("not a password: unknown users are checked against this")


# -- brute-force throttle ------------------------------------------------------------------------


@dataclass(frozen=True)
class ThrottleSettings:
    per_address: int = 10  # failures from one client address within `window`...
    per_user: int = 5  # ...or for one user name, before the lockout
    window: float = 600.0  # seconds over which failures are counted
    lockout: float = 900.0  # seconds an address or user name stays locked out
    delay: float = 0.5  # seconds added to the answer for each recent failure...
    max_delay: float = 5.0  # ...up to this
    max_entries: int = 10_000  # addresses and user names tracked (oldest forgotten)


class _Counter:
    """Failure times per key, and lockouts; bounded in keys and in times per key."""

    def __init__(self, limit: int, settings: ThrottleSettings) -> None:
        self.limit = limit
        self.settings = settings
        self.failures: OrderedDict[str, deque[float]] = OrderedDict()
        self.locked_until: dict[str, float] = {}

    def locked(self, key: str, now: float) -> bool:
        until = self.locked_until.get(key)
        if until is None:
            return False
        if now < until:
            return True
        del self.locked_until[key]
        return False

    def recent(self, key: str, now: float) -> int:
        times = self.failures.get(key)
        if times is None:
            return 0
        while times and times[0] <= now - self.settings.window:
            times.popleft()
        return len(times)

    def fail(self, key: str, now: float) -> int:
        times = self.failures.pop(key, None) or deque(maxlen=self.limit)
        times.append(now)
        self.failures[key] = times  # most recent last: the oldest are forgotten first
        while len(self.failures) > self.settings.max_entries:
            self.failures.popitem(last=False)
        count = self.recent(key, now)
        if count >= self.limit:
            self.locked_until[key] = now + self.settings.lockout
            if len(self.locked_until) > self.settings.max_entries:
                self.locked_until = {k: u for k, u in self.locked_until.items() if u > now}
        return count

    def clear(self, key: str) -> None:
        self.failures.pop(key, None)


class AuthThrottle:
    """Counts failed logins per client address and per user name (see the module
    docstring). `now` is a monotonic clock: it bounds how fast a socket may guess,
    like the other intake timers, and is not a scheduling decision."""

    def __init__(self, settings: ThrottleSettings | None = None, *,
                 now: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings or ThrottleSettings()
        self._now = now
        self._addresses = _Counter(self.settings.per_address, self.settings)
        self._users = _Counter(self.settings.per_user, self.settings)

    def locked(self, address: str, user: str | None = None) -> bool:
        """True if AUTH from this address (or for this user name) is locked out."""
        now = self._now()
        return self._addresses.locked(address, now) or (
            user is not None and self._users.locked(user, now))

    def failed(self, address: str, user: str) -> float:
        """Record a failed login; returns how long to delay the answer (seconds)."""
        now = self._now()
        count = max(self._addresses.fail(address, now), self._users.fail(user, now))
        return min(self.settings.max_delay, self.settings.delay * count)

    def succeeded(self, user: str) -> None:
        # The address keeps its count: a valid account must not reset the guessing
        # budget an address has for other accounts.
        self._users.clear(user)

    def __repr__(self) -> str:
        now = self._now()
        locked = sum(u > now for c in (self._addresses, self._users)
                     for u in c.locked_until.values())
        return (f"<AuthThrottle addresses={len(self._addresses.failures)} "
                f"users={len(self._users.failures)} locked={locked}>")
