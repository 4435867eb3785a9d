"""smtp-gateway: a self-hosted SMTP relay.

A message is accepted in `gateway.intake`, waits in `gateway.spool` (its state
is the directory its queue file sits in), is scheduled by `gateway.scheduler`
and leaves through `gateway.delivery`. Every step is recorded as an event in
`gateway.state`.
"""

__version__ = "0.1.0"
