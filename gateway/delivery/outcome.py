"""What one server's replies mean for each recipient, and for the server.

Postfix counterpart: `smtp/smtp_trouble.c`. Pure functions: they turn the
replies of one transaction into recipients that are done with this attempt
(delivered, bounced, or deferred by a per-recipient 4xx) and recipients to
try at the next host, and say whether the host itself failed (what the
circuit breaker records).

The rules:
- a 5xx is about the recipient (or the message), never the host: it is final
  and the host counts as working;
- a 4xx to MAIL or to the final "." or DATA, or a 4xx to every RCPT, moves
  every recipient not yet final on to the next host;
- the circuit breaker counts the host as failed for a 4xx to MAIL, DATA or the
  final ".", or a 421 (service closing) to RCPT — never for other 4xx to RCPT,
  which are about mailboxes (full, greylisted, rate-limited per address).
  Otherwise three deferring mailboxes in a row would open a smarthost's
  breaker and stop the route for everyone (found by the soak, BENCHMARKS.md);
- when some RCPTs were accepted and the message went through, the other
  RCPTs' 4xx stand as those recipients' deferrals.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gateway.delivery.smtp_client import TransactionReplies
from gateway.model import RecipientResult, Reply

__all__ = ["HostOutcome", "classify", "host_failed"]


@dataclass(frozen=True)
class HostOutcome:
    """One host's part in an attempt.

    `done` recipients have their result for this attempt; `retry` ones should
    go to the next host, with the reply to report if no other host takes them.
    """

    host_ok: bool
    done: tuple[RecipientResult, ...]
    retry: tuple[RecipientResult, ...]


def host_failed(recipients: Iterable[str], reply: Reply) -> HostOutcome:
    """The host could not be used at all (no connection, refused session)."""
    return HostOutcome(False, (), tuple(RecipientResult(r, reply) for r in recipients))


def classify(recipients: tuple[str, ...], replies: TransactionReplies) -> HostOutcome:
    """Sort `recipients` by what `replies` (one transaction, same order) say about them."""
    if not replies.mail.is_success:
        return _all_same(recipients, replies.mail)
    pairs = [RecipientResult(r, reply) for r, reply in zip(recipients, replies.rcpt, strict=True)]
    bounced = tuple(p for p in pairs if p.reply.is_permanent)
    deferred = tuple(p for p in pairs if p.reply.is_transient)
    accepted = [p for p in pairs if p.reply.is_success]
    if not accepted:
        # 5xx: the server works and said no. 4xx for all: try the next host, but the
        # server itself failed only if it is closing (421).
        closing = any(p.reply.code == 421 for p in deferred)
        return HostOutcome(not closing, bounced, deferred)
    end = replies.final if replies.final is not None else replies.data
    if end is None or end.code == 354:
        # Not reachable from SmtpConnection.send(); never call a message delivered unsaid.
        end = Reply(451, "4.4.2", "no reply to the message content")
    results = tuple(RecipientResult(p.recipient, end) for p in accepted)
    if end.is_transient:
        return HostOutcome(False, bounced, results + deferred)
    return HostOutcome(True, bounced + results + deferred, ())


def _all_same(recipients: tuple[str, ...], reply: Reply) -> HostOutcome:
    """A reply to MAIL (or a refusal before it) applies to every recipient."""
    results = tuple(RecipientResult(r, reply) for r in recipients)
    if reply.is_permanent:
        return HostOutcome(True, results, ())
    return HostOutcome(False, (), results)
