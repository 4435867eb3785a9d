"""Schema migrations of the shared PostgreSQL state database (gateway.state.postgres).

One database for what the SQLite backend keeps in state.db, policy.db,
idempotency.db and bounces.db.
Times are float seconds since the epoch (double precision), as in SQLite and
in gateway.model, so both backends hand the stages the same values.
Append only: a change is a new Migration at the end of the list.
"""

from __future__ import annotations

from gateway.state.migrations import Migration

__all__ = ["POSTGRESQL"]

POSTGRESQL: tuple[Migration, ...] = (
    Migration(1, "events, suppressions, consent, audit", (
        """CREATE TABLE events (
            seq bigserial PRIMARY KEY,
            time double precision NOT NULL,
            queue_id text NOT NULL,
            type text NOT NULL,
            recipient text,
            message_id text,
            route text,
            host text,
            reply_code integer,
            reply_enhanced text,
            reply_text text,
            detail text
        )""",
        "CREATE INDEX events_queue_id ON events (queue_id)",
        "CREATE INDEX events_message_id ON events (message_id)",
        "CREATE INDEX events_time ON events (time)",
        """CREATE TABLE suppressions (
            target text NOT NULL,
            scope text NOT NULL,
            reason text NOT NULL,
            created double precision NOT NULL,
            added_by text NOT NULL,
            expires double precision,
            note text NOT NULL DEFAULT '',
            PRIMARY KEY (target, scope)
        )""",
        """CREATE TABLE consent (
            seq bigserial PRIMARY KEY,
            address text NOT NULL,
            category text NOT NULL,
            granted boolean NOT NULL,
            time double precision NOT NULL,
            method text NOT NULL,
            source text NOT NULL DEFAULT ''
        )""",
        "CREATE INDEX consent_lookup ON consent (address, category, time DESC, seq DESC)",
        """CREATE TABLE audit (
            seq bigserial PRIMARY KEY,
            time double precision NOT NULL,
            actor text NOT NULL,
            action text NOT NULL,
            detail text NOT NULL
        )""",
    )),
    # What intake learned about a message for the admin API: category, correlation headers.
    Migration(2, "message_tags", (
        """CREATE TABLE message_tags (
            queue_id text NOT NULL,
            name text NOT NULL,
            value text NOT NULL,
            PRIMARY KEY (queue_id, name)
        )""",
        "CREATE INDEX message_tags_value ON message_tags (name, value)",
    )),
    # What the SQLite backend keeps in idempotency.db and bounces.db, so that a resend
    # through another node, or a bounce polled by two nodes, is known to all of them.
    Migration(3, "idempotency keys, bounce ledger, soft bounces", (
        """CREATE TABLE idempotency_keys (
            scope text NOT NULL,
            key text NOT NULL,
            queue_id text NOT NULL,
            stored boolean NOT NULL,
            created double precision NOT NULL,
            expires double precision NOT NULL,
            PRIMARY KEY (scope, key)
        )""",
        "CREATE INDEX idempotency_expires ON idempotency_keys (expires)",
        """CREATE TABLE bounces_ingested (
            key text PRIMARY KEY,
            time double precision NOT NULL,
            source text NOT NULL,
            outcome text NOT NULL
        )""",
        "CREATE INDEX bounces_ingested_time ON bounces_ingested (time)",
        """CREATE TABLE soft_bounces (
            address text NOT NULL,
            queue_id text NOT NULL,
            time double precision NOT NULL,
            PRIMARY KEY (address, queue_id)
        )""",
    )),
    # The webhook outbox on PostgreSQL (gateway.webhooks.outbox_postgres): each event row
    # names the transaction that wrote it, and each webhook's cursor is a (xid, seq)
    # position. The column is added without a value for the existing rows (no table
    # rewrite): they were written before webhooks could run on PostgreSQL, and a new
    # webhook starts at the head anyway. The erasure key's fingerprint lets every node
    # check that it hashes addresses with the same key (gateway.state.erasure_postgres).
    Migration(4, "webhook outbox, erasure key check", (
        "ALTER TABLE events ADD COLUMN xid xid8",
        "ALTER TABLE events ALTER COLUMN xid SET DEFAULT pg_current_xact_id()",
        "CREATE INDEX events_outbox ON events (xid, seq)",
        """CREATE TABLE webhook_cursors (
            name text PRIMARY KEY,
            lock_key integer GENERATED ALWAYS AS IDENTITY UNIQUE,
            xid xid8 NOT NULL,
            seq bigint NOT NULL,
            updated double precision NOT NULL,
            holder text NOT NULL
        )""",
        """CREATE TABLE erasure_key (
            one boolean PRIMARY KEY DEFAULT true CHECK (one),
            fingerprint text NOT NULL,
            created double precision NOT NULL
        )""",
    )),
    # Each smarthost's circuit breaker as the cluster last saw it
    # (gateway.delivery.breaker_sharing): the last transition, which node made it,
    # and a generation that every write bumps (nodes apply only newer ones).
    Migration(5, "breakers", (
        """CREATE TABLE breakers (
            route text NOT NULL,
            smarthost text NOT NULL,
            state text NOT NULL,
            retry_at double precision NOT NULL,
            generation bigint NOT NULL,
            node text NOT NULL,
            changed double precision NOT NULL,
            PRIMARY KEY (route, smarthost)
        )""",
    )),
    # Purposes granted with a consent record beyond the mail itself (gateway.tracking).
    Migration(6, "consent purposes", (
        "ALTER TABLE consent ADD COLUMN purposes text NOT NULL DEFAULT ''",
    )),
    # Counts rolled up from the events for the console's overview
    # (gateway.state.counts_postgres); the cursor is an (xid, seq) position, as the
    # webhook outbox's, so an event committed late is still counted, once. And the
    # console's Trace finds delivered and bounced mail by recipient (lower(): the
    # comparison form, as the query's; one more index entry per event written).
    Migration(7, "console: event and host counts, events by recipient", (
        "CREATE INDEX events_recipient ON events (lower(recipient))",
        """CREATE TABLE event_counts (
            bucket bigint NOT NULL,
            type text NOT NULL,
            category text NOT NULL,
            route text NOT NULL,
            reason text NOT NULL,
            n bigint NOT NULL,
            PRIMARY KEY (bucket, type, category, route, reason)
        )""",
        """CREATE TABLE domain_counts (
            bucket bigint NOT NULL,
            domain text NOT NULL,
            type text NOT NULL,
            n bigint NOT NULL,
            PRIMARY KEY (bucket, domain, type)
        )""",
        """CREATE TABLE latency_counts (
            bucket bigint NOT NULL,
            le double precision NOT NULL,
            n bigint NOT NULL,
            PRIMARY KEY (bucket, le)
        )""",
        """CREATE TABLE host_counts (
            bucket bigint NOT NULL,
            route text NOT NULL,
            host text NOT NULL,
            type text NOT NULL,
            n bigint NOT NULL,
            PRIMARY KEY (bucket, route, host, type)
        )""",
        """CREATE TABLE rollup_cursor (
            name text PRIMARY KEY,
            xid xid8 NOT NULL,
            seq bigint NOT NULL
        )""",
    )),
    # MTA-STS policies every node uses, and TLS report counts every node adds to
    # (gateway.state.tls); a report is claimed by one node (tlsrpt_sent).
    Migration(8, "mta-sts policies, tls report counts", (
        """CREATE TABLE sts_policies (
            domain text PRIMARY KEY,
            policy_id text NOT NULL,
            text text NOT NULL,
            fetched_at double precision NOT NULL,
            expires double precision NOT NULL
        )""",
        """CREATE TABLE tlsrpt_counts (
            day text NOT NULL,
            policy_domain text NOT NULL,
            policy_type text NOT NULL,
            policy_strings text NOT NULL,
            result text NOT NULL,
            mx_host text NOT NULL,
            receiving_ip text NOT NULL,
            count bigint NOT NULL,
            detail text NOT NULL,
            PRIMARY KEY (day, policy_domain, policy_type, policy_strings, result, mx_host,
                         receiving_ip)
        )""",
        """CREATE TABLE tlsrpt_sent (
            day text NOT NULL,
            policy_domain text NOT NULL,
            node text NOT NULL,
            time double precision NOT NULL,
            outcome text NOT NULL,
            PRIMARY KEY (day, policy_domain)
        )""",
    )),
)
