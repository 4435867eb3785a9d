"""The `smtp-gateway` command line: one module per verb group — serve (and check-config),
queue, passwd, dkim, policy (suppress, consent), db, bounce, erase — each a thin layer over
the stage it drives (Postfix's postfix(1), postqueue(1), postsuper(1)). `main` builds the
parser from them and dispatches.
"""

from gateway.cli.main import main

__all__ = ["main"]
