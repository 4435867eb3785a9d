"""Every Prometheus metric of the gateway, declared once, and the small functions
the stages call to record into them (KumoMTA's queue/metrics.rs; Postfix has
none and leaves it to log parsers).

Names follow the Prometheus conventions: `smtp_gateway_` prefix, counters end
in `_total`, durations are `_seconds`. Labels are bounded: listener, route,
smarthost and category names come from the configuration, policy rules from
the policy files, replies are reduced to their class (2xx/4xx/5xx). No label
ever carries an address, a queue id or a Message-ID.

The recording functions take plain values so that the stages need not know
prometheus_client; each call is a dict lookup and an add (see BENCHMARKS.md).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics

from gateway.model import Reply

__all__ = [
    "INTAKE_FAMILIES",
    "REGISTRY",
    "WEBHOOK_RESULTS",
    "declare_listener",
    "observe_intake_latency",
    "record_attempt",
    "record_bounce",
    "record_cleanup_repair",
    "record_data_reply",
    "record_message_received",
    "record_rcpt_refused",
    "record_recipient",
    "record_reload",
    "record_signing",
    "record_tls_outcome",
    "record_tracking_hit",
    "record_verdict",
    "record_verp_forged",
    "record_webhook_delivery",
    "reply_class",
]

# `_created` series double every counter and mean nothing once summed over
# intake processes (gateway.metrics.workers); scrapers do not need them.
disable_created_metrics()  # type: ignore[no-untyped-call]

REGISTRY = CollectorRegistry(auto_describe=True)

_P = "smtp_gateway_"
NO_CATEGORY = "none"  # no policy files: messages are not classified
NO_ROUTE = "none"  # refused or dropped at intake, before any routing

MESSAGES_RECEIVED = Counter(
    _P + "messages_received_total", "Messages whose DATA was received, by listener.",
    ["listener"], registry=REGISTRY)
MESSAGES_ACCEPTED = Counter(
    _P + "messages_accepted_total", "Messages answered 250 (queued), by listener.",
    ["listener"], registry=REGISTRY)
MESSAGES_REJECTED = Counter(
    _P + "messages_rejected_total",
    "Refusals at RCPT (one per recipient) or DATA (one per message), by listener, "
    "reply class, the rule that refused and the stage.",
    ["listener", "reply_class", "rule", "stage"], registry=REGISTRY)
RECIPIENTS = Counter(
    _P + "recipients_total",
    "Recipients by outcome: delivered, deferred (per attempt), bounced, expired, "
    "suppressed, dropped; by route and category.",
    ["outcome", "route", "category"], registry=REGISTRY)
ATTEMPTS = Counter(
    _P + "delivery_attempts_total",
    "Delivery attempts by route, smarthost (empty for MX routes) and reply class.",
    ["route", "smarthost", "reply_class"], registry=REGISTRY)
TLS_OUTCOMES = Counter(
    _P + "tls_outcomes_total",
    "Outbound TLS sessions to MX hosts by the policy that applied (sts, dane, none) and "
    "the result: success or an RFC 8460 result type (starttls-not-supported, "
    "certificate-host-mismatch, validation-failure, ...).",
    ["policy", "result"], registry=REGISTRY)
INTAKE_LATENCY = Histogram(
    _P + "intake_latency_seconds",
    "From the client's connection (or its MAIL command, on a reused session) to the 250.",
    ["listener"], registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0))
DELIVERY_LATENCY = Histogram(
    _P + "delivery_latency_seconds",
    "From the 250 at intake to the remote server's 2xx, per delivered recipient.",
    ["route", "category"], registry=REGISTRY,
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
             14400.0, 86400.0))
DKIM = Counter(
    _P + "dkim_signatures_total",
    "Messages by DKIM outcome (signed, unsigned, refused, tempfail: answered 451 because "
    "a key should have signed and could not) plus signing errors (error).",
    ["result"], registry=REGISTRY)
CLEANUP_REPAIRS = Counter(
    _P + "cleanup_repairs_total",
    "Repairs the cleanup stage made before signing (body_reencoded, long_header_folded, "
    "obsolete_syntax, date_added, ...), one per repair; downgraded_at_delivery: an 8-bit "
    "message converted for a server without 8BITMIME.", ["repair"], registry=REGISTRY)
BOUNCES = Counter(
    _P + "bounces_parsed_total",
    "Recipients of parsed returned mail by kind (hard, soft, complaint, auto_reply) and "
    "ingestion source.", ["kind", "source"], registry=REGISTRY)
BOUNCE_VERDICTS = Counter(
    _P + "bounce_verdicts_total",
    "Failed recipients by the verdict on their failure (gateway.bounces.verdicts): reason "
    "(Sisimai's names), action (suppress, count_soft, alert, complaint), destination domain "
    "(the first 200 seen, then 'other') and source (smtp-reply for replies during delivery, "
    "else the ingestion source). Deferrals count once per attempt.",
    ["reason", "action", "domain", "source"], registry=REGISTRY)
COMPLAINTS = Counter(
    _P + "complaints_total", "Feedback-loop complaints (ARF) by ingestion source.",
    ["source"], registry=REGISTRY)
VERP_FORGED = Counter(
    _P + "verp_forged_total", "Returned mail whose VERP token did not verify, by source.",
    ["source"], registry=REGISTRY)
WEBHOOKS = Counter(
    _P + "webhook_deliveries_total", "Webhook POSTs by result.", ["result"], registry=REGISTRY)
TRACKING_HITS = Counter(
    _P + "tracking_hits_total", "Tracking listener hits by kind (open, click), whether a "
    "machine made it (yes, no), and invalid tokens (kind=invalid).", ["kind", "machine"],
    registry=REGISTRY)
RELOADS = Counter(
    _P + "reloads_total", "Configuration and policy reloads by kind and result.",
    ["kind", "result"], registry=REGISTRY)

# Recorded in intake processes: what an intake worker reports to the master.
INTAKE_FAMILIES = frozenset(next(iter(f.describe())).name for f in (
    MESSAGES_RECEIVED, MESSAGES_ACCEPTED, MESSAGES_REJECTED, RECIPIENTS, INTAKE_LATENCY, DKIM,
    CLEANUP_REPAIRS))

# As gateway.webhooks.dispatcher reports a POST (its RESULTS; a test keeps them equal).
WEBHOOK_RESULTS = ("success", "client_error", "server_error", "timeout", "connection_error",
                   "gone")
_RELOAD_KINDS = ("config", "policy")
# The domain label is bounded: a spammer's list of made-up domains must not grow the
# series without end. The first MAX_VERDICT_DOMAINS domains keep their name.
MAX_VERDICT_DOMAINS = 200
OTHER_DOMAIN = "other"
_verdict_domains: set[str] = set()

# Series that alerts and dashboards compare exist from the start, at 0.
for _kind in _RELOAD_KINDS:
    for _result in ("success", "failure"):
        RELOADS.labels(_kind, _result)
for _result in WEBHOOK_RESULTS:
    WEBHOOKS.labels(_result)


def reply_class(reply: Reply) -> str:
    return f"{min(max(reply.code // 100, 2), 5)}xx"


def declare_listener(listener: str) -> None:
    """A listener's received/accepted series exist at 0 from its start (rate() needs two
    samples; a listener that got nothing yet still shows)."""
    MESSAGES_RECEIVED.labels(listener)
    MESSAGES_ACCEPTED.labels(listener)
    INTAKE_LATENCY.labels(listener)


def record_message_received(listener: str) -> None:
    MESSAGES_RECEIVED.labels(listener).inc()


def record_data_reply(listener: str, reply: Reply, rule: str = "") -> None:
    """The reply to DATA: accepted (2xx) or rejected with the rule that refused."""
    if reply.is_success:
        MESSAGES_ACCEPTED.labels(listener).inc()
    else:
        MESSAGES_REJECTED.labels(listener, reply_class(reply), rule or "other", "data").inc()


def record_rcpt_refused(listener: str, reply: Reply, rule: str) -> None:
    MESSAGES_REJECTED.labels(listener, reply_class(reply), rule, "rcpt").inc()


def record_recipient(outcome: str, route: str | None, category: str | None,
                     count: int = 1) -> None:
    RECIPIENTS.labels(outcome, route or NO_ROUTE, category or NO_CATEGORY).inc(count)


def observe_delivery_latency(route: str, category: str | None, seconds: float) -> None:
    DELIVERY_LATENCY.labels(route, category or NO_CATEGORY).observe(max(0.0, seconds))


def observe_intake_latency(listener: str, seconds: float) -> None:
    INTAKE_LATENCY.labels(listener).observe(max(0.0, seconds))


def record_attempt(route: str, smarthost: str, reply: Reply) -> None:
    ATTEMPTS.labels(route, smarthost, reply_class(reply)).inc()


def record_tls_outcome(policy: str, result: str) -> None:
    TLS_OUTCOMES.labels(policy, result).inc()


def record_signing(outcome: str, errors: int = 0) -> None:
    DKIM.labels(outcome).inc()
    if errors:
        DKIM.labels("error").inc(errors)


def record_cleanup_repair(repair: str) -> None:
    """`repair` is one of gateway.cleanup's fixed repair names (a bounded set)."""
    CLEANUP_REPAIRS.labels(repair).inc()


def record_bounce(kind: str, source: str) -> None:
    """One recipient of a parsed bounce, complaint or auto-reply; `source` is how it came
    in (smtp, imap, maildir, file)."""
    BOUNCES.labels(kind, source).inc()
    if kind == "complaint":
        COMPLAINTS.labels(source).inc()


def record_verdict(recipient: str, reason: str, action: str, source: str) -> None:
    """One failed recipient's verdict, by its domain (bounded, see MAX_VERDICT_DOMAINS)."""
    BOUNCE_VERDICTS.labels(reason, action, verdict_domain(recipient), source).inc()


def verdict_domain(recipient: str) -> str:
    domain = recipient.rpartition("@")[2].strip().rstrip(".").lower()[:253] or OTHER_DOMAIN
    if domain in _verdict_domains:
        return domain
    if len(_verdict_domains) >= MAX_VERDICT_DOMAINS:
        return OTHER_DOMAIN
    _verdict_domains.add(domain)
    return domain


def record_verp_forged(source: str) -> None:
    VERP_FORGED.labels(source).inc()


def record_tracking_hit(kind: str, machine: bool | None) -> None:
    """kind "open" | "click"; machine None: the token was invalid (counted as such)."""
    if machine is None:
        TRACKING_HITS.labels("invalid", "").inc()
    else:
        TRACKING_HITS.labels(kind, "yes" if machine else "no").inc()


def record_webhook_delivery(result: str) -> None:
    """`result` is one of WEBHOOK_RESULTS; anything else is counted as "other" so that
    a caller's typo cannot grow the label set."""
    WEBHOOKS.labels(result if result in WEBHOOK_RESULTS else "other").inc()


def record_reload(kind: str, ok: bool) -> None:
    assert kind in _RELOAD_KINDS
    RELOADS.labels(kind, "success" if ok else "failure").inc()
