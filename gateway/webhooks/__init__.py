"""Webhooks: delivery events POSTed as signed JSON batches to the apps' URLs.

    settings.py    the `webhooks:` section of config.yaml → WebhookConfig
    outbox.py      the events table read from a persisted cursor per webhook
    dispatcher.py  one sender per webhook: batch, sign, POST, retry with backoff
    signature.py   HMAC-SHA256 over timestamp + "." + body; verify() for receivers
"""

from __future__ import annotations

from gateway.webhooks.dispatcher import RESULTS, WebhookDispatcher, batch_body, event_json
from gateway.webhooks.outbox import Outbox, OutboxEvent
from gateway.webhooks.settings import EVENT_NAMES, WebhookConfig, parse_webhooks
from gateway.webhooks.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign, verify

__all__ = ["EVENT_NAMES", "RESULTS", "SIGNATURE_HEADER", "TIMESTAMP_HEADER", "Outbox",
           "OutboxEvent", "WebhookConfig", "WebhookDispatcher", "batch_body", "event_json",
           "parse_webhooks", "sign", "verify"]
