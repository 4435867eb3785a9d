"""Idempotent submission: an app that resends because a 250 got lost in a
timeout gets that 250 again — with the original queue id — instead of a second
delivery.

The key is the `Idempotency-Key:` header field if the message has one (the
app says what a resend is), else its Message-ID together with the envelope
sender and recipients (a Message-ID the client wrote; a message without one
gets ours and is never a duplicate). It counts per client: the authenticated user, else the
client's IP address, so two apps cannot collide on each other's ids. Keys are
remembered for `idempotency.window` (24 h by default) in the state store,
shared by every intake process.

At DATA, before the policy checks (a resend must not spend rate tokens again):

- first submission: the key is claimed with a queue id reserved for it; the
  message is stored under that id, then the claim is marked stored (or
  released if storing failed, so the client's retry is taken);
- a resend: `250 2.0.0 Ok: queued as <original id>` and a `duplicate` event;
- the same message arriving while the first is still being stored (two
  sessions racing): wait a moment for it; then the same 250, or 451 4.3.0 if
  it is still not stored, so the client tries again later.

If the state store cannot be reached (locked by another process, unreadable,
or the shared PostgreSQL database away), the answer is 451 4.3.0: fail
closed, as the suppression check does, rather than queue without the check.
Why, with the keys on PostgreSQL for N nodes: a 451 loses nothing — the app
keeps the message and its SMTP library retries, as after any 4xx, and the
retry is taken once the database answers — while a message queued without
the check may be a second booking confirmation or payment receipt, which
cannot be taken back and which the app cannot tell apart from the first.
The price is availability: with the database away a node accepts no message
that has a key. With policy files that changes nothing (the suppression
check at RCPT already answers 451 then); without them, an operator who
prefers availability over exactly-once sets `idempotency: {enabled: false}`.

Security: reads untrusted header values; a key is only compared, never
interpreted, and capped at MAX_KEY octets (UTF-8; a NUL, which PostgreSQL
text cannot hold, becomes U+FFFD).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass

from gateway.clock import Clock
from gateway.core.headers import HeaderSection
from gateway.intake import replies
from gateway.intake.settings import IdempotencyConfig
from gateway.model import Envelope, Event, EventType, QueueId, Reply
from gateway.state.store import STATE_ERRORS, EventStore, IdempotencyStore

__all__ = ["IdempotencyGuard", "Ticket", "settle_claims"]

log = logging.getLogger(__name__)

MAX_KEY = 998  # a header line's length: longer keys are cut
STALE_AFTER = 600.0  # a claim not stored after this long was abandoned by a dead process
RACE_WAIT = 5.0  # seconds a racing resend waits for the first copy to be stored
_RACE_POLL = 0.02

IN_PROGRESS = Reply(451, "4.3.0", "The same message is being queued right now, try again later")


@dataclass(frozen=True)
class Ticket:
    """A won claim: store the message under `queue_id`, then call stored() or release()."""

    scope: str
    key: str
    queue_id: QueueId


class IdempotencyGuard:
    def __init__(self, store: IdempotencyStore, events: EventStore, config: IdempotencyConfig,
                 clock: Clock) -> None:
        self._store = store
        self._events = events
        self.config = config
        self._clock = clock

    def __repr__(self) -> str:
        return f"<IdempotencyGuard window={self.config.window:.0f}s header={self.config.header}>"

    def key_of(self, envelope: Envelope, content: bytes, message_id: str | None,
               header: HeaderSection | None = None) -> tuple[str, str] | None:
        """(scope, key) for this submission, or None when it has no key. `header`:
        the content's header block, when the caller has parsed it."""
        section = HeaderSection.parse(content) if header is None else header
        value = section.get(self.config.header.lower())
        if value:
            key = "key:" + value
        elif message_id:
            # With the envelope: apps that send one message to each recipient in turn
            # may reuse its Message-ID, and those are not resends.
            digest = hashlib.sha256("\0".join(
                (envelope.mail_from, *sorted(envelope.recipients))).encode()).hexdigest()
            key = f"mid:{digest[:32]}:{message_id}"
        else:
            return None
        client = envelope.client
        scope = f"user:{client.auth_user}" if client.auth_user else f"ip:{client.address}"
        return scope, _capped(key.replace("\0", "\ufffd"))

    async def check(self, envelope: Envelope, content: bytes, message_id: str | None,
                    queue_id: QueueId, header: HeaderSection | None = None
                    ) -> Ticket | Reply | None:
        """A Ticket (first submission, to be stored under `queue_id`), the reply for a
        resend, or None (no key: nothing to check)."""
        found = self.key_of(envelope, content, message_id, header)
        if found is None:
            return None
        scope, key = found
        try:
            claim = await self._store.claim(scope, key, queue_id, self._clock.now(),
                                            self.config.window, STALE_AFTER)
            deadline = asyncio.get_running_loop().time() + RACE_WAIT
            while not claim.won and not claim.stored:
                if asyncio.get_running_loop().time() > deadline:
                    log.warning("%s: a resend came while the first copy is still being "
                                "stored (%s %s): 451", claim.queue_id, scope, key)
                    return IN_PROGRESS
                await asyncio.sleep(_RACE_POLL)  # the other session's fsync, not a schedule
                current = await self._store.lookup(scope, key, self._clock.now())
                if current is None:  # the first attempt failed and let go: ours now
                    claim = await self._store.claim(scope, key, queue_id, self._clock.now(),
                                                    self.config.window, STALE_AFTER)
                else:
                    claim = current
        except STATE_ERRORS as exc:
            log.error("idempotency check failed, state store %s unavailable (%s): "
                      "answering 451", self._store.where, exc)
            return replies.STATE_UNAVAILABLE
        if claim.won:
            return Ticket(scope, key, queue_id)
        self._record_duplicate(envelope, claim.queue_id, scope, key, message_id)
        log.info("%s: duplicate from %s (%s) answered with the original queue id",
                 claim.queue_id, scope, key)
        return Reply(250, "2.0.0", f"Ok: queued as {claim.queue_id}")

    async def stored(self, ticket: Ticket) -> None:
        try:
            await self._store.stored(ticket.scope, ticket.key, ticket.queue_id)
        except STATE_ERRORS as exc:
            # The message is queued and answered 250; a resend within STALE_AFTER gets
            # 451, after that it could be queued twice: the safe side of a lost write.
            log.error("%s: cannot mark the idempotency key stored (%s)", ticket.queue_id, exc)

    async def release(self, ticket: Ticket) -> None:
        try:
            await self._store.release(ticket.scope, ticket.key, ticket.queue_id)
        except STATE_ERRORS as exc:
            log.error("%s: cannot release the idempotency key (%s); a resend waits %.0fs",
                      ticket.queue_id, exc, STALE_AFTER)

    def _record_duplicate(self, envelope: Envelope, queue_id: QueueId, scope: str, key: str,
                          message_id: str | None) -> None:
        now = self._clock.now()
        self._events.record([
            Event(time=now, queue_id=queue_id, type=EventType.DUPLICATE, recipient=rcpt,
                  message_id=message_id, detail=f"scope={scope} {key.split(':', 1)[0]}")
            for rcpt in envelope.recipients])


async def settle_claims(store: IdempotencyStore, in_spool: set[QueueId], now: float, *,
                        release_others: bool) -> tuple[int, int]:
    """At start, before intake: claims left pending by a process killed between
    spool.put() and stored(). One whose message is in the spool was stored (its reply
    may have been lost, so the client's resend must get its id, not a second copy):
    marked stored. The others never reached the spool; with `release_others` (this
    node's own SQLite file, so every claimer is dead) they are let go at once, so the
    client's retry is taken now instead of after STALE_AFTER. Returns (stored, released).
    """
    stored, released = await store.settle(in_spool, now, release_others=release_others)
    if stored or released:
        log.warning("idempotency claims left by a stopped process: %d stored (in the "
                    "spool), %d released", stored, released)
    return stored, released


def _capped(key: str) -> str:
    """At most MAX_KEY octets of UTF-8, cut between characters (an index entry of the
    shared database has a size limit)."""
    raw = key.encode()
    return key if len(raw) <= MAX_KEY else raw[:MAX_KEY].decode(errors="ignore")

