"""SMTP AUTH credential check (Postfix: smtpd_sasl_auth_enable with a passwd map).

The SMTP side — which mechanisms (PLAIN, LOGIN), and that AUTH is offered and
accepted only once TLS is up — lives in `smtpd.py`; this module only answers
"do these credentials name a configured user?".

Security: reads untrusted input (the login and password a client sends). The
scrypt check (~50 ms) runs in a worker thread so it never stalls other sessions,
and an unknown user costs the same scrypt work as a known one, so response time
does not reveal which user names exist.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping

from gateway.passwords import hash_password, verify_password

__all__ = ["Authenticator"]


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
            await asyncio.to_thread(_verify_decoy, secret)
            return None
        ok = await asyncio.to_thread(verify_password, secret, stored)
        return user if ok else None

    def __repr__(self) -> str:
        return f"<Authenticator users={len(self._users)}>"


def _verify_decoy(secret: str) -> bool:
    # Runs in the worker thread: the first call also makes the decoy hash there.
    return verify_password(secret, _decoy_hash())


@functools.cache
def _decoy_hash() -> str:
    """A hash no password matches, for equal-cost answers about unknown users."""
    return hash_password("not a password: unknown users are checked against this")
