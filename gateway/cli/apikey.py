"""`smtp-gateway apikey create|list|revoke`: the HTTP API's keys (gateway.api.keys);
Postfix's counterpart is saslpasswd2(8) on the SASL password database.

    apikey create NAME --domain D [--domain D2] [--scope send|send+read] [--rate 600/m]
                        prints the key once; the file keeps only its scrypt hash
    apikey list         id, name, scope, sender domains, rate, created, revoked
    apikey revoke NAME|ID
                        refused from the next request on (the gateway re-reads the file)

The file is `api.keys_file` of the configuration (default api_keys.yaml beside
config.yaml), written atomically with mode 0600.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from gateway.api.keys import SCOPES, load_keys, make_key, write_keys
from gateway.config import load_config
from gateway.errors import ConfigError, ConfigProblem

__all__ = ["add_parsers"]


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser],
) -> None:
    a = sub.add_parser("apikey", help="keys of the HTTP submission API: create, list, revoke")
    asub = a.add_subparsers(metavar="ACTION")
    c = with_config(asub.add_parser("create", help="make a key (printed once)"))
    c.add_argument("name", help="the key's name: events' actor, rate-limit auth_user")
    c.add_argument("--domain", action="append", required=True, dest="domains",
                   help="a sender domain the key may use (repeat; '*' for any)")
    c.add_argument("--scope", choices=SCOPES, default="send")
    c.add_argument("--rate", help="the key's own limit, e.g. 600/m (per gateway process)")
    c.set_defaults(func=_create)
    with_config(asub.add_parser("list", help="list the keys")).set_defaults(func=_list)
    r = with_config(asub.add_parser("revoke", help="refuse a key from now on"))
    r.add_argument("key", help="the key's name or id")
    r.set_defaults(func=_revoke)


def _keys_file(args: argparse.Namespace) -> Path:
    config = load_config(Path(args.config), read_keys=False)
    if config.api is None:
        raise ConfigError([ConfigProblem(str(config.path), 0, 0,
                                         "the configuration has no 'api:' section")])
    return config.api.keys_file


def _create(args: argparse.Namespace) -> int:
    path = _keys_file(args)
    keys = load_keys(path)
    if any(k.name == args.name and not k.revoked for k in keys):
        print(f"a key named '{args.name}' exists: revoke it first or choose another name")
        return 1
    try:
        new = make_key(args.name, args.scope, tuple(args.domains), args.rate, time.time())
    except ValueError as exc:
        print(exc)
        return 1
    write_keys(path, (*keys, new.key))
    print(f"created key '{new.key.name}' (id {new.key.id}, scope {new.key.scope}) in {path}")
    print("the key (shown only now; the file keeps its hash):")
    print(new.secret)
    return 0


def _list(args: argparse.Namespace) -> int:
    keys = load_keys(_keys_file(args))
    rows = [("ID", "NAME", "SCOPE", "SENDER DOMAINS", "RATE", "CREATED", "REVOKED")]
    rows += [(k.id, k.name, k.scope, ",".join(k.sender_domains), k.rate or "-", k.created,
              k.revoked or "-") for k in keys]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def _revoke(args: argparse.Namespace) -> int:
    path = _keys_file(args)
    keys = load_keys(path)
    hits = [k for k in keys if args.key in (k.id, k.name) and not k.revoked]
    if not hits:
        print(f"no active key named or with id '{args.key}'")
        return 1
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    write_keys(path, tuple(replace(k, revoked=now) if k in hits else k for k in keys))
    for k in hits:
        print(f"revoked key '{k.name}' (id {k.id})")
    return 0
