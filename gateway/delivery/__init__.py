"""Delivery: one DeliveryJob → one Attempt, over MX or through smarthosts.

Postfix counterpart: smtp(8) as qmgr uses it (one delivery request in, one
status per recipient out). `Delivery.deliver()` never raises for a delivery
problem: every recipient gets a reply, the remote server's or one made up
here (451 4.4.1 no connection, 451 4.4.3 DNS trouble, 550 5.1.2 NXDOMAIN,
556 5.1.10 null MX, 451 4.7.5 TLS required but not offered, ...).

- mx routes: MX hosts by preference, each address in turn, until one takes
  the message (mx.py); connections cached per destination domain.
- smarthost routes: smarthosts in order; a host that fails (no connection,
  timeout, 4xx for the session or for every recipient) passes the
  recipients still pending to the next one in the same attempt; each has a
  circuit breaker (smarthosts.py), shared with the other nodes of a cluster
  when the state is on PostgreSQL (breaker_sharing.py).
- Sessions are reused for several messages (pool.py) and pipelined where
  the server offers it (smtp_client.py).
- Transport security (security.py): per MX host DANE (dane.py, TLSA via
  mx.py), else the domain's MTA-STS policy (tls_policy.StsSource), else the
  route's `tls`; TLS outcomes go to tls_policy.OutcomeSink and metrics;
  REQUIRETLS messages (RFC 8689) only over validated TLS.

The scheduler holds the global and per-destination concurrency limits;
the pool here adds each smarthost's own `max_connections`.

Security: talks to remote servers and reads their replies and DNS answers
(see smtp_client.py and mx.py). Smarthost passwords stay in `Secret` and
reach only the AUTH command.
"""
