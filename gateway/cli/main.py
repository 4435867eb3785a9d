"""The `smtp-gateway` command line (Postfix's postfix(1), postqueue(1), postsuper(1)).

This module builds the parser and dispatches; each verb group is a module of
gateway.cli beside it.

    serve -c CONFIG            run the gateway
    check-config -c CONFIG     validate; print file:line:col: problem; exit 1 on errors
    queue list|show|retry|hold|release|delete   (--json for scripts)
    passwd [USER]              make a password hash for SMTP AUTH
    keygen FILE                make a key or secret file (random, hex, mode 0600)
    apikey create|list|revoke  keys of the HTTP submission API (hashed in api.keys_file)
    dkim keygen|list|check     DKIM keys: make one, list them, compare DNS with them
    suppress add|remove|list|import|export   the suppression list (gateway.cli.policy)
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
import sys
from collections.abc import Sequence

from gateway.cli import apikey, bounce, db, dkim, erase, keygen, passwd, policy, queue, serve
from gateway.cli.common import with_config
from gateway.errors import ConfigError, StateUnavailable

__all__ = ["main"]

# In the order `smtp-gateway --help` lists them.
_VERB_GROUPS = (serve, queue, passwd, keygen, apikey, dkim, policy, db, bounce, erase)


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
    except OSError as exc:
        # A file a verb reads or writes (an export, an import, the spool): one line.
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"smtp-gateway: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="smtp-gateway", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(metavar="COMMAND")
    for group in _VERB_GROUPS:
        group.add_parsers(sub, with_config)
    return p
