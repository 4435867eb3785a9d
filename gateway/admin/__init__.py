"""The admin HTTP API (aiohttp) on its own listener; see server.py."""
