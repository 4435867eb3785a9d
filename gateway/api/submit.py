"""One API message through exactly the path an SMTP client's message takes
(Postfix: what smtpd(8) does between MAIL FROM and the final dot).

MAIL: the Acceptor's sender check. RCPT: the Acceptor's check for each
recipient in turn (syntax, then the policies: suppression, rate limits), so a
refused recipient gets the reply SMTP would give it. DATA: the Acceptor's
data path (idempotency, the policies at DATA: category, scoped suppression,
consent; then DKIM and the spool's fsync). Nothing here decides what SMTP
would decide differently; this module only translates.

What the message carries beyond its content travels as SMTP's would: the
idempotency key as the configured `Idempotency-Key:` field, the category as
the consent header field (gateway.policy.consent strips it again), the key's
name as the authenticated user (rate limits, idempotency scope), the metadata
as message tags (`:meta:<key>`, shown by the trace) beside `:api_key`.

The HTTP status of an answer follows the SMTP reply: 2xx → 202; 4xx → 429 for
a rate limit (x.7.x), else 503, with Retry-After: try again, as an SMTP client
retries after a 4xx; 5xx → 422 with the reply's enhanced code.

Security: handles what API clients sent, as gateway.api.request checked it; the
Acceptor checks the addresses again as it does for SMTP, and the message is built
by gateway.api.mime, which refuses line breaks in header values.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace

from gateway.api.mime import BuildError, build_message
from gateway.api.request import MessageRequest
from gateway.intake.accept import Acceptor, DataResult, SessionInfo, Transaction
from gateway.model import Client, Envelope, Reply

__all__ = ["API_KEY_TAG", "META_TAG", "RETRY_AFTER", "Fields", "Outcome", "Submitter",
           "http_status"]

API_KEY_TAG = ":api_key"  # a tag name no header field can have (like ":category")
META_TAG = ":meta:"
RETRY_AFTER = "30"  # seconds: about a first SMTP retry of a queue manager
_THREAD_THRESHOLD = 1024 * 1024  # build large messages off the event loop


@dataclass(frozen=True)
class Outcome:
    """The answer for one message: the final reply, the refused recipients."""

    reply: Reply
    refused: tuple[tuple[str, Reply], ...] = ()  # at RCPT, or dropped at DATA
    queue_id: str | None = None
    message_id: str | None = None

    @property
    def status(self) -> int:
        return http_status(self.reply)


def http_status(reply: Reply) -> int:
    if reply.is_success:
        return 202
    if reply.is_transient:
        return 429 if reply.enhanced.startswith("4.7.") else 503
    return 422


@dataclass(frozen=True)
class Fields:
    """Header field names the gateway's settings give (read per message: a reload may
    change them)."""

    idempotency: str | None  # None: idempotency is off
    category: str | None  # None: no policies, so no category header


class Submitter:
    def __init__(self, acceptor: Acceptor) -> None:
        self._acceptor = acceptor

    async def submit(self, request: MessageRequest, client: Client, fields: Fields,
                     now: float) -> Outcome:
        acceptor = self._acceptor
        session = SessionInfo(client, may_relay=True)
        smtputf8 = request.smtputf8
        reply = await acceptor.mail(session, request.sender, smtputf8=smtputf8)
        if not reply.is_success:
            return Outcome(reply)
        transaction = Transaction(session, request.sender, smtputf8)
        refused = []
        for rcpt in request.recipients:
            answer = await acceptor.rcpt(transaction, rcpt)
            if answer.is_success:
                transaction = replace(transaction,
                                      recipients=(*transaction.recipients, rcpt))
            else:
                refused.append((rcpt, answer))
        if not transaction.recipients:
            # SMTP's DATA would get 554 5.5.1 "no valid recipients"; the first refusal
            # says more (a transient one first: the client should retry then).
            first = min(refused, key=lambda item: not item[1].is_transient)[1]
            return Outcome(first, tuple(refused))
        try:
            content = await _build(request, fields)
        except BuildError as exc:
            return Outcome(Reply(554, "5.6.0", str(exc)), tuple(refused))
        envelope = Envelope(mail_from=request.sender, recipients=transaction.recipients,
                            client=client, received_at=now, smtputf8=smtputf8,
                            tags=_tags(request, client))
        result: DataResult = await acceptor.submit(envelope, content)
        return Outcome(result.reply, (*refused, *result.dropped), result.queue_id,
                       result.message_id)


async def _build(request: MessageRequest, fields: Fields) -> bytes:
    extra = []
    if request.idempotency_key is not None and fields.idempotency is not None:
        extra.append((fields.idempotency, request.idempotency_key))
    if request.category is not None and fields.category is not None:
        extra.append((fields.category, request.category))
    spec = replace(request.spec, headers=(*request.spec.headers, *extra))
    size = sum(len(a.content) for a in spec.attachments) + len(spec.html or "")
    if size > _THREAD_THRESHOLD:
        return await asyncio.to_thread(build_message, spec)
    return build_message(spec)


def _tags(request: MessageRequest, client: Client) -> tuple[tuple[str, str], ...]:
    return ((API_KEY_TAG, client.auth_user or ""),
            *((META_TAG + k, v) for k, v in request.metadata))
