"""The `smtp-gateway` command line (Postfix's postfix(1), postqueue(1), postsuper(1)).

    serve -c CONFIG            run the gateway
    check-config -c CONFIG     validate; print file:line:col: problem; exit 1 on errors
    queue list|show|retry|hold|release|delete   (--json for scripts)
    passwd [USER]              make a password hash for SMTP AUTH

Queue commands work on the spool directly, like postsuper: a state change is
a rename, which the running gateway notices (it trusts the directory).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from gateway.config import Config, load_config
from gateway.errors import ConfigError
from gateway.passwords import hash_password

__all__ = ["main"]

DEFAULT_CONFIG = os.environ.get("SMTP_GATEWAY_CONFIG", "config.yaml")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not hasattr(args, "func"):
        _parser().print_help()
        return 2
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="smtp-gateway", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(metavar="COMMAND")

    def with_config(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="config file")
        return sp

    s = with_config(sub.add_parser("serve", help="run the gateway"))
    s.set_defaults(func=_serve)
    s = with_config(sub.add_parser("check-config", help="validate the configuration"))
    s.set_defaults(func=_check_config)

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

    pw = sub.add_parser("passwd", help="hash a password for auth.users / credentials_file")
    pw.add_argument("user", nargs="?", help="print user:hash instead of the hash alone")
    pw.set_defaults(func=_passwd)
    return p


# -- serve / check-config ---------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from gateway.supervisor import serve

    try:
        import uvloop  # optional: a faster event loop when installed
    except ImportError:
        return asyncio.run(serve(Path(args.config)))
    return uvloop.run(serve(Path(args.config)))


def _check_config(args: argparse.Namespace) -> int:
    config = load_config(args.config)  # raises ConfigError → main() prints, exit 1
    print(f"{config.path}: ok ({len(config.listeners)} listeners, {len(config.routes)} routes)")
    return 0


# -- queue ------------------------------------------------------------------------------------


def _queue_list(args: argparse.Namespace) -> int:
    from gateway.queue_admin import QueueAdmin

    config = load_config(args.config)
    rows = asyncio.run(QueueAdmin.run(config, lambda qa: qa.list(
        state=args.state, route=args.route, limit=args.limit, after=args.after)))
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
        return 0
    if not rows:
        print("queue is empty" if not args.state else f"no messages in {args.state}")
        return 0
    print(f"{'QUEUE ID':<20} {'STATE':<9} {'SIZE':>8} {'ATTEMPTS':>8}  {'ARRIVED':<19}  SENDER")
    for r in rows:
        print(f"{r.id:<20} {r.state:<9} {r.size:>8} {r.attempts:>8}  {_time(r.created_at):<19}"
              f"  <{r.sender}>")
        for rcpt in r.recipients:
            print(f"{'':<20}   {rcpt['state']:<9} {rcpt['address']}"
                  + (f"  ({rcpt['last_reply']})" if rcpt.get("last_reply") else ""))
    return 0


def _queue_action(args: argparse.Namespace) -> int:
    from gateway.queue_admin import QueueAdmin, QueueAdminError

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


# -- passwd -----------------------------------------------------------------------------------


def _passwd(args: argparse.Namespace) -> int:
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if password != getpass.getpass("Again: "):
            print("passwords differ", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        print("empty password refused", file=sys.stderr)
        return 1
    hashed = hash_password(password)
    print(f"{args.user}:{hashed}" if args.user else hashed)
    return 0
