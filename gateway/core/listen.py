"""A listening TCP socket for the HTTP listeners (admin API, tracking), bound before the
server starts so that `port: 0` learns its number and a port in use is one clear error.
"""

from __future__ import annotations

import socket

__all__ = ["bind_tcp"]


def bind_tcp(address: str, port: int, what: str, backlog: int = 128) -> socket.socket:
    """A non-blocking listening socket; OSError naming `what` ("admin listener") when
    the address cannot be bound."""
    host = "127.0.0.1" if address == "localhost" else address
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"{what} on {address}:{port}: {exc.strerror}") from exc
    sock.setblocking(False)
    return sock
