"""`smtp-gateway suppress …` and `smtp-gateway consent …`: the state-store side of policy.

    suppress add TARGET [--reason R] [--scope S] [--expires WHEN | --ttl DURATION] [--note T]
    suppress remove TARGET [--scope S]
    suppress list [--json] | export [-o FILE] | import FILE
    consent grant|withdraw ADDRESS --category C [--method M] [--source T]
    consent show ADDRESS [--json] | import FILE

TARGET is an address or "@domain". Every change is written with an audit row
(actor: --by, default "cli:<login>") in the same transaction. The running
gateway sees changes at once (it queries the store per message).

CSV formats (a header row is required; export writes what import reads):
    suppressions: target,scope,reason,created,added_by,expires,note
    consent:      address,category,status,time,method,source   (status granted|withdrawn)
Times are ISO 8601 (UTC when no offset is given); empty `expires` is "never".

Security: reads operator-supplied CSV files; every row is validated and a bad
row stops the import before anything is written (line number in the error).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import getpass
import io
import json
import sys
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.config import Config, load_config
from gateway.core.yamlnodes import parse_duration
from gateway.errors import ConfigError, ConfigProblem
from gateway.model import CONSENT_PURPOSES, ConsentRecord, Suppression, SuppressionReason
from gateway.policy.addresses import normalize_address, normalize_target
from gateway.policy.rules_file import ConsentSettings, PolicySet, load_policies
from gateway.state.store import StateStore, open_state
from gateway.state.suppressions import SUPPRESSION_FIELDS, write_suppression_csv

__all__ = ["SUPPRESSION_FIELDS", "add_parsers", "read_consent_csv",
           "read_suppression_csv", "write_suppression_csv"]

CONSENT_FIELDS = ("address", "category", "status", "time", "method", "source")
_METHODS = ("explicit", "implicit", "imported")

def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser],
) -> None:
    s = sub.add_parser("suppress", help="the suppression list in the state store")
    ssub = s.add_subparsers(metavar="ACTION")
    sa = _with_actor(with_config(ssub.add_parser("add", help="suppress an address or @domain")))
    sa.add_argument("target", help="address, or @domain for a whole domain")
    sa.add_argument("--reason", default="manual", choices=[r.value for r in SuppressionReason])
    sa.add_argument("--scope", default="all", help="all, or a category (e.g. marketing)")
    sa.add_argument("--expires", help="ISO date/time when the entry lapses")
    sa.add_argument("--ttl", help="or: a duration from now (e.g. 7d)")
    sa.add_argument("--note", default="")
    sa.set_defaults(func=_sync(_suppress_add))
    sr = _with_actor(with_config(ssub.add_parser("remove", help="lift a suppression")))
    sr.add_argument("target")
    sr.add_argument("--scope", help="only this scope (default: every scope)")
    sr.set_defaults(func=_sync(_suppress_remove))
    sl = with_config(ssub.add_parser("list", help="every dynamic entry"))
    sl.add_argument("--json", action="store_true")
    sl.set_defaults(func=_sync(_suppress_list))
    se = with_config(ssub.add_parser("export", help="CSV of every dynamic entry"))
    se.add_argument("-o", "--output", help="file (default: stdout)")
    se.set_defaults(func=_sync(_suppress_export))
    si = _with_actor(with_config(ssub.add_parser("import", help="add entries from a CSV file")))
    si.add_argument("file")
    si.set_defaults(func=_sync(_suppress_import))

    c = sub.add_parser("consent", help="consent records in the state store")
    csub = c.add_subparsers(metavar="ACTION")
    for action in ("grant", "withdraw"):
        cp = _with_actor(with_config(csub.add_parser(action, help=f"record a {action}")))
        cp.add_argument("address")
        cp.add_argument("--category", required=True)
        cp.add_argument("--method", default="explicit", choices=_METHODS)
        cp.add_argument("--source", default="", help="where it was given, e.g. 'booking form'")
        cp.add_argument("--purpose", action="append", default=[], choices=CONSENT_PURPOSES,
                        help="also agreed to (repeatable): tracking = open/click tracking")
        cp.set_defaults(func=_sync(_consent_record), granted=action == "grant")
    cs = with_config(csub.add_parser("show", help="an address's consent history"))
    cs.add_argument("address")
    cs.add_argument("--json", action="store_true")
    cs.set_defaults(func=_sync(_consent_show))
    ci = _with_actor(with_config(csub.add_parser("import", help="records from a CSV file")))
    ci.add_argument("file")
    ci.set_defaults(func=_sync(_consent_import))


def _with_actor(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
    sp.add_argument("--by", help="who makes the change, for the audit log "
                    "(default: cli:<login name>)")
    return sp


def _sync(fn: Callable[[argparse.Namespace, Config, StateStore], Coroutine[Any, Any, int]]
          ) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        config = load_config(args.config, read_keys=False)

        async def go() -> int:
            state = open_state(config)
            await state.open()
            try:
                return await fn(args, config, state)
            finally:
                await state.close()

        return asyncio.run(go())
    return run


def _actor(args: argparse.Namespace) -> str:
    if args.by:
        return str(args.by)
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _policies(config: Config) -> PolicySet | None:
    return load_policies(config.policies_dir) if config.policies_dir else None


def _settings(config: Config) -> tuple[bool, ConsentSettings]:
    """(strip +tags?, consent settings) as the running policy would use them."""
    policies = _policies(config)
    if policies is None:
        return False, ConsentSettings()
    return policies.suppression.strip_plus_tags, policies.consent


def _fail(message: str) -> ConfigError:
    return ConfigError([ConfigProblem("command line", 0, 0, message)])


# -- suppressions -----------------------------------------------------------------------------


def _when(text: str) -> float:
    when = datetime.fromisoformat(text)
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def _iso(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


async def _suppress_add(args: argparse.Namespace, config: Config, state: StateStore) -> int:
    strip, consent = _settings(config)
    now = time.time()
    try:
        target = normalize_target(args.target, strip)
        expires = (_when(args.expires) if args.expires
                   else now + parse_duration(args.ttl) if args.ttl else None)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    if args.scope != "all" and args.scope not in consent.categories:
        raise _fail(f"unknown scope '{args.scope}' (all, or one of: "
                    f"{', '.join(consent.categories)})")
    entry = Suppression(target, SuppressionReason(args.reason), args.scope, now, _actor(args),
                        expires, args.note)
    await state.suppressions.add([entry], entry.added_by, now)
    print(f"suppressed {target} ({entry.reason.value}, scope {entry.scope})")
    return 0


async def _suppress_remove(args: argparse.Namespace, config: Config, state: StateStore) -> int:
    strip, _ = _settings(config)
    try:
        target = normalize_target(args.target, strip)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    count = await state.suppressions.remove(target, args.scope, _actor(args), time.time())
    print(f"removed {count} entr{'y' if count == 1 else 'ies'} for {target}")
    return 0 if count else 1


async def _suppress_list(args: argparse.Namespace, config: Config, state: StateStore) -> int:
    entries = await state.suppressions.all()
    if args.json:
        print(json.dumps([asdict(e) for e in entries], indent=2))
        return 0
    for e in entries:
        expires = f" expires={_iso(e.expires)}" if e.expires is not None else ""
        print(f"{e.target}\t{e.scope}\t{e.reason.value}\tby={e.added_by}"
              f"\tcreated={_iso(e.created)}{expires}")
    return 0


def read_suppression_csv(text: str, strip: bool, categories: Iterable[str], actor: str,
                         now: float) -> list[Suppression]:
    """Parse and validate every row; raise ValueError('line N: …') on the first bad one."""
    scopes = {"all", *categories}
    out = []
    reader = csv.DictReader(io.StringIO(text))
    missing = {"target"} - set(reader.fieldnames or ())
    if missing:
        raise ValueError("line 1: the header row needs a 'target' column")
    for row in reader:
        try:
            scope = (row.get("scope") or "all").strip()
            if scope not in scopes:
                raise ValueError(f"unknown scope '{scope}'")
            out.append(Suppression(
                target=normalize_target((row.get("target") or "").strip(), strip),
                reason=SuppressionReason((row.get("reason") or "manual").strip()),
                scope=scope,
                created=_when(row["created"]) if row.get("created") else now,
                added_by=(row.get("added_by") or actor).strip(),
                expires=_when(row["expires"]) if row.get("expires") else None,
                note=row.get("note") or "",
            ))
        except ValueError as exc:
            raise ValueError(f"line {reader.line_num}: {exc}") from None
    return out


async def _suppress_export(args: argparse.Namespace, config: Config, state: StateStore) -> int:
    entries = await state.suppressions.all()
    if args.output:
        with open(args.output, "w", encoding="utf-8", newline="") as fh:
            write_suppression_csv(entries, fh)
    else:
        write_suppression_csv(entries, sys.stdout)
    return 0


async def _suppress_import(args: argparse.Namespace, config: Config, state: StateStore) -> int:
    strip, consent = _settings(config)
    now = time.time()
    try:
        entries = read_suppression_csv(Path(args.file).read_text(encoding="utf-8"), strip,
                                       consent.categories, _actor(args), now)
    except (OSError, ValueError) as exc:
        raise _fail(f"{args.file}: {exc}") from None
    count = await state.suppressions.add(entries, _actor(args), now)
    print(f"imported {count} suppression entries")
    return 0


# -- consent ----------------------------------------------------------------------------------


def _check_category(category: str, consent: ConsentSettings) -> None:
    if category not in consent.categories:
        raise ValueError(f"unknown category '{category}' (one of: "
                         f"{', '.join(consent.categories)})")


async def _consent_record(args: argparse.Namespace, config: Config, state: StateStore) -> int:
    _, consent = _settings(config)
    try:
        _check_category(args.category, consent)
        address = normalize_target(args.address, False)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    now = time.time()
    record = ConsentRecord(address, args.category, args.granted, now, args.method, args.source,
                           tuple(dict.fromkeys(args.purpose)))
    await state.consent.record([record], _actor(args), now)
    print(f"{'granted' if args.granted else 'withdrawn'}: {address} {args.category}")
    return 0


async def _consent_show(args: argparse.Namespace, config: Config, state: StateStore) -> int:
    history = await state.consent.history(normalize_address(args.address))
    if args.json:
        print(json.dumps([asdict(r) for r in history], indent=2))
        return 0
    current: dict[str, ConsentRecord] = {}
    for r in history:
        current[r.category] = r
        print(f"{_iso(r.time)}\t{r.category}\t{'granted' if r.granted else 'withdrawn'}"
              f"\t{r.method}\t{r.source}" + (f"\t{' '.join(r.purposes)}" if r.purposes else ""))
    for category, r in sorted(current.items()):
        print(f"current: {category} {'granted' if r.granted else 'withdrawn'}")
    return 0


def read_consent_csv(text: str, consent: ConsentSettings, now: float) -> list[ConsentRecord]:
    out = []
    reader = csv.DictReader(io.StringIO(text))
    if not {"address", "category", "status"} <= set(reader.fieldnames or ()):
        raise ValueError("line 1: the header row needs address, category and status columns")
    for row in reader:
        try:
            category = (row.get("category") or "").strip()
            _check_category(category, consent)
            status = (row.get("status") or "").strip().lower()
            if status not in ("granted", "withdrawn"):
                raise ValueError(f"status '{status}' is not granted or withdrawn")
            method = (row.get("method") or "imported").strip()
            if method not in _METHODS:
                raise ValueError(f"method '{method}' is not one of {', '.join(_METHODS)}")
            out.append(ConsentRecord(
                address=normalize_target((row.get("address") or "").strip(), False),
                category=category, granted=status == "granted",
                time=_when(row["time"]) if row.get("time") else now,
                method=method, source=row.get("source") or "",
            ))
        except ValueError as exc:
            raise ValueError(f"line {reader.line_num}: {exc}") from None
    return out


async def _consent_import(args: argparse.Namespace, config: Config, state: StateStore) -> int:
    _, consent = _settings(config)
    now = time.time()
    try:
        records = read_consent_csv(Path(args.file).read_text(encoding="utf-8"), consent, now)
    except (OSError, ValueError) as exc:
        raise _fail(f"{args.file}: {exc}") from None
    count = await state.consent.record(records, _actor(args), now)
    print(f"imported {count} consent records")
    return 0
