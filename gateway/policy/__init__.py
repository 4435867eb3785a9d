"""The policy stage between intake and spool: suppression, consent, rate limits
(Postfix counterpart: smtpd_recipient_restrictions with access(5) maps, and anvil(8)).

A policy is a class with one async `check()` returning a Verdict; a
PolicyChain runs policies in order and the first non-accept wins (Haraka's
CONT/DENYSOFT/DENY). Two chains run per message: at RCPT, per recipient
(suppression of all mail, rate limits), and at DATA, per recipient again now
that the message's category is known (scoped suppression, consent, limits
keyed by category). gateway.policy.stage wires both to the state store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from gateway.model import Client, Reply

__all__ = [
    "ACCEPT",
    "MessageRecipient",
    "Policy",
    "PolicyChain",
    "RcptRequest",
    "Verdict",
]

R = TypeVar("R", contravariant=True)
T = TypeVar("T")


@dataclass(frozen=True)
class Verdict:
    action: str  # accept | tempfail | reject
    reply: Reply | None = None
    rule: str = ""  # the rule that decided, e.g. "suppression:unsubscribe", "limit:per-guest"

    @property
    def accepted(self) -> bool:
        return self.action == "accept"

    @staticmethod
    def tempfail(text: str, rule: str) -> Verdict:
        return Verdict("tempfail", Reply(451, "4.7.1", text), rule)

    @staticmethod
    def reject(text: str, rule: str) -> Verdict:
        return Verdict("reject", Reply(550, "5.7.1", text), rule)


ACCEPT = Verdict("accept")


@dataclass(frozen=True)
class RcptRequest:
    """One RCPT as the policies see it."""

    client: Client
    mail_from: str
    recipient: str
    now: float


@dataclass(frozen=True)
class MessageRecipient:
    """One recipient of a message at DATA, with the message's category."""

    client: Client
    mail_from: str
    recipient: str
    category: str
    now: float


class Policy(Protocol[R]):
    name: str

    async def check(self, request: R) -> Verdict: ...


class PolicyChain(Generic[T]):
    """Policies in order; the first verdict that is not accept is the answer.

    `together=True` runs every policy at once and then takes the first non-accept
    in order: the same answer, but their state-store questions share one round
    trip (gateway.state.db batches them). The price: a policy after the deciding
    one has run too — at RCPT, a refused recipient still takes its rate tokens.
    """

    def __init__(self, policies: Sequence[Policy[T]], *, together: bool = False) -> None:
        self.policies = tuple(policies)
        self.together = together and len(self.policies) > 1

    async def check(self, request: T) -> Verdict:
        if self.together:
            verdicts = await asyncio.gather(*(p.check(request) for p in self.policies))
            return next((v for v in verdicts if not v.accepted), ACCEPT)
        for policy in self.policies:
            verdict = await policy.check(request)
            if not verdict.accepted:
                return verdict
        return ACCEPT

    def __bool__(self) -> bool:
        return bool(self.policies)

    def __repr__(self) -> str:
        return f"<PolicyChain {' → '.join(p.name for p in self.policies) or 'empty'}>"
