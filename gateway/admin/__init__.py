"""The admin HTTP API (aiohttp) on its own loopback listener; see server.py.

Postfix counterpart: postqueue(1) and postsuper(1) over HTTP, plus what Postfix
leaves to log parsers (trace, summary).
"""
