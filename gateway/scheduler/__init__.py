"""Scheduling: which message is tried when (qmgr) and the retry schedule (retry)."""

from gateway.scheduler.qmgr import Scheduler
from gateway.scheduler.retry import next_attempt_at

__all__ = ["Scheduler", "next_attempt_at"]
