"""`python -m gateway` runs the `smtp-gateway` command line."""

from gateway.cli import main

raise SystemExit(main())
