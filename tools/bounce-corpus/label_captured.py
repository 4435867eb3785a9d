"""label_captured.py CAPTURED_DIR OUT MANIFEST: copy the captured bounces into the corpus
with expectations from the scenario each recipient was sent to (harness/servers.py)."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

# scenario (local part) → (reason, kind when final), from what the test destination replied
LABELS = {
    "u1": ("userunknown", "hard"), "u2": ("userunknown", "hard"), "u3": ("userunknown", "hard"),
    "u4": ("userunknown", "hard"), "u5": ("norelaying", "soft"), "h1": ("hostunknown", "hard"),
    "mv": ("hasmoved", "hard"), "na": ("notaccept", "hard"), "m1": ("mailboxfull", "soft"),
    "m2": ("mailboxfull", "soft"), "s1": ("suspend", "soft"), "s2": ("suspend", "soft"),
    "x1": ("exceedlimit", "soft"), "tb": ("mesgtoobig", "soft"), "bl": ("blocked", "soft"),
    "b2": ("blocked", "soft"), "b3": ("blocked", "soft"), "b4": ("blocked", "soft"),
    "b5": ("blocked", "soft"), "sp": ("spamdetected", "soft"), "s3": ("spamdetected", "soft"),
    "vi": ("virusdetected", "soft"), "ce": ("contenterror", "soft"),
    "pv": ("policyviolation", "soft"), "au": ("securityerror", "soft"),
    "sf": ("securityerror", "soft"), "tl": ("securityerror", "soft"),
    "rl": ("norelaying", "soft"), "rj": ("rejected", "soft"), "sx": ("userunknown", "hard"),
    "se": ("systemerror", "soft"), "sy": ("systemfull", "soft"), "tc": ("toomanyconn", "soft"),
    "ra": ("ratelimited", "soft"), "tf": ("systemerror", "soft"), "ok": ("spamdetected", "soft"),
    # the test destination's banner names a blocklist; its MAIL reply names the DBL
    "a1": ("blocked", "soft"), "a2": ("blocked", "soft"), "c1": ("blocked", "soft"),
    "nobody1": ("userunknown", "hard"), "quota": ("undefined", "soft"),
}
from servers import SCENARIOS  # noqa: E402

CODE = re.compile(r"\b([45])\.(\d{1,3})\.(\d{1,3})\b")
src, out, manifest = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
mta = src.name
counts: dict[str, int] = {}
for f in out.glob(f"{mta}_*.eml"):
    counts[mta] = max(counts.get(mta, 0), int(f.stem.rsplit("_", 1)[1]))
lines = []
for f in sorted(src.glob("*.eml")):
    raw = f.read_text("utf-8", "replace")
    report_part = raw.split("message/delivery-status", 1)[1] if "message/delivery-status" in raw \
        else ""
    report_part = re.split(r"message/rfc822|text/rfc822-headers", report_part)[0]
    delayed = ("Action: delayed" in report_part
               or "has not yet been delivered" in raw or "Subject: Warning:" in raw)
    # recipients in the order the report lists them
    rcpts = re.findall(r"Final-Recipient: rfc822; ?([\w.+-]+@[\w.-]+)", report_part, re.I)
    rcpts = list(dict.fromkeys(rcpts))
    statuses = re.findall(r"^Status: ([\d.]+)", report_part, re.M)
    expected = []
    if not rcpts and "Subject: Your booking confirmation" in raw.split("\n\n", 1)[0]:
        pass  # the original itself reached the sink: ordinary mail, not a bounce
    for i, addr in enumerate(rcpts):
        local, domain = addr.split("@")
        if domain in ("down.test",):
            reason = "expired" if (mta == "exim" and not delayed) else "networkerror"
            if mta == "opensmtpd" and "Envelope expired" in raw:
                reason = "expired"
            kind = "soft"
        elif domain == "nodns.test":
            reason, kind = "hostunknown", "hard"
        else:
            reason, kind = LABELS[local]
            if mta == "opensmtpd" and domain in ("banner.test", "mailrej.test"):
                reason = "expired" if "Envelope expired" in raw else "networkerror"
            if mta == "exim" and local in ("tc", "ra", "m2") and not delayed and \
                    "retry timeout exceeded" in raw and local != "m2":
                pass
        if mta == "opensmtpd" and "Envelope expired" in raw:
            reason = "expired"  # what the report says, whatever the destination said before
        if mta == "exim" and delayed and domain == "down.test":
            reason = "onhold"  # Exim's delay warning gives no reason at all
        reported = statuses[i] if i < len(statuses) else None
        scenario = SCENARIOS.get(local, ("", ""))[1] if domain == "rcpt.test" else ""
        if domain in ("banner.test", "mailrej.test"):
            scenario = "554 5.7.1"  # servers.py's banner and MAIL replies
        code = CODE.search(scenario)
        status = reported
        if code and (reported is None or reported.endswith(".0.0")) and \
                reported is not None and reported[0] == code[1]:
            status = code[0]
        if delayed or (status is not None and status[0] == "4"):
            kind = "soft"
        expected.append({"address": addr, "status": status, "kind": kind, "reason": reason})
    counts[mta] = counts.get(mta, 0) + 1
    name = f"{mta}_{counts[mta]:02d}"
    (out / f"{name}.eml").write_bytes(f.read_bytes())
    (out / f"{name}.json").write_text(json.dumps(
        {"bounce": bool(expected), "recipients": expected}, indent=2) + "\n")
    what = "delay warning" if delayed else "bounce"
    lines.append(f"{name}\tcaptured\t{mta} {what} for scenario {f.stem} (tools/bounce-corpus/servers.py; "
                 f"destination replies: {', '.join(sorted({r['address'].split('@')[0] for r in expected}))})")
with manifest.open("a") as m:
    m.write("\n".join(lines) + "\n")
print(mta, len(lines))
