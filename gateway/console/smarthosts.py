"""The overview's smarthosts: each configured smarthost of each route in its order,
its circuit breaker, and what it carried in the window — with the failovers, the
deliveries a backup smarthost made because the ones before it failed or had their
breaker open (Postfix: `relayhost` lists and the smtp(8) log; KumoMTA's egress
paths). Figures come from the rolled-up host counts (gateway.state.counts).
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.console.page import esc, table, when
from gateway.delivery.smarthosts import CircuitBreaker
from gateway.model import Route
from gateway.state.counts import Overview

__all__ = ["SmarthostRow", "failovers", "smarthost_rows", "smarthosts_section"]


@dataclass(frozen=True)
class SmarthostRow:
    route: str
    name: str
    position: int  # 0: the route's first choice; 1 and up: backups, in order
    breaker: CircuitBreaker | None  # None until delivery first used it
    delivered: int
    deferred: int
    bounced: int


def smarthost_rows(routes: tuple[Route, ...], breakers: list[CircuitBreaker],
                   data: Overview) -> list[SmarthostRow]:
    by_key = {(b.route, b.name): b for b in breakers}
    rows = []
    for route in routes:
        if route.kind != "smarthost":
            continue
        for position, smarthost in enumerate(route.smarthosts):
            done = data.hosts.get((route.name, smarthost.name), {})
            rows.append(SmarthostRow(route.name, smarthost.name, position,
                                     by_key.get((route.name, smarthost.name)),
                                     done.get("delivered", 0), done.get("deferred", 0),
                                     done.get("bounced", 0)))
    return rows


def failovers(rows: list[SmarthostRow]) -> tuple[int, int]:
    """(deliveries by a backup smarthost, all deliveries by smarthosts) in the window."""
    backup = sum(r.delivered for r in rows if r.position > 0)
    return backup, sum(r.delivered for r in rows)


def smarthosts_section(rows: list[SmarthostRow]) -> str:
    if not rows:
        return '<p class="muted">No smarthost routes.</p>'
    backup, total = failovers(rows)
    note = (f'<p id="failovers">Failovers: <b>{backup}</b> of {total} deliveries went through '
            "a backup smarthost.</p>")
    cells = [[esc(r.route), esc(r.name), "first" if r.position == 0 else f"backup {r.position}",
              esc(r.breaker.state.value) if r.breaker else "CLOSED",
              str(r.breaker.failures) if r.breaker else "0",
              when(r.breaker.retry_at) if r.breaker and r.breaker.retry_at else "-",
              str(r.delivered), str(r.deferred), str(r.bounced)] for r in rows]
    return note + table(["route", "smarthost", "order", "breaker", "failures", "retry at",
                         "delivered", "deferred", "bounced"], cells, numeric=3)
