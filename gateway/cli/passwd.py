"""`smtp-gateway passwd [USER]`: a password hash for SMTP AUTH (gateway.intake.passwords)."""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable

from gateway.intake.passwords import hash_password

__all__ = ["add_parsers"]


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser],
) -> None:
    pw = sub.add_parser("passwd", help="hash a password for auth.users / credentials_file")
    pw.add_argument("user", nargs="?", help="print user:hash instead of the hash alone")
    pw.set_defaults(func=_passwd)


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
