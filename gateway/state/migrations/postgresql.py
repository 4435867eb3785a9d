"""Schema migrations of the shared PostgreSQL state database (gateway.state.postgres).

One database for what the SQLite backend keeps in state.db and policy.db.
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
    # PLACEHOLDERS: 3 and 4 are taken by branches merged in parallel (issue 8); the
    # real ones replace these two at merge. They change nothing.
    Migration(3, "placeholder (replaced at merge)", ()),
    Migration(4, "placeholder (replaced at merge)", ()),
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
)
