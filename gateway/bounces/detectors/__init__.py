"""One module per bounce format; `gateway.bounces.classify.DETECTORS` orders them."""

from gateway.bounces.detectors.arf import Arf
from gateway.bounces.detectors.autoreply import AutoReply
from gateway.bounces.detectors.base import Detector
from gateway.bounces.detectors.dsn import Dsn
from gateway.bounces.detectors.exchange import Exchange
from gateway.bounces.detectors.exim import Exim
from gateway.bounces.detectors.generic import Generic
from gateway.bounces.detectors.gmail import Gmail
from gateway.bounces.detectors.postfix import Postfix
from gateway.bounces.detectors.qmail import Qmail
from gateway.bounces.detectors.sendmail import Sendmail
from gateway.bounces.detectors.ses import Ses
from gateway.bounces.detectors.yahoo import Yahoo

__all__ = [
    "Arf",
    "AutoReply",
    "Detector",
    "Dsn",
    "Exchange",
    "Exim",
    "Generic",
    "Gmail",
    "Postfix",
    "Qmail",
    "Sendmail",
    "Ses",
    "Yahoo",
]
