"""Engagement tracking with consent: the rewrite that adds an open pixel and click
redirects (before DKIM signing), and the public listener that answers them.

settings.py  the `tracking:` section        token.py    sealed tokens (HMAC + AES-CTR)
rewrite.py   pure: message + plan → message tracker.py  who is tracked (consent)
machine.py   machine opens and clicks       listener.py the public HTTP(S) listener
"""
