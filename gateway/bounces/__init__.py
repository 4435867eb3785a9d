"""Bounces: parse returned mail, classify replies, VERP return paths, ingestion and
actions.

Postfix counterpart: bounce(8) for the DSNs we send (dsn.py); for the rest
Mailman's bounce runner and flufl.bounce, KumoMTA's `bounce-classify`.
Parsing and classification: classify.py, detectors/, status.py; every failure's
reason → action → kind: verdicts.py (the one verdict function). Return paths:
verp.py. Ingestion (SMTP inbox, Maildir, IMAP, files): inbox.py, maildir.py,
imap.py, files.py, all through ingest.py. What a bounce does (suppression by
policies/bounces.yaml, events): actions.py, rules.py. Wiring: service.py,
settings.py (config.yaml's `bounces:`).
"""

from gateway.bounces.classify import (
    DETECTORS,
    classify_reply,
    parse,
    parse_bytes,
)
from gateway.bounces.report import BounceRecipient, BounceReport, Kind
from gateway.bounces.verdicts import ACTIONS, Action, Reason, Verdict, verdict
from gateway.bounces.verp import VerpCodec, VerpError, VerpRef

__all__ = [
    "ACTIONS",
    "DETECTORS",
    "Action",
    "BounceRecipient",
    "BounceReport",
    "Kind",
    "Reason",
    "Verdict",
    "VerpCodec",
    "VerpError",
    "VerpRef",
    "classify_reply",
    "parse",
    "parse_bytes",
    "verdict",
]
