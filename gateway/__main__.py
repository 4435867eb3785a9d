"""`python -m gateway` runs the `smtp-gateway` command line."""

import signal
import sys

if sys.argv[1:2] == ["intake-worker"]:
    # The master forwards SIGHUP to its workers; one that arrives while a worker is
    # still importing would kill it (the default action). Noted here, before any
    # import, and applied once the worker's own handler is in place.
    from gateway.core import early_signals

    signal.signal(signal.SIGHUP, early_signals.note_hup)

from gateway.cli import main  # after the handler, on purpose

raise SystemExit(main())
