"""`smtp-gateway keygen FILE`: a new key or secret file, in the one format every key and
secret file of the gateway accepts (gateway.core.secret_files): random bytes written
as hex digits and a newline, mode 0600, never over an existing file.

The same file serves as a key (erasure, tracking, unsubscribe, VERP) and as a text
secret (webhook secret, admin token, a password the gateway and another program
share). DKIM keys have their own verb (`dkim keygen`), API keys theirs (`apikey`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from gateway.core.secret_files import SecretFileError, write_key

__all__ = ["add_parsers"]


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser],
) -> None:
    k = sub.add_parser("keygen", help="make a key or secret file (random, hex, mode 0600)")
    k.add_argument("file", help="the file to write (must not exist)")
    k.add_argument("--bytes", type=_key_bytes, default=32, metavar="N",
                   help="random bytes in the key, 16-256 (default: 32)")
    k.set_defaults(func=_keygen)


def _key_bytes(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if not 16 <= n <= 256:
        raise argparse.ArgumentTypeError(f"{n} is not from 16 to 256")
    return n


def _keygen(args: argparse.Namespace) -> int:
    path = Path(args.file)
    try:
        write_key(path, args.bytes)
    except FileExistsError:
        print(f"smtp-gateway keygen: '{path}' exists; a new key would orphan what the old "
              "one protects (remove the file first if you mean it)", file=sys.stderr)
        return 1
    except (OSError, SecretFileError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        print(f"smtp-gateway keygen: cannot write '{path}': {why}", file=sys.stderr)
        return 1
    print(f"wrote {path} ({args.bytes} random bytes as hex, mode 0600)", file=sys.stderr)
    return 0
