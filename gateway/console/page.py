"""The console's HTML: one layout, a few helpers, all escaped (no template engine, no
JavaScript; every page is plain server-rendered HTML that works on a phone).

Security: every value that comes from mail or from the operator goes through `esc()`
(html.escape, quotes included) before it reaches the page.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from datetime import UTC, datetime
from urllib.parse import urlencode

from aiohttp import web

__all__ = ["NAV", "csrf_field", "esc", "form", "link", "page", "table", "when"]

NAV = (("overview", "Overview"), ("trace", "Trace"), ("queue", "Queue"),
       ("suppressions", "Suppressions"))

# Small and self-contained: the console must render without fetching anything.
_CSS = """
*{box-sizing:border-box}body{margin:0;font:15px/1.45 system-ui,sans-serif;color:#1c2430;
background:#f4f6f8}header{background:#1c2f45;color:#fff;padding:.6em 1em;display:flex;
flex-wrap:wrap;gap:.4em 1.2em;align-items:center}header a{color:#cfe3ff;text-decoration:none}
header a.on{color:#fff;font-weight:600;border-bottom:2px solid #7fb8ff}header form{margin-left:auto}
main{padding:1em;max-width:1200px;margin:auto}h1{font-size:1.3em;margin:.2em 0 .6em}
h2{font-size:1.05em;margin:1.2em 0 .4em}.cards{display:grid;gap:.6em;
grid-template-columns:repeat(auto-fill,minmax(9em,1fr))}.card{background:#fff;border-radius:6px;
padding:.6em .8em;box-shadow:0 1px 2px #0002}.card b{display:block;font-size:1.5em}
.card small{color:#5b6675}table{border-collapse:collapse;width:100%;background:#fff;
font-size:.92em}th,td{text-align:left;padding:.35em .5em;border-bottom:1px solid #e3e7ec;
vertical-align:top}th{background:#eef1f5}.scroll{overflow-x:auto}.num{text-align:right}
input,select,button{font:inherit;padding:.35em .5em;margin:.15em 0}button{background:#2563a8;
color:#fff;border:0;border-radius:4px;cursor:pointer}button.danger{background:#b3261e}
.alert{background:#fff1f0;border-left:4px solid #b3261e;padding:.5em .8em;margin:.3em 0}
.ok{background:#effaf1;border-left:4px solid #2e7d32;padding:.5em .8em;margin:.3em 0}
.muted{color:#5b6675}form.inline{display:inline}svg{max-width:100%;height:auto;background:#fff}
.row{display:flex;flex-wrap:wrap;gap:.5em;align-items:end}.row label{display:flex;
flex-direction:column;font-size:.85em}code{word-break:break-all}
"""


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def when(timestamp: float | None) -> str:
    if not timestamp:
        return "-"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S")


def link(path: str, text: str, **query: str) -> str:
    target = path + ("?" + urlencode(query) if query else "")
    return f'<a href="{esc(target)}">{esc(text)}</a>'


def csrf_field(csrf: str) -> str:
    return f'<input type="hidden" name="csrf" value="{esc(csrf)}">'


def form(action: str, csrf: str, inner: str, *, button: str, danger: bool = False,
         inline: bool = False) -> str:
    cls = ' class="inline"' if inline else ""
    btn = f'<button{" class=danger" if danger else ""} type="submit">{esc(button)}</button>'
    return (f'<form method="post" action="{esc(action)}"{cls}>{csrf_field(csrf)}{inner}'
            f"{btn}</form>")


def table(head: Iterable[str], rows: Iterable[Iterable[str]], *, numeric: int = 0) -> str:
    """Cells are HTML already (escape values with esc()); the last `numeric` columns
    are right-aligned."""
    heads = list(head)
    first_num = len(heads) - numeric
    th = "".join(f'<th{" class=num" if i >= first_num else ""}>{h}</th>'
                 for i, h in enumerate(heads))
    body = "".join("<tr>" + "".join(f'<td{" class=num" if i >= first_num else ""}>{c}</td>'
                                    for i, c in enumerate(r)) + "</tr>" for r in rows)
    if not body:
        body = f'<tr><td colspan="{len(heads)}" class="muted">none</td></tr>'
    return f'<div class="scroll"><table><tr>{th}</tr>{body}</table></div>'


def page(title: str, body: str, *, current: str = "", csrf: str = "", actor: str = "",
         status: int = 200) -> web.Response:
    nav = "".join(f'<a href="/console/{name}"{" class=on" if name == current else ""}>'
                  f"{label}</a>" for name, label in NAV) if csrf else ""
    logout = (form("/console/logout", csrf, "", button=f"Log out {actor}", inline=True)
              if csrf else "")
    text = (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{esc(title)} · smtp-gateway</title><style>{_CSS}</style></head>"
            f"<body><header><strong>smtp-gateway</strong>{nav}{logout}</header>"
            f"<main><h1>{esc(title)}</h1>{body}</main></body></html>")
    return web.Response(text=text, content_type="text/html", status=status,
                        headers=_SECURITY_HEADERS)


# No script may run, no frame may embed us, nothing is fetched from elsewhere.
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'"
                               " data:; form-action 'self'; frame-ancestors 'none';"
                               " base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # same-origin, not no-referrer: with no-referrer browsers send "Origin: null" on our
    # own form posts, and the Origin check (gateway.console.session) would refuse them.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
