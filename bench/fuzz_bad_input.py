"""The long run of tests/unit/test_fuzz_bad_input.py: bad files and command lines by the
hundred thousand, counting tracebacks and hangs instead of stopping at the first.

    python -m bench.fuzz_bad_input GROUP [--examples N] [--out FILE]

GROUP is one of: config (config.yaml), policies (the four policy files, each fuzzed
in every check), keys (the ten key and secret files, each fuzzed in every check), cli
(argument lists for every verb). Generation and checks are the unit test's
(tests/fixtures/bad_input.py); shrinking is off, so a run's time is its checks'.
Every 1,000 checks a JSON line goes to stdout and FILE (the last one is the result if
the run is cut short): checks, refused/accepted (answers), tracebacks, hangs, the first
few tracebacks' texts, seconds so far. Run it niced: `nice -n 19 python -m …`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.fixtures.bad_input import (
    KEY_KINDS,
    POLICY_FILES,
    Hang,
    Workspace,
    argv_lists,
    contained,
    file_contents,
    key_contents,
    run_cli,
    validate,
)

GROUPS = ("config", "policies", "keys", "cli")


class Tally:
    def __init__(self, group: str, out: Path | None) -> None:
        self.group, self.out = group, out
        self.counts = {"checks": 0, "refused": 0, "accepted": 0, "tracebacks": 0, "hangs": 0}
        self.samples: list[str] = []
        self.started = time.monotonic()

    def record(self, outcome: str, detail: str = "") -> None:
        self.counts["checks"] += 1
        self.counts[outcome] += 1
        if detail and len(self.samples) < 5:
            self.samples.append(detail[-1500:])
        if self.counts["checks"] % 1000 == 0:
            self.report()

    def report(self) -> None:
        line = json.dumps({"group": self.group, **self.counts,
                           "seconds": round(time.monotonic() - self.started, 1),
                           "samples": self.samples})
        print(line, flush=True)
        if self.out is not None:
            with open(self.out, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")


def _guard(tally: Tally, call: Any) -> None:
    try:
        outcome = call()
    except Hang:
        tally.record("hangs", traceback.format_exc())
        return
    except Exception:  # counted, not raised: the run goes on
        tally.record("tracebacks", traceback.format_exc())
        return
    tally.record(outcome)


def run(group: str, examples: int, out: Path | None) -> Tally:
    tally = Tally(group, out)
    root = Path(tempfile.mkdtemp(prefix="fuzz-bad-input-"))
    ws = Workspace(root)
    config = settings(max_examples=examples, deadline=None, database=None,
                      phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    if group == "cli":
        os.chdir(root)
        broken = root / "broken.yaml"
        broken.write_bytes(b"listeners: {a: 1}\n\xff")
        good = str(ws.configs["consent.yaml"])  # small, SQLite: no network for verbs
        empty = root / "empty.yaml"  # a config of defaults only: it loads
        empty.write_text("")
        paths = [good, str(broken), str(ws.configs["config.yaml"].parent), "/nonexistent/x",
                 str(empty), str(root / "new-file")]

        @config
        @given(argv=argv_lists(paths))
        def cli(argv: list[str]) -> None:
            argv = contained(argv, str(broken))

            def call() -> str:
                return "accepted" if run_cli(argv) == 0 else "refused"

            _guard(tally, call)
            (root / "new-file").unlink(missing_ok=True)

        cli()
    else:
        kinds: tuple[str, ...] = {"config": ("config.yaml",), "policies": POLICY_FILES,
                                  "keys": tuple(KEY_KINDS)}[group]
        strategies = {k: (key_contents() if k in KEY_KINDS else
                          file_contents(ws.shipped[k]).map(lambda b: (b, 0o644)))
                      for k in kinds}

        @config
        @given(files=st.fixed_dictionaries(strategies))
        def files(files: dict[str, tuple[bytes, int]]) -> None:
            def call() -> str:
                path = None
                for kind, (data, mode) in files.items():
                    path = ws.write(kind, data, mode)
                assert path is not None
                return "refused" if validate(path) is not None else "accepted"

            try:
                _guard(tally, call)
            finally:
                for kind in files:
                    ws.restore(kind)

        files()
    tally.report()
    return tally


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("group", choices=GROUPS)
    p.add_argument("--examples", type=int, default=100_000)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    tally = run(args.group, args.examples, args.out)
    return 1 if tally.counts["tracebacks"] or tally.counts["hangs"] else 0


if __name__ == "__main__":
    sys.exit(main())
