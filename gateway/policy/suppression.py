"""Suppressed recipients → 550 5.7.1 (at RCPT for scope `all`, at DATA for a category).

Entries come from suppression.yaml (an in-memory dict, no query) and from the
state store (one indexed query on (target, scope) per check, whatever the
table's size). A recipient matches an entry for its address or for "@domain".
The entries found at RCPT (every scope) are remembered for a few seconds, so
the DATA check of the same recipient costs no second query; an entry added
in between those moments applies from the next message.

Security: the recipient address is untrusted; it is only normalized and used
as a bound query parameter. The reply names the reason class only — never the
note, who added the entry, or when.
"""

from __future__ import annotations

from gateway.model import Suppression
from gateway.policy import ACCEPT, MessageRecipient, RcptRequest, Verdict
from gateway.policy.addresses import domain_of, normalize_address
from gateway.policy.rules_file import SuppressionSettings
from gateway.state.store import SuppressionStore

__all__ = ["ScopedSuppressionPolicy", "SuppressionLookup", "SuppressionPolicy",
           "suppressed_reply_text"]

REMEMBER = 10.0  # seconds an RCPT lookup serves the same recipient's DATA check
_REMEMBER_MAX = 10_000  # entries; past this the memory starts over


def suppressed_reply_text(entry: Suppression) -> str:
    scope = "" if entry.scope == "all" else f" for {entry.scope} mail"
    return f"Recipient address is suppressed{scope} ({entry.reason.value})"


class SuppressionLookup:
    """Static and stored entries for a recipient, every scope."""

    def __init__(self, settings: SuppressionSettings, store: SuppressionStore) -> None:
        self._settings = settings
        self._store = store
        self._recent: dict[str, tuple[float, list[Suppression]]] = {}

    async def entries(self, recipient: str, now: float, *, reuse: bool = False
                      ) -> list[Suppression]:
        address = normalize_address(recipient, strip_plus_tags=self._settings.strip_plus_tags)
        if reuse:
            # Read, not taken: sessions sending to the same guest at once each reuse
            # it (taking it made every DATA but one query again; measured, BENCHMARKS.md).
            recent = self._recent.get(address)
            if recent is not None and 0 <= now - recent[0] < REMEMBER:
                return recent[1]
        targets = (address, "@" + domain_of(address))
        static = self._settings.static
        found = [e for t in targets for e in static.get(t, ())
                 if e.expires is None or e.expires > now]
        found.extend(await self._store.lookup(targets, now))
        if not reuse:
            if len(self._recent) >= _REMEMBER_MAX:
                self._recent.clear()
            self._recent[address] = (now, found)
        return found


class SuppressionPolicy:
    """RCPT: entries of scope `all`."""

    name = "suppression"

    def __init__(self, lookup: SuppressionLookup) -> None:
        self._lookup = lookup

    async def check(self, request: RcptRequest) -> Verdict:
        for entry in await self._lookup.entries(request.recipient, request.now):
            if entry.scope == "all":
                return Verdict.reject(suppressed_reply_text(entry),
                                      f"suppression:{entry.reason.value}")
        return ACCEPT


class ScopedSuppressionPolicy:
    """DATA: entries whose scope is the message's category."""

    name = "suppression-scope"

    def __init__(self, lookup: SuppressionLookup) -> None:
        self._lookup = lookup

    async def check(self, request: MessageRecipient) -> Verdict:
        for entry in await self._lookup.entries(request.recipient, request.now, reuse=True):
            if entry.scope == request.category:
                return Verdict.reject(suppressed_reply_text(entry),
                                      f"suppression:{entry.reason.value}:{entry.scope}")
        return ACCEPT
