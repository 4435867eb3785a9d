"""Webhooks: delivery events POSTed as signed JSON batches to the apps' URLs (no Postfix
counterpart; KumoMTA's log hooks).

    settings.py    the `webhooks:` section of config.yaml → WebhookConfig
    outbox.py      the events table read from a persisted cursor per webhook
    dispatcher.py  one sender per webhook: batch, sign, POST, retry with backoff
    signature.py   HMAC-SHA256 over timestamp + "." + body; verify() for receivers

Nothing is imported here: gateway.config reads settings.py, which must not pull in
the state store that the outbox uses.
"""
