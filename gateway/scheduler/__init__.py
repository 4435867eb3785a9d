"""Scheduling: which message is tried when (qmgr), the retry schedule (retry), priority
lanes (lanes, settings) and operator actions on the queue (queue_admin).

Postfix counterpart: qmgr(8), and postsuper(1) for queue_admin.
"""
