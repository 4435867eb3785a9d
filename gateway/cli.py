"""The `smtp-gateway` command line (Postfix's postfix(1), postqueue(1), postsuper(1)).

    serve -c CONFIG            run the gateway
    check-config -c CONFIG     validate; print file:line:col: problem; exit 1 on errors
    queue list|show|retry|hold|release|delete   (--json for scripts)
    passwd [USER]              make a password hash for SMTP AUTH
    dkim keygen|list|check     DKIM keys: make one, list them, compare DNS with them
    suppress add|remove|list|import|export   the suppression list (gateway.policy_cli)
    consent grant|withdraw|show|import       consent records
    bounce parse|ingest        classify returned mail (DSN, ARF, MTA texts, auto-replies)
    db migrate|status          state store schema versions (SQLite or PostgreSQL)
    erase ADDRESS              remove an address from events, consent, audit (GDPR); its
                               suppressions stay in force under a keyed hash

Queue commands work on the spool directly, like postsuper: a state change is
a rename, which the running gateway notices (it trusts the directory).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from gateway.config import Config, load_config
from gateway.db_cli import add_db_parsers
from gateway.errors import ConfigError, StateUnavailable
from gateway.passwords import hash_password
from gateway.policy.rules_file import load_policies
from gateway.policy_cli import add_policy_parsers
from gateway.retention import ErasureReport, erase_address
from gateway.state import open_state

__all__ = ["main"]

DEFAULT_CONFIG = os.environ.get("SMTP_GATEWAY_CONFIG", "config.yaml")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not hasattr(args, "func"):
        _parser().print_help()
        return 2
    try:
        return int(args.func(args))
    except (ConfigError, StateUnavailable) as exc:
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
    # Started by `serve` for intake_workers > 1; not for people to run.
    w = with_config(sub.add_parser("intake-worker"))
    w.add_argument("--ports", default="", help="listener=port,... as bound by the master")
    w.set_defaults(func=_intake_worker)
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
    _dkim_parser(sub, with_config)
    add_policy_parsers(sub, with_config)
    add_db_parsers(sub, with_config)
    _bounce_parser(sub)
    er = with_config(sub.add_parser(
        "erase", help="remove an address from events, consent and audit (GDPR erasure); "
        "its suppressions stay in force under a keyed hash"))
    er.add_argument("address")
    er.add_argument("--by", help="who asks, for the audit log (default: cli:<login name>)")
    er.add_argument("--json", action="store_true")
    er.set_defaults(func=_erase)
    return p


def _dkim_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser],
) -> None:
    d = sub.add_parser("dkim", help="DKIM signing keys")
    dsub = d.add_subparsers(metavar="ACTION")
    kg = with_config(dsub.add_parser(
        "keygen", help="make a private key where the config expects it; print the DNS record"))
    kg.add_argument("--domain", required=True)
    kg.add_argument("--selector", required=True)
    kg.add_argument("--algo", choices=["rsa", "ed25519"],
                    help="default: the configured algorithm, else rsa (2048 bits)")
    kg.add_argument("--bits", type=int, default=2048, choices=[1024, 2048, 3072, 4096],
                    help="RSA key size")
    kg.add_argument("--force", action="store_true", help="replace an existing key file")
    kg.set_defaults(func=_dkim_keygen)
    dl = with_config(dsub.add_parser("list", help="domains, selectors, algorithms, active"))
    dl.add_argument("--json", action="store_true")
    dl.set_defaults(func=_dkim_list)
    dc = with_config(dsub.add_parser(
        "check", help="compare the published DNS records with the private keys"))
    dc.add_argument("--domain", required=True)
    dc.add_argument("--selector", help="only this selector (default: all of the domain's)")
    dc.add_argument("--nameserver", action="append", default=[],
                    help="ask this server (repeatable; default: delivery.dns)")
    dc.add_argument("--port", type=int, help="DNS port (default: delivery.dns.port)")
    dc.add_argument("--json", action="store_true")
    dc.set_defaults(func=_dkim_check)


def _bounce_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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


# -- serve / check-config ---------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    from gateway.supervisor import serve

    _setup_logging(load_config(args.config))
    return _run(serve(Path(args.config)))


def _intake_worker(args: argparse.Namespace) -> int:
    from gateway.intake.worker import parse_ports, run_worker

    _setup_logging(load_config(args.config))
    return _run(run_worker(Path(args.config), parse_ports(args.ports)))


def _setup_logging(config: Config) -> None:
    from gateway.event_log import setup_logging

    setup_logging(config.log_level, config.logging, config.data_dir, config.node_name)


def _run(main: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop  # optional: a faster event loop when installed
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def _check_config(args: argparse.Namespace) -> int:
    config = load_config(args.config)  # raises ConfigError → main() prints, exit 1
    print(f"{config.path}: ok ({len(config.listeners)} listeners, {len(config.routes)} routes)")
    policies = load_policies(config.policies_dir) if config.policies_dir else None
    if policies is None:
        print(f"{config.policies_dir}: no policy files (policies off)")
    else:
        print(f"{config.policies_dir}: ok ({', '.join(policies.files)})")
    return 0


# -- queue ------------------------------------------------------------------------------------


def _queue_list(args: argparse.Namespace) -> int:
    from gateway.queue_admin import QueueAdmin

    config = load_config(args.config)
    rows = asyncio.run(QueueAdmin.run(config, lambda qa: qa.listing(
        state=args.state, route=args.route, limit=args.limit, after=args.after)))
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


# -- dkim -------------------------------------------------------------------------------------


def _dkim_keygen(args: argparse.Namespace) -> int:
    from gateway import dkim_keys

    config = load_config(args.config, read_keys=False)  # the key may not exist yet
    try:
        made = dkim_keys.keygen(config.dkim, args.domain, args.selector, args.algo,
                                bits=args.bits, overwrite=args.force)
    except (ValueError, OSError) as exc:
        print(f"smtp-gateway dkim keygen: {exc}", file=sys.stderr)
        return 1
    domain, key = dkim_keys.normalize_domain(args.domain), made.key
    print(f"wrote {made.path} ({key.algorithm}, {key.bits} bits, mode 0600, "
          f"sha256:{key.fingerprint})", file=sys.stderr)
    if not made.configured:
        print(f"add it to {config.path} under dkim.domains:\n  {domain}:\n"
              f"    - selector: {args.selector}\n      algorithm: {key.algorithm}\n"
              f"      active: true", file=sys.stderr)
    print(f"publish this TXT record, then run: smtp-gateway dkim check --domain {domain} "
          f"--selector {args.selector}", file=sys.stderr)
    print(made.record)
    return 0


def _dkim_list(args: argparse.Namespace) -> int:
    from gateway.dkim_keys import list_keys

    config = load_config(args.config, read_keys=False)  # list reports on the key files
    dkim, rows = config.dkim, list_keys(config.dkim)
    code = 0 if all(r.state == "ok" for r in rows) else 1  # 1: a key file needs attention
    if args.json:
        print(json.dumps({
            "signing": dkim.signing, "fallback": dkim.fallback,
            "default_domain": dkim.default_domain, "dual_sign": dkim.dual_sign,
            "domain_map": dict(dkim.domain_map),
            "keys": [dict(asdict(r), key_file=str(r.key_file)) for r in rows],
        }, indent=2))
        return code
    state = "on" if dkim.signing else ("off (enabled: false)" if dkim.keys else "off (no keys)")
    default = f" (default domain {dkim.default_domain})" if dkim.default_domain else ""
    print(f"signing: {state}; fallback: {dkim.fallback}{default}; dual signing: "
          f"{'on' if dkim.dual_sign else 'off'}")
    for pattern, domain in dkim.domain_map:
        print(f"map: {pattern} -> {domain}")
    if rows:
        print(f"{'DOMAIN':<24} {'SELECTOR':<16} {'ALGORITHM':<9} {'STATE':<8} "
              f"{'FINGERPRINT':<16}  KEY FILE")
    for r in rows:
        print(f"{r.domain:<24} {r.selector:<16} {r.algorithm:<9} "
              f"{'active' if r.active else 'inactive':<8} {r.fingerprint or '-':<16}  "
              f"{r.key_file}" + ("" if r.state == "ok" else f"  ({r.state})"))
    return code


def _dkim_check(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from gateway.dkim_keys import RecordStatus, check_domain, normalize_domain, zone_record

    config = load_config(args.config)
    dns = config.delivery.dns
    if args.nameserver:
        dns = replace(dns, nameservers=tuple(args.nameserver))
    if args.port:
        dns = replace(dns, port=args.port)
    domain = normalize_domain(args.domain)
    results = check_domain(config.dkim, dns, domain, args.selector)
    if not results:
        which = f" with selector {args.selector}" if args.selector else ""
        print(f"smtp-gateway dkim check: no key for {domain}{which} in {config.path}",
              file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    for r in results if not args.json else ():
        state = "active" if r.active else "inactive"
        print(f"{r.status:<15} {r.name} ({r.algorithm}, {state}): {r.detail}")
        if not r.status.ok and r.status is not RecordStatus.DNS_ERROR:
            print(f"{'':<15} publish: {zone_record(r.selector, r.domain, r.expected)}")
    return 0 if all(r.status.ok for r in results) else 1


# -- bounce -----------------------------------------------------------------------------------


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


# -- erase ------------------------------------------------------------------------------------


def _erase(args: argparse.Namespace) -> int:
    config = load_config(args.config, read_keys=False)
    actor = args.by or f"cli:{getpass.getuser()}"

    async def go() -> ErasureReport:
        state = open_state(config)
        await state.open()
        try:
            return await erase_address(state, args.address, actor)
        finally:
            await state.close()

    try:
        report = asyncio.run(go())
    except ValueError as exc:
        print(f"erase: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.as_dict(), sort_keys=True))
        return 0
    print(f"erased; the address is now {report.token}")
    for table, count in sorted(report.changed.items()):
        print(f"  {table}: {count} rows")
    if not report.checkpointed:
        print("  (a database was busy: the old bytes go at its next checkpoint)")
    return 0


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
