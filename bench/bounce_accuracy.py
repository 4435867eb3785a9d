#!/usr/bin/env python3
"""Bounce classification accuracy over a labelled corpus (.eml with .json beside each).

    python3 bench/bounce_accuracy.py [--dir tests/data/bounces] [--list]

Prints what the issue's goals are stated in:
- detection: is it a bounce (complaints included)? recall and precision over messages;
- failed recipients: recall and precision over (message, address) pairs;
- wrongful suppressions: of the recipients whose failure is not the address's fault,
  the share parsed as `hard` (which bounces.yaml would suppress);
- missed suppressions: of the address-at-fault recipients, the share not parsed `hard`;
- reason agreement: of the recipients found, the share with the expected reason.
`--list` names each disagreement. Works on any directory laid out like the corpus,
so an independent set can be measured the same way.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gateway.bounces import parse_bytes

ROOT = Path(__file__).resolve().parents[1]


def _ratio(a: int, b: int) -> str:
    return f"{a / b:.4f} ({a}/{b})" if b else "n/a (0/0)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=ROOT / "tests" / "data" / "bounces")
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args()
    det_tp = det_fn = det_fp = 0
    rc_tp = rc_fn = rc_fp = 0
    not_fault = wrongful = at_fault = missed = same_reason = matched = 0
    notes: list[str] = []
    samples = sorted(args.dir.glob("*.eml"))
    for sample in samples:
        expected = json.loads(sample.with_suffix(".json").read_text(encoding="utf-8"))
        got = parse_bytes(sample.read_bytes())
        want_bounce, is_bounce = bool(expected["bounce"]), got.is_bounce
        det_tp += want_bounce and is_bounce
        det_fn += want_bounce and not is_bounce
        det_fp += is_bounce and not want_bounce
        if want_bounce != is_bounce:
            notes.append(f"{sample.name}: bounce expected {want_bounce}, got {is_bounce}")
        want = {r["address"].lower(): r for r in expected["recipients"]
                if r["kind"] in ("hard", "soft")}
        have = {r.address.lower(): r for r in got.recipients if r.kind.value in ("hard", "soft")}
        rc_tp += len(want.keys() & have.keys())
        rc_fn += len(want.keys() - have.keys())
        rc_fp += len(have.keys() - want.keys())
        for address, w in want.items():
            h = have.get(address)
            if w["kind"] == "hard":
                at_fault += 1
                missed += h is None or h.kind.value != "hard"
            else:
                not_fault += 1
                wrongful += h is not None and h.kind.value == "hard"
            if h is not None:
                matched += 1
                same_reason += h.reason == w["reason"]
                if h.reason != w["reason"] or h.kind.value != w["kind"]:
                    notes.append(f"{sample.name}: {address} expected {w['kind']}/{w['reason']},"
                                 f" got {h.kind.value}/{h.reason}")
            else:
                notes.append(f"{sample.name}: {address} not found")
    print(f"corpus: {len(samples)} messages in {args.dir}")
    print(f"detection recall     {_ratio(det_tp, det_tp + det_fn)}")
    print(f"detection precision  {_ratio(det_tp, det_tp + det_fp)}")
    print(f"recipient recall     {_ratio(rc_tp, rc_tp + rc_fn)}")
    print(f"recipient precision  {_ratio(rc_tp, rc_tp + rc_fp)}")
    print(f"wrongful suppression {_ratio(wrongful, not_fault)} of not-the-address's-fault")
    print(f"missed suppression   {_ratio(missed, at_fault)} of address-at-fault")
    print(f"reason agreement     {_ratio(same_reason, matched)}")
    if args.list:
        print("\n".join(notes) or "no disagreement")


if __name__ == "__main__":
    main()
