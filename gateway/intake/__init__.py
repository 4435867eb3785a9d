"""Intake: SMTP in, durable queue file out (Postfix smtpd(8) + cleanup(8)).

    IntakeServer (smtpd.py)   one listener: aiosmtpd protocol, limits, TLS, AUTH
      └── Acceptor (accept.py)  MAIL/RCPT checks; DATA: normalize, headers, spool.put
            ├── envelope addresses (addresses.py), the Received: field (trace.py)
            └── Authenticator (auth.py), replies (replies.py)

Security: reads untrusted input from the network; see smtpd.py and accept.py.
"""
