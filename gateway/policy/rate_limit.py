"""Rate limits (GCRA) → 451 4.7.1; the app's SMTP library retries later (Postfix anvil).

Each RCPT takes one token from every limit whose key it has (so rates count
recipients). Limits keyed by category, or limited to some categories
(`categories: [marketing]`), are checked at DATA, when the category is known;
a refusal there is a 451 for the whole message. Counters live in the
state store, shared by every intake process and kept across restarts.

`delay` limits never refuse: at DATA, DelayShaper takes a token for each
kept recipient whatever the wait, and the message's first delivery attempt is
held until the latest of those times (Envelope.not_before; the scheduler files
it in deferred/ until then). So the outbound rate holds — at most 20 a minute
to one guest — while the app sees a 250.

Security: key values come from the client (addresses, IP); they are
normalized and used only as a bound query parameter.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.policy import ACCEPT, MessageRecipient, RcptRequest, Verdict
from gateway.policy.addresses import domain_of, normalize_address
from gateway.policy.rules_file import RateLimit
from gateway.state.store import RateCounters

__all__ = ["DelayShaper", "RateLimitPolicy", "limit_key"]


# How each key kind reads its value from a request: only the kinds a limit names
# are computed (normalizing addresses is most of a key's cost).
_KEY_VALUES: dict[str, Callable[[RcptRequest | MessageRecipient], str | None]] = {
    "auth_user": lambda r: r.client.auth_user,
    "client_ip": lambda r: r.client.address,
    "sender": lambda r: normalize_address(r.mail_from),
    "sender_domain": lambda r: domain_of(r.mail_from),
    "recipient": lambda r: normalize_address(r.recipient),
    "recipient_domain": lambda r: domain_of(r.recipient),
    "category": lambda r: getattr(r, "category", None),
}


def limit_key(limit: RateLimit, request: RcptRequest | MessageRecipient) -> str | None:
    """The counter key for this request, or None when the limit does not apply
    (keyed by auth_user but the client did not authenticate)."""
    parts = [limit.name]
    for key in limit.keys:
        value = _KEY_VALUES[key](request)
        if value is None:
            return None
        parts.append(f"{key}={value}")
    return "\x1f".join(parts)


class RateLimitPolicy:
    name = "rate-limit"

    def __init__(self, limits: tuple[RateLimit, ...], counters: RateCounters) -> None:
        self._limits = limits
        self._counters = counters

    async def check(self, request: RcptRequest | MessageRecipient) -> Verdict:
        category = getattr(request, "category", None)
        applying: list[tuple[RateLimit, str]] = []
        for limit in self._limits:
            if limit.action != "tempfail":
                continue  # `delay` limits shape delivery (DelayShaper), they never refuse
            if limit.categories and category not in limit.categories:
                continue
            key = limit_key(limit, request)
            if key is not None:
                applying.append((limit, key))
        # Every limit takes its token (one round trip for all); the first refusal answers.
        results = await self._counters.acquire_many(
            [(key, limit.interval, limit.burst) for limit, key in applying], request.now)
        for (limit, _), (allowed, _) in zip(applying, results, strict=True):
            if not allowed:
                return Verdict.tempfail(f"Rate limit '{limit.name}' exceeded, try again later",
                                        f"limit:{limit.name}")
        return ACCEPT


class DelayShaper:
    """DATA, after the refusing checks: when may each kept recipient's copy go out?"""

    def __init__(self, limits: tuple[RateLimit, ...], counters: RateCounters) -> None:
        self._limits = tuple(lim for lim in limits if lim.action == "delay")
        self._counters = counters

    def __bool__(self) -> bool:
        return bool(self._limits)

    async def not_before(self, request: MessageRecipient) -> tuple[float, str] | None:
        """(earliest send time, rule) if a limit holds this recipient back, else None."""
        latest: tuple[float, str] | None = None
        for limit in self._limits:
            if limit.categories and request.category not in limit.categories:
                continue
            key = limit_key(limit, request)
            if key is None:
                continue
            when = await self._counters.reserve(key, limit.interval, limit.burst, request.now)
            if when > request.now and (latest is None or when > latest[0]):
                latest = (when, f"limit:{limit.name}")
        return latest
