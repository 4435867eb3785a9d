"""Charts as SVG drawn on the server: stacked bars over time and horizontal bars by
name (no charting library, no script: an <svg> element in the page).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from gateway.console.page import esc

__all__ = ["COLORS", "hbars", "stacked_bars"]

COLORS = {"delivered": "#2e7d32", "deferred": "#f0a020", "bounced": "#b3261e",
          "accepted": "#2563a8", "opened": "#6a4fb3", "clicked": "#0f8a8a"}


def stacked_bars(starts: Sequence[int], series: Mapping[str, Sequence[int]], *,
                 step: int, width: int = 720, height: int = 180) -> str:
    """One bar per start time, stacked by series (drawn in the order given)."""
    n = len(starts)
    if n == 0:
        return ""
    totals = [sum(values[i] for values in series.values()) for i in range(n)]
    top = max(max(totals), 1)
    left, plot_h = 44, height - 30
    bar_w = (width - left - 4) / n
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
             f'role="img" aria-label="events over time">']
    for frac in (0.0, 0.5, 1.0):
        y = 4 + plot_h * (1 - frac)
        parts.append(f'<line x1="{left}" x2="{width}" y1="{y:.1f}" y2="{y:.1f}" '
                     f'stroke="#e3e7ec"/><text x="{left - 4}" y="{y + 4:.1f}" font-size="10" '
                     f'text-anchor="end" fill="#5b6675">{round(top * frac)}</text>')
    for i, start in enumerate(starts):
        y = 4 + plot_h
        for name, values in series.items():
            h = plot_h * values[i] / top
            if h > 0:
                y -= h
                parts.append(f'<rect x="{left + i * bar_w + 1:.1f}" y="{y:.1f}" '
                             f'width="{max(bar_w - 2, 1):.1f}" height="{h:.1f}" '
                             f'fill="{COLORS.get(name, "#888")}"><title>{esc(name)} '
                             f'{values[i]} at {_label(start, step)}</title></rect>')
    for i in range(0, n, max(n // 6, 1)):
        parts.append(f'<text x="{left + i * bar_w:.1f}" y="{height - 6}" font-size="10" '
                     f'fill="#5b6675">{_label(starts[i], step)}</text>')
    legend = " ".join(f'<tspan fill="{COLORS.get(k, "#888")}">■</tspan> {esc(k)}'
                      for k in series)
    parts.append(f'<text x="{left + 6}" y="16" font-size="11">{legend}</text></svg>')
    return "".join(parts)


def hbars(items: Sequence[tuple[str, int]], *, width: int = 720, color: str = "#b3261e"
          ) -> str:
    """A labelled bar per item, longest first as given."""
    if not items:
        return ""
    row, label_w = 20, 220
    top = max(v for _, v in items) or 1
    height = row * len(items) + 4
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
             f'role="img" aria-label="counts by name">']
    for i, (label, value) in enumerate(items):
        y = 2 + i * row
        w = (width - label_w - 60) * value / top
        parts.append(f'<text x="{label_w - 6}" y="{y + 14}" font-size="11" text-anchor="end">'
                     f"{esc(label[:40])}</text><rect x=\"{label_w}\" y=\"{y + 3}\" "
                     f'width="{w:.1f}" height="{row - 6}" fill="{color}"/>'
                     f'<text x="{label_w + w + 4:.1f}" y="{y + 14}" font-size="11">{value}'
                     "</text>")
    parts.append("</svg>")
    return "".join(parts)


def _label(start: int, step: int) -> str:
    moment = datetime.fromtimestamp(start, UTC)
    return moment.strftime("%H:%M" if step < 86400 else "%m-%d")
