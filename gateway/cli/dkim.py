"""`smtp-gateway dkim keygen|list|check`: a thin layer over gateway.signing.keytool."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import asdict

from gateway.config import load_config
from gateway.signing.keys import RecordStatus, normalize_domain, zone_record
from gateway.signing.keytool import check_domain, keygen, list_keys

__all__ = ["add_parsers"]


def add_parsers(
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


def _dkim_keygen(args: argparse.Namespace) -> int:


    config = load_config(args.config, read_keys=False)  # the key may not exist yet
    try:
        made = keygen(config.dkim, args.domain, args.selector, args.algo,
                                bits=args.bits, overwrite=args.force)
    except (ValueError, OSError) as exc:
        print(f"smtp-gateway dkim keygen: {exc}", file=sys.stderr)
        return 1
    domain, key = normalize_domain(args.domain), made.key
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


    config = load_config(args.config)
    dns = config.delivery.dns
    if args.nameserver:
        dns = replace(dns, nameservers=tuple(args.nameserver))
    if args.port:
        dns = replace(dns, port=args.port)
    try:
        domain = normalize_domain(args.domain)
    except ValueError as exc:
        print(f"smtp-gateway dkim check: {exc}", file=sys.stderr)
        return 2
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
