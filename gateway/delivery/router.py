"""Which route carries a recipient, and the batches one message splits into.

Postfix counterpart: trivial-rewrite's transport lookup (`transport_maps`,
`sender_dependent_relayhost_maps`) and qmgr's grouping of a message's
recipients by next hop. Routes are tried in order and the first whose
`match` accepts (sender domain, recipient domain) wins; a domain in a match
is exact, or with a leading dot (".example.com") any subdomain of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gateway.model import QueuedMessage, Route, RouteMatch

__all__ = ["DEFAULT_ROUTE", "Router", "domain_of"]

# What a router without a catch-all uses; load_config() insists on one, so
# this only serves hand-built routers (like Postfix's default_transport).
DEFAULT_ROUTE = Route(name="default", kind="mx")


def domain_of(address: str) -> str:
    """The domain of an address, lower-cased; "" for the null sender or a bare local part."""
    _, at, domain = address.rpartition("@")
    return domain.lower() if at else ""


@dataclass(frozen=True)
class _DomainSet:
    """RouteMatch domains prepared for lookups: exact names and ".parent" suffixes."""

    exact: frozenset[str]
    suffixes: tuple[str, ...]

    @classmethod
    def of(cls, domains: tuple[str, ...]) -> _DomainSet | None:
        if not domains:
            return None  # matches everything
        lowered = [d.lower().rstrip(".") for d in domains]
        return cls(frozenset(d for d in lowered if not d.startswith(".")),
                   tuple(d for d in lowered if d.startswith(".")))

    def contains(self, domain: str) -> bool:
        return domain in self.exact or domain.endswith(self.suffixes)


def _matcher(match: RouteMatch) -> tuple[_DomainSet | None, _DomainSet | None]:
    return _DomainSet.of(match.sender_domains), _DomainSet.of(match.recipient_domains)


class Router:
    def __init__(self, routes: tuple[Route, ...]) -> None:
        self.routes = routes
        self._matchers = [(_matcher(r.match), r) for r in routes]

    def route_for(self, sender: str, recipient: str) -> Route:
        """The first route matching both domains (case-insensitive)."""
        sender_domain, recipient_domain = domain_of(sender), domain_of(recipient)
        for (senders, recipients), route in self._matchers:
            if senders is not None and not senders.contains(sender_domain):
                continue
            if recipients is not None and not recipients.contains(recipient_domain):
                continue
            return route
        return DEFAULT_ROUTE

    def split(
        self, message: QueuedMessage, recipients: Sequence[str]
    ) -> list[tuple[Route, str, tuple[str, ...]]]:
        """Group recipients into (route, destination domain, recipients) batches.

        An mx route gets one batch per recipient domain (each is its own MX
        lookup); a smarthost route one batch for all its recipients, named
        after the first one's domain. Batches and recipients keep the order
        in which recipients first appear.
        """
        sender = message.envelope.mail_from
        batches: dict[tuple[str, str], tuple[Route, str, list[str]]] = {}
        for recipient in recipients:
            route = self.route_for(sender, recipient)
            domain = domain_of(recipient)
            key = (route.name, domain if route.kind == "mx" else "")
            batch = batches.get(key)
            if batch is None:
                batches[key] = (route, domain, [recipient])
            else:
                batch[2].append(recipient)
        return [(route, domain, tuple(rcpts)) for route, domain, rcpts in batches.values()]

    def __repr__(self) -> str:
        return f"<Router {[r.name for r in self.routes]}>"
