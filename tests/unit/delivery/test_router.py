"""Route matching (first match wins, exact or .parent domains) and batch splitting."""

from __future__ import annotations

from gateway.delivery.router import DEFAULT_ROUTE, Router, domain_of
from gateway.model import Client, Envelope, QueuedMessage, Route, RouteMatch, Smarthost

SH = (Smarthost("p", "127.0.0.1"),)
NEWS = Route("news", "smarthost", RouteMatch(sender_domains=("news.example.com",)), SH)
PARTNERS = Route("partners", "mx", RouteMatch(recipient_domains=(".partner.test", "exact.test")))
BOTH = Route("both", "smarthost",
             RouteMatch(recipient_domains=("b.test",), sender_domains=(".corp.test",)), SH)
DEFAULT = Route("default", "mx")
ROUTER = Router((NEWS, PARTNERS, BOTH, DEFAULT))


def message(sender: str) -> QueuedMessage:
    env = Envelope(sender, (), Client("relay", "127.0.0.1"), 0.0)
    return QueuedMessage("Q1", env, 100)


def test_domain_of() -> None:
    assert domain_of("User@Example.COM") == "example.com"
    assert domain_of("a@b@c.test") == "c.test"
    assert domain_of("") == ""
    assert domain_of("postmaster") == ""


def test_sender_domain_match() -> None:
    assert ROUTER.route_for("a@news.example.com", "x@anywhere.test") is NEWS
    assert ROUTER.route_for("a@NEWS.Example.com", "x@anywhere.test") is NEWS
    assert ROUTER.route_for("a@sub.news.example.com", "x@anywhere.test") is DEFAULT


def test_leading_dot_matches_subdomains_only() -> None:
    assert ROUTER.route_for("a@x.test", "u@mail.partner.test") is PARTNERS
    assert ROUTER.route_for("a@x.test", "u@a.b.PARTNER.test") is PARTNERS
    assert ROUTER.route_for("a@x.test", "u@partner.test") is DEFAULT
    assert ROUTER.route_for("a@x.test", "u@notpartner.test") is DEFAULT
    assert ROUTER.route_for("a@x.test", "u@exact.test") is PARTNERS
    assert ROUTER.route_for("a@x.test", "u@sub.exact.test") is DEFAULT


def test_sender_and_recipient_must_both_match() -> None:
    assert ROUTER.route_for("a@hq.corp.test", "u@b.test") is BOTH
    assert ROUTER.route_for("a@corp.test", "u@b.test") is DEFAULT
    assert ROUTER.route_for("a@hq.corp.test", "u@c.test") is DEFAULT


def test_null_sender_only_matches_routes_without_sender_domains() -> None:
    assert ROUTER.route_for("", "u@b.test") is DEFAULT
    assert ROUTER.route_for("", "u@exact.test") is PARTNERS


def test_first_match_wins() -> None:
    router = Router((DEFAULT, NEWS))
    assert router.route_for("a@news.example.com", "x@y.test") is DEFAULT


def test_no_match_falls_back_to_direct_mx() -> None:
    assert Router((NEWS,)).route_for("a@x.test", "u@y.test") is DEFAULT_ROUTE


def test_split_mx_route_by_domain_in_first_seen_order() -> None:
    rcpts = ["a@one.test", "b@two.test", "c@ONE.test", "d@exact.test"]
    batches = ROUTER.split(message("s@x.test"), rcpts)
    assert batches == [
        (DEFAULT, "one.test", ("a@one.test", "c@ONE.test")),
        (DEFAULT, "two.test", ("b@two.test",)),
        (PARTNERS, "exact.test", ("d@exact.test",)),
    ]


def test_split_smarthost_route_into_one_batch() -> None:
    rcpts = ["a@one.test", "b@two.test", "c@three.test"]
    batches = ROUTER.split(message("s@news.example.com"), rcpts)
    assert batches == [(NEWS, "one.test", ("a@one.test", "b@two.test", "c@three.test"))]


def test_split_mixed_routes() -> None:
    rcpts = ["a@b.test", "x@y.test", "c@b.test"]
    batches = ROUTER.split(message("s@hq.corp.test"), rcpts)
    assert batches == [
        (BOTH, "b.test", ("a@b.test", "c@b.test")),
        (DEFAULT, "y.test", ("x@y.test",)),
    ]
