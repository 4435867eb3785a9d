"""The tracking rewrite: an open pixel and click redirects in a message's HTML, as a pure
function of the message bytes and a plan (no Postfix counterpart; it runs where
cleanup(8) would rewrite content: after every other change, before DKIM signing).

Only `text/html` parts change. Inside them, each `href` to an http(s) URL becomes
<tracking url>/c/<token> (gateway.tracking.token), except links that must keep
working unwrapped: the List-Unsubscribe URLs of the message (RFC 8058 one-click
must reach the unsubscribe endpoint itself) and any link whose path says
"unsubscribe". The first HTML part gets a 1x1 image <tracking url>/o/<token> before
`</body>` (or at its end). Every other byte of the message is kept: the header
section, other parts, MIME boundaries, preambles and epilogues.

A part keeps its Content-Transfer-Encoding (quoted-printable and base64 are decoded,
rewritten and encoded again), except that a 7bit/8bit part whose rewritten lines
would exceed 998 octets (RFC 5322 2.1.1; long URLs make long tokens) is re-encoded
as quoted-printable, with its Content-Transfer-Encoding field changed to say so.

Security: reads untrusted message content. Parsing is bounded by the message
(already size-limited at intake); nesting deeper than MAX_DEPTH is left untouched;
a part we cannot decode is left as it is.
"""

from __future__ import annotations

import base64
import binascii
import html
import quopri
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from gateway.policy.consent import HeaderSection
from gateway.tracking.token import Hit, HitKind, TokenKeys, seal

__all__ = ["MAX_DEPTH", "TrackingPlan", "rewrite"]

MAX_DEPTH = 8
MAX_LINE = 998

_HREF = re.compile(rb"""(<a\b[^>]*?\bhref\s*=\s*)(["'])(https?://[^"'\s<>]+)\2""", re.I)
_BODY_END = re.compile(rb"</body\s*>", re.I)
_MEDIA = re.compile(rb"^\s*([!-~]+?/[!-~]+?)\s*(?:;|$)")
_BOUNDARY = re.compile(rb"""\bboundary\s*=\s*(?:"([^"]+)"|([^\s;]+))""", re.I)
_ANGLE_URL = re.compile(r"<(https?://[^>]+)>")


@dataclass(frozen=True)
class TrackingPlan:
    """Whom the tokens of one stored copy name: one recipient (copies are per recipient)."""

    base_url: str
    keys: TokenKeys
    queue_id: str
    recipient: str
    category: str

    def token(self, kind: HitKind, url: str = "") -> str:
        return seal(self.keys, Hit(kind, self.queue_id, self.recipient, self.category, url))


@dataclass
class _State:
    plan: TrackingPlan
    keep: frozenset[str]  # URLs never wrapped
    pixel_done: bool = False
    links: int = 0


def rewrite(content: bytes, plan: TrackingPlan) -> bytes:
    """`content` (CRLF lines, as stored) with its HTML tracked; unchanged without HTML."""
    header = HeaderSection.parse(content)
    keep = frozenset(_ANGLE_URL.findall(header.get("list-unsubscribe") or ""))
    return _entity(content, header, _State(plan, keep), 0)


def _entity(content: bytes, header: HeaderSection, state: _State, depth: int) -> bytes:
    if depth > MAX_DEPTH:
        return content
    ctype = _media_type(header)
    body_start = _body_start(content, header)
    if ctype.startswith(b"multipart/"):
        boundary = _boundary(header)
        if boundary is None:
            return content
        body = _multipart(content[body_start:], boundary, state, depth)
        return content[:body_start] + body
    if ctype != b"text/html":
        return content
    return _html_part(content, header, body_start, state)


def _media_type(header: HeaderSection) -> bytes:
    value = (header.get("content-type") or "text/plain").encode("utf-8", "replace")
    m = _MEDIA.match(value)
    return m.group(1).lower() if m else b"text/plain"


def _boundary(header: HeaderSection) -> bytes | None:
    m = _BOUNDARY.search((header.get("content-type") or "").encode("utf-8", "replace"))
    return (m.group(1) or m.group(2)) if m else None


def _body_start(content: bytes, header: HeaderSection) -> int:
    """Offset of the body: after the empty line that ends the header section."""
    if content.startswith(b"\r\n", header.end):
        return header.end + 2
    return header.end


def _multipart(body: bytes, boundary: bytes, state: _State, depth: int) -> bytes:
    """Each part between `--boundary` lines rewritten; delimiters, preamble and epilogue
    kept byte for byte (RFC 2046 5.1.1: a delimiter is CRLF--boundary)."""
    delimiter = b"\r\n--" + boundary
    text = b"\r\n" + body  # the first delimiter may open the body
    pieces = text.split(delimiter)
    out = [pieces[0]]
    closed = False
    for piece in pieces[1:]:
        closed = closed or piece.startswith(b"--")
        if closed:  # the close delimiter, and an epilogue that repeats the boundary
            out.append(piece)
            continue
        line_end = piece.find(b"\r\n")
        if line_end < 0:
            out.append(piece)
            continue
        part = piece[line_end + 2:]
        rewritten = _entity(part, HeaderSection.parse(part), state, depth + 1)
        out.append(piece[:line_end + 2] + rewritten)
    return delimiter.join(out)[2:]


def _html_part(content: bytes, header: HeaderSection, body_start: int, state: _State
               ) -> bytes:
    encoding = (header.get("content-transfer-encoding") or "7bit").strip().lower()
    raw = content[body_start:]
    decoded = _decode(raw, encoding)
    if decoded is None:
        return content
    changed = _track_html(decoded, state)
    if changed == decoded:
        return content
    head = content[:body_start]
    if encoding in ("quoted-printable", "base64"):
        return head + _encode(changed, encoding)
    if any(len(line) > MAX_LINE for line in changed.split(b"\r\n")):
        return _as_quoted_printable(content, header, body_start, changed)
    return head + changed


def _track_html(text: bytes, state: _State) -> bytes:
    plan = state.plan

    def wrap(m: re.Match[bytes]) -> bytes:
        url = html.unescape(m.group(3).decode("utf-8", "replace"))
        if url in state.keep or "unsubscribe" in urlsplit(url).path.lower():
            return m.group(0)
        state.links += 1
        new = f"{plan.base_url}/c/{plan.token(HitKind.CLICK, url)}".encode("ascii")
        return m.group(1) + m.group(2) + new + m.group(2)

    out = _HREF.sub(wrap, text)
    if state.pixel_done:
        return out
    state.pixel_done = True
    pixel = (f'<img src="{plan.base_url}/o/{plan.token(HitKind.OPEN)}" width="1" height="1"'
             ' alt="" style="display:block;border:0;width:1px;height:1px">').encode("ascii")
    ends = list(_BODY_END.finditer(out))
    if ends:
        at = ends[-1].start()
        return out[:at] + pixel + b"\r\n" + out[at:]
    if out.endswith(b"\r\n"):
        return out + pixel + b"\r\n"
    return out + b"\r\n" + pixel


def _decode(raw: bytes, encoding: str) -> bytes | None:
    if encoding in ("7bit", "8bit", "binary"):
        return raw
    if encoding == "quoted-printable":
        return quopri.decodestring(raw).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if encoding == "base64":
        try:
            return base64.b64decode(raw, validate=False)
        except (binascii.Error, ValueError):
            return None
    return None  # an encoding we do not know: leave the part alone


def _encode(data: bytes, encoding: str) -> bytes:
    if encoding == "base64":
        text = base64.b64encode(data)
        return b"".join(text[i:i + 76] + b"\r\n" for i in range(0, len(text), 76))
    lines = data.split(b"\r\n")
    encoded = [quopri.encodestring(line).replace(b"\n", b"\r\n") for line in lines]
    return b"\r\n".join(encoded)


def _as_quoted_printable(content: bytes, header: HeaderSection, body_start: int,
                         changed: bytes) -> bytes:
    """The part with its body as quoted-printable, saying so in its header."""
    fields = header.without(content[:header.end], "content-transfer-encoding")
    return (fields + b"Content-Transfer-Encoding: quoted-printable\r\n"
            + content[header.end:body_start] + _encode(changed, "quoted-printable"))
