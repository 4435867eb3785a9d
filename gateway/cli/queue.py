"""`smtp-gateway queue list|show|retry|hold|release|delete` (Postfix's postqueue(1) and
postsuper(1)): a thin layer over gateway.scheduler.queue_admin, which works on the spool
directly: a state change is a rename, which the running gateway notices.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from gateway.config import Config, load_config

__all__ = ["add_parsers"]


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser],
) -> None:
    q = sub.add_parser("queue", help="inspect and change the queue")
    qsub = q.add_subparsers(metavar="ACTION")
    ql = with_config(qsub.add_parser("list", help="list queued messages"))
    ql.add_argument("--state", choices=["incoming", "active", "deferred", "hold", "corrupt"])
    ql.add_argument("--route", help="only messages with a recipient on this route")
    ql.add_argument("--limit", type=int, default=1000)
    ql.add_argument("--after", default="", help="paging: list ids after this one")
    ql.add_argument("--json", action="store_true")
    ql.set_defaults(func=_queue_list)
    for action, text in (("show", "show one message"), ("retry", "try again now"),
                         ("hold", "set aside; no delivery until released"),
                         ("release", "undo hold; try again now"),
                         ("delete", "remove from the queue (recorded as an event)")):
        sp = with_config(qsub.add_parser(action, help=text))
        sp.add_argument("queue_id")
        sp.add_argument("--json", action="store_true")
        sp.set_defaults(func=_queue_action, action=action)


def _queue_list(args: argparse.Namespace) -> int:
    from gateway.scheduler.queue_admin import QueueAdmin, QueueAdminError

    config = load_config(args.config)
    try:
        rows = asyncio.run(QueueAdmin.run(config, lambda qa: qa.listing(
            state=args.state, route=args.route, limit=args.limit, after=args.after)))
    except QueueAdminError as exc:
        if args.json:
            print(json.dumps({"error": {"code": exc.code, "message": str(exc)}}))
        else:
            print(f"smtp-gateway queue list: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
        return 0
    if not rows:
        print("queue is empty" if not args.state else f"no messages in {args.state}")
        return 0
    print(f"{'QUEUE ID':<20} {'STATE':<9} {'PRIORITY':<8} {'SIZE':>8} {'ATTEMPTS':>8}"
          f"  {'ARRIVED':<19}  SENDER")
    for r in rows:
        print(f"{r.id:<20} {r.state:<9} {r.priority:<8} {r.size:>8} {r.attempts:>8}"
              f"  {_time(r.created_at):<19}  <{r.sender}>")
        for rcpt in r.recipients:
            print(f"{'':<20}   {rcpt['state']:<9} {rcpt['address']}"
                  + (f"  ({rcpt['last_reply']})" if rcpt.get("last_reply") else ""))
    return 0


def _queue_action(args: argparse.Namespace) -> int:
    from gateway.scheduler.queue_admin import QueueAdmin, QueueAdminError

    config: Config = load_config(args.config)
    action = args.action
    try:
        result: Any = asyncio.run(QueueAdmin.run(
            config, lambda qa: getattr(qa, action)(args.queue_id)))
    except QueueAdminError as exc:
        if args.json:
            print(json.dumps({"error": {"code": exc.code, "message": str(exc)}}))
        else:
            print(f"smtp-gateway queue {action}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result if isinstance(result, dict) else {"ok": True, "result": result},
                         indent=2, default=str))
    elif action == "show":
        _print_show(result)
    else:
        print(result)
    return 0


def _print_show(info: dict[str, Any]) -> None:
    print(f"queue id:   {info['id']}\nstate:      {info['state']}\n"
          f"from:       <{info['mail_from']}>\nmessage-id: {info['message_id']}\n"
          f"arrived:    {_time(info['received_at'])}\nsize:       {info['size']}\n"
          f"attempts:   {info['attempts']}\nnext try:   {_time(info['next_attempt_at'])}")
    print("recipients:")
    for r in info["recipients"]:
        print(f"  {r['state']:<9} {r['address']}"
              + (f"  route={r['route']}" if r.get("route") else "")
              + (f"  ({r['last_reply']})" if r.get("last_reply") else ""))
    print("events:")
    for e in info["events"]:
        print(f"  {_time(e['time'])} {e['type']:<9} {e['recipient'] or '':<30}"
              f" {e['host'] or ''} {e['reply'] or ''} {e['detail'] or ''}".rstrip())


def _time(ts: float | None) -> str:
    if not ts:
        return "-"
    import datetime

    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")
