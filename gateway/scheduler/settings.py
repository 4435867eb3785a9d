"""The `priorities:` section of config.yaml: the scheduler's settings.

Priorities: the policy stage decides a message's category at DATA
(policies/consent.yaml); this map turns it into one of four priorities, which
intake writes into the queue file. The scheduler (gateway.scheduler.lanes)
serves higher priorities first and limits what each may take:

- `share`: the part of every concurrency limit a priority may hold at once —
  delivery.max_concurrency, delivery.max_active and each destination's
  connections. Low mail at 60% leaves 40% of every limit free for the rest,
  so a critical message never waits for a newsletter's sessions to end.
- `rate`: optionally, at most this many deliveries per second are started for
  the priority (a token bucket on the injected clock); none by default.

Kept apart from gateway.config, which calls the parsers; errors carry
file:line:column like every other section.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.core.yamlnodes import Section
from gateway.model import Priority

__all__ = [
    "DEFAULT_CATEGORY_PRIORITIES",
    "DEFAULT_LANES",
    "Lane",
    "PriorityConfig",
    "parse_priorities",
]

# Booking and payment confirmations must arrive in seconds; a newsletter can wait.
# Anything not named (e.g. the policies' default `transactional`) is `default`.
DEFAULT_CATEGORY_PRIORITIES: dict[str, Priority] = {
    "booking": Priority.CRITICAL,
    "payment": Priority.CRITICAL,
    "waitlist": Priority.HIGH,
    "cancellation": Priority.HIGH,
    "marketing": Priority.LOW,
    "feedback": Priority.LOW,
}


@dataclass(frozen=True)
class Lane:
    """What one priority may use of the delivery limits."""

    share: float  # 0 < share <= 1: the part of each concurrency limit it may hold
    rate: float | None = None  # deliveries started per second; None: unlimited

    def cap(self, limit: int) -> int:
        """This lane's part of `limit`, never below one (a lane is never shut out)."""
        return max(1, int(limit * self.share))


DEFAULT_LANES: dict[Priority, Lane] = {
    Priority.CRITICAL: Lane(1.0),
    Priority.HIGH: Lane(0.9),
    Priority.NORMAL: Lane(0.8),
    Priority.LOW: Lane(0.6),
}


@dataclass(frozen=True)
class PriorityConfig:
    categories: dict[str, Priority] = field(
        default_factory=lambda: dict(DEFAULT_CATEGORY_PRIORITIES))
    default: Priority = Priority.NORMAL
    lanes: dict[Priority, Lane] = field(default_factory=lambda: dict(DEFAULT_LANES))

    def of(self, category: str | None) -> Priority:
        if category is None:
            return self.default
        return self.categories.get(category, self.default)


_PRIORITY_NAMES = tuple(p.label for p in Priority)


def parse_priorities(sec: Section) -> PriorityConfig:
    d = PriorityConfig()
    default = Priority.parse(sec.get_str("default", d.default.label, _PRIORITY_NAMES))
    categories = dict(d.categories)
    if sec.has("categories"):
        categories = {name: Priority.parse(text) for name, text, node in sec.mapping("categories")
                      if _valid_priority(sec, node, text)}
    lanes = dict(d.lanes)
    lanes_sec = sec.section("lanes")
    for name in lanes_sec.keys():  # noqa: SIM118 (Section is not a dict)
        if name not in _PRIORITY_NAMES:
            lanes_sec.value_node(name)  # reported here, not again as an unknown key
            lanes_sec.error(name, f"unknown priority '{name}'"
                                  f" (one of {', '.join(_PRIORITY_NAMES)})")
            continue
        priority = Priority.parse(name)
        lanes[priority] = _lane(lanes_sec.section(name), lanes[priority])
    lanes_sec.done()
    sec.done()
    return PriorityConfig(categories, default, lanes)


def _valid_priority(sec: Section, node: object, text: str) -> bool:
    if text in _PRIORITY_NAMES:
        return True
    sec.problems.add(sec.file, node,  # type: ignore[arg-type]
                     f"'{text}' is not a priority (one of {', '.join(_PRIORITY_NAMES)})")
    return False


def _lane(sec: Section, inherit: Lane) -> Lane:
    share = sec._get("share", inherit.share, _share, "a share such as 60% or 0.6")
    rate = inherit.rate
    if sec.has("rate"):
        text = sec.opt_str("rate")
        rate = None
        if text is not None:
            rate = sec._get("rate", 0.0, _per_second, "a rate such as 200/s")
    sec.done()
    return Lane(share, rate or None)


def _share(raw: object) -> float:
    text = str(raw).strip()
    value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    if not 0 < value <= 1:
        raise ValueError(f"{text} must be more than 0 and at most 100%")
    return value


def _per_second(raw: object) -> float:
    # Imported here: gateway.policy imports the state store, which config must not pull in.
    from gateway.policy.rules_file import parse_rate

    return 1.0 / parse_rate(str(raw))
