"""`smtp-gateway bounce parse|ingest`: classify returned mail from files (a thin layer
over gateway.bounces; `ingest --apply` acts on it as the running gateway would).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path

from gateway.cli.common import DEFAULT_CONFIG
from gateway.config import load_config

__all__ = ["add_parsers"]


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser],
) -> None:
    b = sub.add_parser("bounce", help="parse bounces, complaints and auto-replies")
    bsub = b.add_subparsers(metavar="ACTION")
    bp = bsub.add_parser("parse", help="classify one message (.eml)")
    bp.add_argument("files", nargs="+", metavar="FILE",
                    help="a message (.eml); with several, --json prints one document per line")
    bp.add_argument("--json", action="store_true",
                    help='print {"bounce": …, "recipients": [...]}')
    bp.set_defaults(func=_bounce_parse)
    bi = bsub.add_parser("ingest", help="classify every message of .eml and mbox files; "
                                        "one JSON line per message")
    bi.add_argument("files", nargs="+", metavar="FILE")
    bi.add_argument("--apply", action="store_true",
                    help="act on them as the gateway would (events, suppression; -c CONFIG)")
    bi.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="config file (--apply)")
    bi.set_defaults(func=_bounce_ingest)


def _bounce_parse(args: argparse.Namespace) -> int:
    from gateway.bounces import parse_bytes

    for name in args.files:
        try:
            report = parse_bytes(Path(name).read_bytes())
        except OSError as exc:
            print(f"smtp-gateway bounce parse: {exc}", file=sys.stderr)
            return 1
        if args.json:
            print(json.dumps(report.to_json()))
            continue
        print(f"{name}: {report.detector or 'not a bounce'}; bounce: "
              f"{'yes' if report.is_bounce else 'no'}")
        for r in report.recipients:
            print(f"  {r.kind:<10} {r.status or '-':<7} {r.reason:<17} {r.address or '(redacted)'}"
                  + (f"  {r.diagnostic[:120]}" if r.diagnostic else ""))
    return 0


def _bounce_ingest(args: argparse.Namespace) -> int:
    from gateway import metrics
    from gateway.bounces import parse_bytes
    from gateway.bounces.mbox import messages

    if args.apply:
        return _bounce_apply(args)
    code = 0
    for name in args.files:
        try:
            for index, data in enumerate(messages(Path(name))):
                line = {"file": name, "index": index}
                try:
                    report = parse_bytes(data)
                except Exception as exc:  # one bad message must not stop the batch
                    line["error"] = f"{type(exc).__name__}: {exc}"
                    code = 1
                else:
                    line.update(report.to_json(), detector=report.detector)
                    for recipient in report.recipients:
                        metrics.record_bounce(recipient.kind.value, "file")
                print(json.dumps(line))
        except OSError as exc:
            print(f"smtp-gateway bounce ingest: {exc}", file=sys.stderr)
            code = 1
    return code


def _bounce_apply(args: argparse.Namespace) -> int:
    from gateway.bounces.files import ingest_files

    config = load_config(args.config)
    try:
        lines = asyncio.run(ingest_files(config, [Path(f) for f in args.files]))
    except OSError as exc:
        print(f"smtp-gateway bounce ingest: {exc}", file=sys.stderr)
        return 1
    for line in lines:
        print(json.dumps(line))
    return 1 if any("error" in line for line in lines) else 0
