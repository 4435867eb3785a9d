"""Hand-written bounce samples, one function per source, from the formats' documentation.

Each sample: (source, note, message bytes, expected recipients [(address, status, kind,
reason)], bounce flag). Written into OUT/<source>_NN.eml + .json, and MANIFEST lines.
The expectations are the author's reading of what each failure means, written here
beside the text, never produced by the parser.
"""
from __future__ import annotations

import json
import sys
from email.header import Header
from pathlib import Path

OUT = Path(sys.argv[1])
MANIFEST = Path(sys.argv[2])
DATE = "Mon, 07 Dec 2026 10:{:02d}:00 +0000"
SAMPLES: list[tuple[str, str, bytes, list[tuple[str, str | None, str, str]], bool]] = []
_n = [0]


def date() -> str:
    _n[0] += 1
    return DATE.format(_n[0] % 60)


def original(to: str, subject: str = "Your booking at Hotel Aurora", mid: str = "") -> str:
    mid = mid or f"<bk{_n[0]:04d}.{abs(hash(to)) % 99999}@app.example.com>"
    return (f"Return-Path: <bounces@example.com>\nFrom: Hotel Aurora <booking@example.com>\n"
            f"To: {to}\nSubject: {subject}\nMessage-ID: {mid}\nDate: {date()}\n"
            f"MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\n"
            f"Dear guest,\n\nyour room is confirmed for 12-14 December.\n")


def plain(frm: str, subject: str, body: str, *, to: str = "booking@example.com",
          extra: str = "", charset: str = "us-ascii", cte: str = "7bit",
          raw_body: bytes | None = None, return_path: str = "<>") -> bytes:
    head = (f"Return-Path: {return_path}\nFrom: {frm}\nTo: {to}\nSubject: {subject}\nDate: {date()}\n"
            f"Message-ID: <n{_n[0]}.{len(body)}@bounce.example>\n{extra}MIME-Version: 1.0\n"
            f"Content-Type: text/plain; charset={charset}\nContent-Transfer-Encoding: {cte}\n\n")
    return head.encode() + (raw_body if raw_body is not None else body.encode())


def mixed(frm: str, subject: str, human: str, *, orig: str | None = None,
          report: str | None = None, headers_only: bool = False, extra: str = "",
          ctype: str = "multipart/report; report-type=delivery-status",
          human_charset: str = "us-ascii", human_bytes: bytes | None = None,
          human_cte: str = "7bit") -> bytes:
    b = f"b{_n[0]}x{len(human)}"
    parts = [f"--{b}\nContent-Type: text/plain; charset={human_charset}\n"
             f"Content-Transfer-Encoding: {human_cte}\n\n".encode()
             + (human_bytes if human_bytes is not None else human.encode()) + b"\n"]
    if report is not None:
        parts.append(f"--{b}\nContent-Type: message/delivery-status\n\n{report}\n".encode())
    if orig is not None:
        if headers_only:
            hdr = orig.split("\n\n", 1)[0] + "\n"
            parts.append(f"--{b}\nContent-Type: text/rfc822-headers\n\n{hdr}\n".encode())
        else:
            parts.append(f"--{b}\nContent-Type: message/rfc822\n\n{orig}\n".encode())
    head = (f"Return-Path: <>\nFrom: {frm}\nTo: booking@example.com\nSubject: {subject}\n"
            f"Date: {date()}\nMessage-ID: <m{_n[0]}@bounce.example>\n{extra}MIME-Version: 1.0\n"
            f"Content-Type: {ctype}; boundary=\"{b}\"\n\n"
            "This is a multi-part message in MIME format.\n\n").encode()
    return head + b"".join(parts) + f"--{b}--\n".encode()


def add(source: str, note: str, data: bytes, rcpts: list[tuple[str, str | None, str, str]],
        bounce: bool = True) -> None:
    SAMPLES.append((source, note, data, rcpts, bounce))


H, S = "hard", "soft"
from sources_a import write_a  # noqa: E402
from sources_b import write_b, write_c  # noqa: E402

write_a(add, plain, mixed, original, date)
write_b(add, plain, mixed, original, date)
write_c(add, plain, mixed, original, date)

counts: dict[str, int] = {}
for f in OUT.glob("*.eml"):
    src, num = f.stem.rsplit("_", 1)
    counts[src] = max(counts.get(src, 0), int(num))
lines = []
for source, note, data, rcpts, bounce in SAMPLES:
    counts[source] = counts.get(source, 0) + 1
    name = f"{source}_{counts[source]:02d}"
    (OUT / f"{name}.eml").write_bytes(data)
    expected = {"bounce": bounce, "recipients": [
        {"address": a, "status": st, "kind": k, "reason": r} for a, st, k, r in rcpts]}
    (OUT / f"{name}.json").write_text(json.dumps(expected, indent=2, ensure_ascii=False) + "\n")
    lines.append(f"{name}\twritten\t{note}")
with MANIFEST.open("a") as m:
    m.write("\n".join(lines) + "\n")
print(len(SAMPLES), "samples written")
