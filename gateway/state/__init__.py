"""The state store: what the gateway remembers beyond the queue — events,
suppressions, consent, rate counters, idempotency keys and the audit log of
policy changes (Postfix keeps no such state; its nearest are the anvil(8)
counters and the maillog).

Stages talk to the narrow interfaces here (EventStore, SuppressionStore,
ConsentStore, RateCounters, IdempotencyStore, BounceStore, AuditLog, TlsStore —
MTA-STS policies and TLS report counts), never to SQL. Two backends implement
them (`open_state()` picks by config):

- embedded, one node (default): SQLite files and a shared memory-mapped rate
  table in the data directory; the policy reads run on the event loop (a few
  microseconds; gateway.state.db), so the async methods return at once;
- shared, N nodes: PostgreSQL (gateway.state.postgres) for suppressions,
  consent, audit, events, idempotency keys, the bounce ledger,
  circuit-breaker transitions, MTA-STS policies and TLS report counts — with
  the webhook outbox's cursors and leases
  (gateway.webhooks.outbox_postgres) — and Redis
  (gateway.state.redis_limits) for rate counters — each chosen on its own
  (`state:`, `rate_limits:`).

A backend that cannot answer raises StateUnavailable; the policy stage turns
it into 451 4.3.0 (gateway.policy.stage), and so does the idempotency check
(gateway.intake.idempotency).

Adding a store: a
Protocol with async methods; a SQLite class on a StateDb (a file of its own
if its write pattern differs, with its Migration list in migrations/sqlite.py)
and a PostgreSQL class on PostgresPool (a new Migration appended to
migrations/postgresql.py); both built here; and its tests added to
tests/unit/state/test_store_backends.py, which runs them on both backends.
"""
