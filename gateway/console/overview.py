"""Overview: what happened over the last hour, day or week, at a glance (Postfix's
pflogsumm, as a page; KumoMTA's and Postal's dashboards).

Figures come from the rolled-up counts (gateway.state.counts), never from a scan of
the events: one roll-up of what arrived since the last, then a few grouped reads of
at most a few thousand rows. Queue depth and the oldest message come from the
queue sampler's last sample (gateway.metrics.queue), breakers from delivery, each
smarthost's share and the failovers from gateway.console.smarthosts.

Alerts are simple rules on those figures: a smarthost whose breaker is open, a
destination domain where at least MIN_ATTEMPTS recipients were tried and more than
FAILURE_RATE of them failed (bounced or deferred), an overall bounce rate above
BOUNCE_RATE, and mail waiting longer than OLD_MESSAGE.
"""

from __future__ import annotations

from aiohttp import web

from gateway.console.app import View, guarded
from gateway.console.charts import hbars, stacked_bars
from gateway.console.page import esc, link, table, when
from gateway.console.smarthosts import smarthost_rows, smarthosts_section
from gateway.delivery.deliver import Delivery
from gateway.delivery.smarthosts import CircuitBreaker
from gateway.metrics.queue import QueueSample, QueueSampler
from gateway.state.counts import Overview

__all__ = ["WINDOWS", "overview"]

# name → (seconds, chart step)
WINDOWS = {"hour": (3600, 300), "day": (86400, 3600), "week": (7 * 86400, 6 * 3600)}
CARDS = (("sent", "accepted"), ("delivered", "delivered"), ("deferred", "deferred"),
         ("bounced", "bounced"), ("complained", "complained"),
         ("unsubscribed", "unsubscribed"), ("suppressed", "suppressed"))
MIN_ATTEMPTS = 10
FAILURE_RATE = 0.3
BOUNCE_RATE = 0.05
OLD_MESSAGE = 3600.0
TOP_DOMAINS = 15


async def load(view: View, since: float) -> Overview:
    counts = view.console.counts
    if counts is None:  # only before the app's start-up ran
        return Overview(since)
    await counts.rollup()
    return await counts.overview(since)


@guarded
async def overview(view: View) -> web.StreamResponse:
    name = view.request.query.get("window", "day")
    seconds, step = WINDOWS.get(name, WINDOWS["day"])
    now = view.ctx.now()
    data = await load(view, now - seconds)
    body = [_window_links(name), _cards(data), _alerts(view, data, now),
            "<h2>Over time</h2>", _chart(data, now, seconds, step),
            "<h2>Bounces by reason</h2>", _reasons(data),
            "<h2>By category</h2>", _dimension(data, "category"),
            "<h2>By route</h2>", _dimension(data, "route"),
            "<h2>Destination domains</h2>", _domains(data),
            "<h2>Delivery latency</h2>", _latency(data),
            "<h2>Queue</h2>", _queue(view, now),
            "<h2>Smarthosts</h2>", smarthosts_section(
                smarthost_rows(view.ctx.gateway.config.routes, _breaker_list(view), data))]
    return view.render(f"Overview, last {name}", "".join(body), "overview")


def _window_links(current: str) -> str:
    links = " · ".join(f"<strong>{w}</strong>" if w == current else
                       link("/console/overview", w, window=w) for w in WINDOWS)
    return f'<p>Last {links} <span class="muted">(5-minute resolution)</span></p>'


def _cards(data: Overview) -> str:
    cards = [(label, data.total(kind), "") for label, kind in CARDS]
    for label, kind in (("opened", "opened"), ("clicked", "clicked")):
        machine = data.total(kind, reason="machine")
        cards.append((label, data.total(kind, reason="human"), f"+{machine} by machines"))
    return '<div class="cards">' + "".join(
        f'<div class="card" id="card-{label}"><small>{label}</small><b>{n}</b>'
        f'<small>{esc(note)}</small></div>' for label, n, note in cards) + "</div>"


def _alerts(view: View, data: Overview, now: float) -> str:
    alerts = [f"Smarthost {esc(b.name)} of route {esc(b.route)} is unavailable "
              f"(circuit breaker {b.state.value}, {b.failures} failures)"
              for b in _breaker_list(view) if b.state.value != "CLOSED"]
    for domain, kinds in data.domains.items():
        tried = sum(kinds.get(k, 0) for k in ("delivered", "bounced", "deferred"))
        failed = kinds.get("bounced", 0) + kinds.get("deferred", 0)
        if tried >= MIN_ATTEMPTS and failed > FAILURE_RATE * tried:
            alerts.append(f"{esc(domain)}: {failed} of {tried} attempts failed "
                          "(blocked or refusing?)")
    final = data.total("delivered") + data.total("bounced")
    if final >= MIN_ATTEMPTS and data.total("bounced") > BOUNCE_RATE * final:
        alerts.append(f"Bounce rate {100 * data.total('bounced') / final:.1f}% "
                      f"(above {100 * BOUNCE_RATE:.0f}%)")
    oldest = min(_sample(view).oldest.values(), default=None)
    if oldest is not None and now - oldest > OLD_MESSAGE:
        alerts.append(f"The oldest queued message has waited since {when(oldest)} UTC")
    if not alerts:
        return '<p class="ok">No alerts.</p>'
    return "".join(f'<p class="alert">{a}</p>' for a in alerts)


def _chart(data: Overview, now: float, seconds: int, step: int) -> str:
    first = int((now - seconds) // step * step)
    starts = list(range(first, int(now) + 1, step))
    kinds = ("delivered", "deferred", "bounced")
    series = {k: [0] * len(starts) for k in kinds}
    for kind in kinds:
        for bucket, n in data.series.get(kind, {}).items():
            index = (bucket - first) // step
            if 0 <= index < len(starts):
                series[kind][index] += n
    return stacked_bars(starts, series, step=step) or '<p class="muted">no data</p>'


def _reasons(data: Overview) -> str:
    items = sorted(((r or "unknown", n) for r, n in _by_reason(data).items()),
                   key=lambda item: -item[1])[:15]
    if not items:
        return '<p class="muted">No bounces.</p>'
    return hbars(items) + table(["reason", "bounced"], [[esc(r), str(n)] for r, n in items],
                                numeric=1)


def _by_reason(data: Overview) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in data.rows:
        if r.type == "bounced":
            out[r.reason] = out.get(r.reason, 0) + r.n
    return out


_COLUMNS = ("accepted", "delivered", "deferred", "bounced", "complained", "opened", "clicked")


def _dimension(data: Overview, dimension: str) -> str:
    names = sorted({getattr(r, dimension) or "none" for r in data.rows})
    by = {kind: data.by(kind, dimension) for kind in _COLUMNS}
    rows = [[esc(n), *(str(by[k].get(n, 0)) for k in _COLUMNS)] for n in names]
    return table([dimension, "sent", *_COLUMNS[1:]], rows, numeric=len(_COLUMNS))


def _domains(data: Overview) -> str:
    ranked = sorted(data.domains.items(), key=lambda d: -sum(d[1].values()))[:TOP_DOMAINS]
    rows = [[esc(d), *(str(k.get(c, 0)) for c in ("accepted", "delivered", "deferred",
                                                   "bounced"))] for d, k in ranked]
    return table(["domain", "sent", "delivered", "deferred", "bounced"], rows, numeric=4)


def _latency(data: Overview) -> str:
    if not data.latency:
        return '<p class="muted">No deliveries in this window.</p>'
    cells = []
    for q in (0.5, 0.9, 0.99):
        bound = data.percentile(q)
        text = "over a day" if bound is None or bound == float("inf") else f"≤ {bound:g} s"
        cells.append(f'<div class="card"><small>p{round(q * 100)}</small><b>{text}</b></div>')
    return f'<div class="cards">{"".join(cells)}</div>'


def _sample(view: View) -> QueueSample:
    sampler = getattr(view.ctx.gateway, "queue_metrics", None)
    return sampler.last if isinstance(sampler, QueueSampler) else QueueSample()


def _queue(view: View, now: float) -> str:
    sample = _sample(view)
    depth: dict[str, int] = {}
    for (state, _route), n in sample.depth.items():
        depth[state] = depth.get(state, 0) + n
    rows = [[esc(s), str(n)] for s, n in sorted(depth.items())]
    oldest = [[esc(c), f"{when(at)} UTC ({(now - at) / 60:.0f} min)"]
              for c, at in sorted(sample.oldest.items(), key=lambda i: i[1])]
    return (table(["state", "messages"], rows, numeric=1)
            + table(["category", "oldest waiting since"], oldest)
            + f'<p class="muted">Sampled every few seconds. {link("/console/queue", "Browse")}'
            "</p>")


def _breaker_list(view: View) -> list[CircuitBreaker]:
    delivery = getattr(view.ctx.gateway, "delivery", None)
    return delivery.breakers() if isinstance(delivery, Delivery) else []
