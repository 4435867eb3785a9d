"""policies/bounces.yaml → BounceRules: what a hard bounce, a complaint and soft bounces do.

Read by gateway.policy.rules_file with the other policy files (same
`file:line:col` errors, same hot reload). Without the file no bounce leads to
a suppression: bounces are still parsed and recorded as events.

    hard:      {action: suppress}                   # permanently, reason hard_bounce
    complaint: {action: suppress, scope: marketing} # or scope: all
    soft:      {action: suppress, count: 3, window: 7d, suppress_for: 7d}
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.core.yamlnodes import Section

__all__ = ["BounceRules", "parse_bounce_rules"]

_ACTIONS = ("suppress", "ignore")


@dataclass(frozen=True)
class BounceRules:
    hard_suppress: bool = True
    complaint_suppress: bool = True
    complaint_scope: str = "marketing"  # "all" or a category
    soft_suppress: bool = True
    soft_count: int = 3  # soft bounces of one address …
    soft_window: float = 7 * 86400.0  # … within this many seconds …
    soft_suppress_for: float = 7 * 86400.0  # … suppress it for this long


def parse_bounce_rules(root: Section, categories: tuple[str, ...]) -> BounceRules:
    d = BounceRules()
    hard = root.section("hard")
    hard_on = hard.get_str("action", "suppress", _ACTIONS) == "suppress"
    hard.done()
    complaint = root.section("complaint")
    complaint_on = complaint.get_str("action", "suppress", _ACTIONS) == "suppress"
    scope = complaint.get_str("scope", d.complaint_scope)
    if scope != "all" and scope not in categories:
        complaint.error("scope", f"unknown category '{scope}' (scope is 'all' or one of: "
                        f"{', '.join(categories)})")
    complaint.done()
    soft = root.section("soft")
    out = BounceRules(
        hard_suppress=hard_on,
        complaint_suppress=complaint_on,
        complaint_scope=scope,
        soft_suppress=soft.get_str("action", "suppress", _ACTIONS) == "suppress",
        soft_count=soft.get_int("count", d.soft_count, 1, 1000),
        soft_window=soft.duration("window", d.soft_window),
        soft_suppress_for=soft.duration("suppress_for", d.soft_suppress_for),
    )
    if out.soft_window <= 0:
        soft.error("window", "'soft.window' must be longer than zero")
    if out.soft_suppress_for <= 0:
        soft.error("suppress_for", "'soft.suppress_for' must be longer than zero")
    soft.done()
    root.done()
    return out
