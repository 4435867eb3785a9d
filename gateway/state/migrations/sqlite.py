"""Schema migrations of the embedded SQLite state files (see gateway.state.migrations).

One list per file: bounces.db holds what bounce handling remembers
(gateway.state.bounces); state.db holds the events (written in batches
all the time), policy.db the suppressions, consent and audit log (read for
every recipient), idempotency.db the idempotency keys (written for every
message), tls.db the MTA-STS policies and TLS report counts (gateway.state.tls) —
gateway.state.StateStore says why they are apart.
Append only: a change is a new Migration at the end of its list.
"""

from __future__ import annotations

from gateway.state.migrations import Migration

__all__ = ["BOUNCES", "EVENTS", "IDEMPOTENCY", "POLICY", "TLS"]

EVENTS: tuple[Migration, ...] = (
    Migration(1, "events", (
        """CREATE TABLE IF NOT EXISTS events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            time REAL NOT NULL,
            queue_id TEXT NOT NULL,
            type TEXT NOT NULL,
            recipient TEXT,
            message_id TEXT,
            route TEXT,
            host TEXT,
            reply_code INTEGER,
            reply_enhanced TEXT,
            reply_text TEXT,
            detail TEXT
        )""",
        "CREATE INDEX IF NOT EXISTS events_queue_id ON events(queue_id)",
        "CREATE INDEX IF NOT EXISTS events_message_id ON events(message_id)",
        "CREATE INDEX IF NOT EXISTS events_time ON events(time)",
    )),
    # Each webhook's outbox cursor (gateway.webhooks.outbox), beside the events it reads.
    Migration(2, "webhook cursors", (
        """CREATE TABLE IF NOT EXISTS webhook_cursors (
            name TEXT PRIMARY KEY,
            seq INTEGER NOT NULL,
            updated REAL NOT NULL
        ) WITHOUT ROWID""",
    )),
    # What intake learned about a message for the admin API: category, correlation headers.
    Migration(3, "message_tags", (
        """CREATE TABLE IF NOT EXISTS message_tags (
            queue_id TEXT NOT NULL,
            name TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (queue_id, name)
        ) WITHOUT ROWID""",
        "CREATE INDEX IF NOT EXISTS message_tags_value ON message_tags(name, value)",
    )),
    # Counts rolled up from the events for the console's overview (gateway.state.counts).
    Migration(4, "event counts", (
        """CREATE TABLE IF NOT EXISTS event_counts (
            bucket INTEGER NOT NULL,
            type TEXT NOT NULL,
            category TEXT NOT NULL,
            route TEXT NOT NULL,
            reason TEXT NOT NULL,
            n INTEGER NOT NULL,
            PRIMARY KEY (bucket, type, category, route, reason)
        ) WITHOUT ROWID""",
        """CREATE TABLE IF NOT EXISTS domain_counts (
            bucket INTEGER NOT NULL,
            domain TEXT NOT NULL,
            type TEXT NOT NULL,
            n INTEGER NOT NULL,
            PRIMARY KEY (bucket, domain, type)
        ) WITHOUT ROWID""",
        """CREATE TABLE IF NOT EXISTS latency_counts (
            bucket INTEGER NOT NULL,
            le REAL NOT NULL,
            n INTEGER NOT NULL,
            PRIMARY KEY (bucket, le)
        ) WITHOUT ROWID""",
        """CREATE TABLE IF NOT EXISTS rollup_cursor (
            name TEXT PRIMARY KEY,
            seq INTEGER NOT NULL
        ) WITHOUT ROWID""",
    )),
    # The console's Trace finds delivered and bounced mail by recipient (lower(): the
    # comparison form, as the query's; one more index entry per event written), and
    # which host of a route carried the mail, per hour (gateway.state.counts: the
    # smarthost failovers; counted from the events rolled up after this).
    Migration(5, "events by recipient, host counts", (
        "CREATE INDEX IF NOT EXISTS events_recipient ON events(lower(recipient))",
        """CREATE TABLE IF NOT EXISTS host_counts (
            bucket INTEGER NOT NULL,
            route TEXT NOT NULL,
            host TEXT NOT NULL,
            type TEXT NOT NULL,
            n INTEGER NOT NULL,
            PRIMARY KEY (bucket, route, host, type)
        ) WITHOUT ROWID""",
    )),
)

POLICY: tuple[Migration, ...] = (
    Migration(1, "suppressions, consent, audit", (
        """CREATE TABLE IF NOT EXISTS suppressions (
            target TEXT NOT NULL,
            scope TEXT NOT NULL,
            reason TEXT NOT NULL,
            created REAL NOT NULL,
            added_by TEXT NOT NULL,
            expires REAL,
            note TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (target, scope)
        ) WITHOUT ROWID""",
        """CREATE TABLE IF NOT EXISTS consent (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            address TEXT NOT NULL,
            category TEXT NOT NULL,
            granted INTEGER NOT NULL,
            time REAL NOT NULL,
            method TEXT NOT NULL,
            source TEXT NOT NULL DEFAULT ''
        )""",
        "CREATE INDEX IF NOT EXISTS consent_lookup ON consent(address, category, time, seq)",
        """CREATE TABLE IF NOT EXISTS audit (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            time REAL NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            detail TEXT NOT NULL
        )""",
    )),
    # Purposes granted with a consent record beyond the mail itself (gateway.tracking),
    # space-separated: "tracking".
    Migration(2, "consent purposes", (
        "ALTER TABLE consent ADD COLUMN purposes TEXT NOT NULL DEFAULT ''",
    )),
)

BOUNCES: tuple[Migration, ...] = (
    Migration(1, "ingested, soft_bounces", (
        """CREATE TABLE IF NOT EXISTS ingested (
            key TEXT PRIMARY KEY,
            time REAL NOT NULL,
            source TEXT NOT NULL,
            outcome TEXT NOT NULL
        ) WITHOUT ROWID""",
        """CREATE TABLE IF NOT EXISTS soft_bounces (
            address TEXT NOT NULL,
            queue_id TEXT NOT NULL,
            time REAL NOT NULL,
            PRIMARY KEY (address, queue_id)
        ) WITHOUT ROWID""",
    )),
)

IDEMPOTENCY: tuple[Migration, ...] = (
    Migration(1, "idempotency keys", (
        """CREATE TABLE IF NOT EXISTS idempotency_keys (
            scope TEXT NOT NULL,
            key TEXT NOT NULL,
            queue_id TEXT NOT NULL,
            stored INTEGER NOT NULL,
            created REAL NOT NULL,
            expires REAL NOT NULL,
            PRIMARY KEY (scope, key)
        ) WITHOUT ROWID""",
        "CREATE INDEX IF NOT EXISTS idempotency_expires ON idempotency_keys(expires)",
    )),
)

TLS: tuple[Migration, ...] = (
    Migration(1, "mta-sts policies, tls report counts", (
        """CREATE TABLE IF NOT EXISTS sts_policies (
            domain TEXT PRIMARY KEY,
            policy_id TEXT NOT NULL,
            text TEXT NOT NULL,
            fetched_at REAL NOT NULL,
            expires REAL NOT NULL
        ) WITHOUT ROWID""",
        """CREATE TABLE IF NOT EXISTS tlsrpt_counts (
            day TEXT NOT NULL,
            policy_domain TEXT NOT NULL,
            policy_type TEXT NOT NULL,
            policy_strings TEXT NOT NULL,
            result TEXT NOT NULL,
            mx_host TEXT NOT NULL,
            receiving_ip TEXT NOT NULL,
            count INTEGER NOT NULL,
            detail TEXT NOT NULL,
            PRIMARY KEY (day, policy_domain, policy_type, policy_strings, result, mx_host,
                         receiving_ip)
        ) WITHOUT ROWID""",
        """CREATE TABLE IF NOT EXISTS tlsrpt_sent (
            day TEXT NOT NULL,
            policy_domain TEXT NOT NULL,
            node TEXT NOT NULL,
            time REAL NOT NULL,
            outcome TEXT NOT NULL,
            PRIMARY KEY (day, policy_domain)
        ) WITHOUT ROWID""",
    )),
)
