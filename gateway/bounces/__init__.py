"""Bounces: parse returned mail, classify replies, encode/verify VERP return paths.

Postfix counterpart: none (Postfix only sends bounces); Mailman's bounce
runner and flufl.bounce, KumoMTA's `bounce-classify`. Parsing only: what to
do about a bounce (suppression) is the policy stage's job.
"""

from gateway.bounces.classify import (
    DETECTORS,
    ReplyClass,
    ReplyKind,
    classify_reply,
    parse,
    parse_bytes,
)
from gateway.bounces.report import BounceRecipient, BounceReport, Kind
from gateway.bounces.verp import VerpCodec, VerpError, VerpRef

__all__ = [
    "DETECTORS",
    "BounceRecipient",
    "BounceReport",
    "Kind",
    "ReplyClass",
    "ReplyKind",
    "VerpCodec",
    "VerpError",
    "VerpRef",
    "classify_reply",
    "parse",
    "parse_bytes",
]
