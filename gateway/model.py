"""The types that flow between pipeline stages.

intake → spool:      Envelope + message bytes        → QueuedMessage
scheduler → delivery: DeliveryJob                    → Attempt (one RecipientResult each)
every stage → state: Event

aiosmtpd's Envelope never leaves gateway.intake; no untyped dict travels
between stages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, StrEnum

__all__ = [
    "CONSENT_PURPOSES",
    "Attempt",
    "BreakerSettings",
    "Client",
    "ConsentRecord",
    "DeliveryJob",
    "Envelope",
    "Event",
    "EventType",
    "Priority",
    "QueueId",
    "QueueState",
    "QueuedMessage",
    "RecipientResult",
    "RecipientState",
    "Reply",
    "RetrySchedule",
    "Route",
    "RouteMatch",
    "Secret",
    "Smarthost",
    "Suppression",
    "SuppressionReason",
]

QueueId = str


class QueueState(StrEnum):
    """Where a queue file sits; each is a directory of the spool (Postfix's queues)."""

    INCOMING = "incoming"  # durably accepted, not yet picked up by the scheduler
    ACTIVE = "active"  # being delivered right now
    DEFERRED = "deferred"  # waiting for its next attempt
    HOLD = "hold"  # put aside by an operator; never delivered until released
    CORRUPT = "corrupt"  # unreadable queue file, kept for a human


class RecipientState(StrEnum):
    QUEUED = "queued"
    DEFERRED = "deferred"
    DELIVERED = "delivered"
    BOUNCED = "bounced"
    EXPIRED = "expired"
    HELD = "held"

    @property
    def is_final(self) -> bool:
        return self in (RecipientState.DELIVERED, RecipientState.BOUNCED, RecipientState.EXPIRED)


class EventType(StrEnum):
    ACCEPTED = "accepted"
    DEFERRED = "deferred"
    DELIVERED = "delivered"
    BOUNCED = "bounced"
    EXPIRED = "expired"
    HELD = "held"
    RELEASED = "released"
    DELETED = "deleted"
    # Policy decisions (gateway.policy); the event's `detail` names the rule.
    REJECTED = "rejected"  # refused at RCPT or DATA; queue_id is "" when no message exists
    DROPPED = "dropped"  # removed at DATA (consent, scoped suppression); others delivered
    DELAYED = "delayed"  # accepted, first attempt held back by a `delay` rate limit
    # A recipient used a List-Unsubscribe link (admin API); queue_id "", detail names the
    # category.
    UNSUBSCRIBED = "unsubscribed"
    # Bounce handling (gateway.bounces): what a returned message or a delivery reply led to.
    SOFT_BOUNCED = "soft_bounced"  # a soft bounce that counts towards `soft.count`
    COMPLAINED = "complained"  # an ARF complaint about this message and recipient
    SUPPRESSED = "suppressed"  # the recipient was suppressed because of it (detail: why)
    # A final failure that is the sender's or the path's fault (our IP listed, content
    # refused, authentication, network): the recipient is NOT suppressed; detail: reason.
    SENDER_FAULT = "sender_fault"
    DSN_SENT = "dsn_sent"  # a delivery status notification was queued to the sender
    # A resubmission (same Message-ID or Idempotency-Key from the same client) answered
    # with the original queue id and not queued again (gateway.intake.idempotency).
    DUPLICATE = "duplicate"
    # Engagement (gateway.tracking), only with the recipient's consent: the open pixel was
    # fetched, a wrapped link followed. detail: "machine=yes|no why=… ip=…/24 [link=…]".
    OPENED = "opened"
    CLICKED = "clicked"


class Priority(IntEnum):
    """A message's delivery priority; lower values are served first (gateway.scheduler)."""

    CRITICAL = 0
    HIGH = 1
    NORMAL = 2
    LOW = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @staticmethod
    def parse(text: str) -> Priority:
        """'critical' → Priority.CRITICAL; ValueError for anything else."""
        try:
            return Priority[text.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown priority '{text}'") from None


class SuppressionReason(StrEnum):
    HARD_BOUNCE = "hard_bounce"
    SOFT_BOUNCE = "soft_bounce"
    COMPLAINT = "complaint"
    UNSUBSCRIBE = "unsubscribe"
    MANUAL = "manual"


@dataclass(frozen=True)
class Suppression:
    """No mail of `scope` to `target`: a normalized address, or "@domain" for a whole domain.

    `scope` is "all" or a category name (an unsubscribe from "marketing" never
    stops a booking confirmation). `expires` None: until removed.
    """

    target: str
    reason: SuppressionReason
    scope: str = "all"
    created: float = 0.0
    added_by: str = ""
    expires: float | None = None
    note: str = ""


# Purposes a consent record may carry beyond receiving the category's mail.
CONSENT_PURPOSES = ("tracking",)


@dataclass(frozen=True)
class ConsentRecord:
    """One grant or withdrawal; for an (address, category) the latest record wins."""

    address: str
    category: str
    granted: bool
    time: float
    method: str = "explicit"  # explicit | implicit | imported
    source: str = ""  # free text: where it was given (e.g. the booking site's form)
    # What else the recipient agreed to with this grant, beyond receiving the mail:
    # "tracking" lets gateway.tracking add an open pixel and click redirects.
    purposes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Secret:
    """A password or token; its repr never shows the value, so logs cannot leak it."""

    value: str = field(repr=False)

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


@dataclass(frozen=True)
class Client:
    """Who handed a message to us."""

    listener: str
    address: str
    port: int = 0
    helo: str = ""
    auth_user: str | None = None
    tls: bool = False


@dataclass(frozen=True)
class Envelope:
    mail_from: str  # "" is the null sender <>
    recipients: tuple[str, ...]
    client: Client
    received_at: float
    smtputf8: bool = False
    body_type: str = "7BIT"  # 7BIT | 8BITMIME
    message_id: str | None = None  # the Message-ID header, for lookups
    # A `delay` rate limit (gateway.policy) shaped it: no first attempt before this time.
    not_before: float | None = None
    # Decided at DATA: the policy stage's category and the priority it maps to
    # (gateway.scheduler.settings); kept in the queue file so a restart keeps them.
    category: str | None = None
    priority: Priority = Priority.NORMAL
    # RFC 8689: MAIL FROM … REQUIRETLS (deliver only over validated TLS to servers that
    # offer REQUIRETLS, else bounce), and the header `TLS-Required: No` (ignore the
    # recipient domain's MTA-STS and DANE failures; deliver opportunistically).
    requiretls: bool = False
    tls_optional: bool = False
    # (name, value) pairs intake learned for later lookups, not stored in the queue file:
    # configured correlation header fields (lower-case) for the admin API's traces.
    tags: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class QueuedMessage:
    id: QueueId
    envelope: Envelope
    size: int  # octets of message content as stored


@dataclass(frozen=True)
class Reply:
    """An SMTP reply: ours to a client, or a remote server's to us."""

    code: int
    enhanced: str  # "" when the server sent none
    text: str

    @property
    def is_success(self) -> bool:
        return 200 <= self.code < 400

    @property
    def is_transient(self) -> bool:
        return 400 <= self.code < 500

    @property
    def is_permanent(self) -> bool:
        return self.code >= 500

    def __str__(self) -> str:
        return " ".join(part for part in (str(self.code), self.enhanced, self.text) if part)


@dataclass(frozen=True)
class RetrySchedule:
    """When to try again after a temporary failure.

    `delays[i]` is the wait after attempt i+1; once they are used up, `repeat`
    is the wait between further attempts (None: give up). A message expires
    when it is older than `max_age` or has had `max_attempts` attempts.
    """

    delays: tuple[float, ...] = (60.0, 300.0, 900.0, 1800.0, 3600.0)
    repeat: float | None = 3600.0
    max_age: float = 5 * 86400.0
    max_attempts: int | None = None


@dataclass(frozen=True)
class BreakerSettings:
    failures: int = 3  # consecutive failures that open the circuit
    recovery: float = 300.0  # seconds open before one probe is let through


@dataclass(frozen=True)
class Smarthost:
    name: str
    host: str
    port: int = 587
    tls: str = "starttls"  # none | starttls | implicit
    verify_cert: bool = True
    username: str | None = None
    password: Secret | None = None
    max_connections: int = 10
    messages_per_connection: int = 100


@dataclass(frozen=True)
class RouteMatch:
    """Empty tuples match everything. Domains match exactly or as `.parent` suffixes."""

    recipient_domains: tuple[str, ...] = ()
    sender_domains: tuple[str, ...] = ()


@dataclass(frozen=True)
class Route:
    name: str
    kind: str  # mx | smarthost
    match: RouteMatch = RouteMatch()
    smarthosts: tuple[Smarthost, ...] = ()
    tls: str = "opportunistic"  # mx routes: none | opportunistic | required | verify
    # mx routes: "enforce" follows each domain's MTA-STS policy as published;
    # "testing-only" treats an enforce policy as testing (report, deliver anyway); "off".
    mta_sts: str = "enforce"
    retry: RetrySchedule = RetrySchedule()
    breaker: BreakerSettings = BreakerSettings()
    max_connections_per_destination: int = 10
    messages_per_connection: int = 100
    verp: bool | None = None  # None: as `bounces.verp` says; False: keep the app's sender
    dsn: bool = False  # send RFC 3464 DSNs to the sender for failures on this route


@dataclass(frozen=True)
class DeliveryJob:
    """Recipients of one message that share a destination, for one attempt."""

    message: QueuedMessage
    recipients: tuple[str, ...]
    route: Route
    domain: str  # recipient domain (MX lookups); informative for smarthost routes
    attempt: int  # 1 for the first attempt


@dataclass(frozen=True)
class RecipientResult:
    recipient: str
    reply: Reply

    @property
    def state(self) -> RecipientState:
        if self.reply.is_success:
            return RecipientState.DELIVERED
        if self.reply.is_transient:
            return RecipientState.DEFERRED
        return RecipientState.BOUNCED


@dataclass(frozen=True)
class Attempt:
    """What one delivery attempt of a DeliveryJob did, recipient by recipient."""

    route: str
    host: str  # smarthost name or MX host name; "" when no server was reached
    results: tuple[RecipientResult, ...]
    started_at: float
    finished_at: float
    # The session that took the message: "policy=sts|dane|none tls=TLSv1.3 cipher=…"
    # ("tls=none" in plaintext); "" when no server took it.
    tls: str = ""


@dataclass(frozen=True)
class Event:
    """One step in a recipient's life; the common ground of audit, metrics and webhooks."""

    time: float
    queue_id: QueueId
    type: EventType
    recipient: str | None = None
    message_id: str | None = None
    route: str | None = None
    host: str | None = None
    reply: Reply | None = None
    detail: str | None = None
