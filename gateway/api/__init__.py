"""The HTTP submission API: apps POST JSON instead of speaking SMTP, and the message takes
the SMTP path from there (gateway.api.server; settings: gateway.api.settings).

Kept empty on purpose: config.py imports gateway.api.settings, and running this
package's __init__ must not pull the server (and with it intake) into config's imports.
"""
