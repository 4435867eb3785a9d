"""Whether a hit may be recorded: the recipient's current consent for the category
includes tracking — remembered for a few seconds (no Postfix counterpart).

The listener asks at every hit, not only when the mail was sent, so a withdrawal
stops the recording of later hits. Asking the database each time cost about a
fifth of a hit's CPU (one indexed read through the state database's thread), and
hits come in runs — a pixel and its links, proxies fetching again — so answers
are kept for TTL seconds, for at most CAPACITY (recipient, category) pairs.

How soon a change is seen:
- made in this process (the admin API's consent and erasure endpoints, the
  unsubscribe endpoint: all in the master, where the listener runs): at once —
  the store's `generation` moves and every kept answer goes
  (gateway.state.consent);
- made elsewhere (the CLI, another node of a PostgreSQL cluster): within TTL.
An answer the database could not give (unavailable) is "no" and not kept.
"""

from __future__ import annotations

from gateway.clock import Clock
from gateway.state.store import STATE_ERRORS, ConsentStore
from gateway.tracking.tracker import TRACKING_PURPOSE

__all__ = ["CAPACITY", "TTL", "ConsentCache"]

TTL = 5.0  # seconds an answer is kept (a change made in another process waits this long)
CAPACITY = 50_000  # pairs kept; when full, all are dropped (cheaper than tracking age)


class ConsentCache:
    def __init__(self, consent: ConsentStore, clock: Clock, ttl: float = TTL,
                 capacity: int = CAPACITY) -> None:
        self._consent = consent
        self._clock = clock
        self._ttl = ttl
        self._capacity = capacity
        self._answers: dict[tuple[str, str], tuple[bool, float]] = {}  # → (allowed, until)
        self._generation = consent.generation

    async def allows(self, recipient: str, category: str) -> bool:
        """True when the recipient's latest record for the category is a grant that
        includes tracking."""
        generation = self._consent.generation
        if generation != self._generation:
            self._answers.clear()
            self._generation = generation
        key = (recipient, category)
        now = self._clock.now()
        kept = self._answers.get(key)
        if kept is not None and kept[1] > now:
            return kept[0]
        try:
            record = (await self._consent.current((recipient,), category)).get(recipient)
        except STATE_ERRORS:
            return False  # cannot tell now: the safe side is not to record
        allowed = (record is not None and record.granted
                   and TRACKING_PURPOSE in record.purposes)
        # Kept only if nothing changed while we read: else the next hit reads again.
        if self._consent.generation == generation:
            if len(self._answers) >= self._capacity:
                self._answers.clear()
            self._answers[key] = (allowed, now + self._ttl)
        return allowed

    def __repr__(self) -> str:
        return f"<ConsentCache {len(self._answers)} answers, ttl={self._ttl:g}s>"
