"""MX host ordering: by preference, equal preferences shuffled by the injected random.Random."""

from __future__ import annotations

import random

from gateway.delivery.mx import MxHost, order_hosts

A, B, C = MxHost("a.test", 10), MxHost("b.test", 10), MxHost("c.test", 10)
LOW, HIGH = MxHost("low.test", 5), MxHost("backup.test", 50)


def test_lower_preference_first() -> None:
    rng = random.Random(0)
    assert order_hosts([HIGH, LOW], rng) == (LOW, HIGH)
    assert order_hosts([HIGH, A, LOW], rng)[0] == LOW
    assert order_hosts([HIGH, A, LOW], rng)[-1] == HIGH


def test_equal_preferences_are_shuffled_within_their_group_only() -> None:
    orders = {order_hosts([HIGH, A, B, C, LOW], random.Random(seed)) for seed in range(50)}
    assert all(o[0] == LOW and o[-1] == HIGH for o in orders)
    middles = {o[1:4] for o in orders}
    assert len(middles) == 6  # every permutation of the three equal hosts shows up
    assert all(set(m) == {A, B, C} for m in middles)


def test_same_seed_same_order() -> None:
    first = [order_hosts([A, B, C], r) for r in [random.Random(42)] for _ in range(10)]
    second = [order_hosts([A, B, C], r) for r in [random.Random(42)] for _ in range(10)]
    assert first == second


def test_single_host() -> None:
    assert order_hosts([A], random.Random()) == (A,)
