"""The HTTP listeners' addresses (admin API, submission API, tracking): read from their
settings, and a listening TCP socket bound before the server starts, so that `port: 0`
learns its number and a port in use is one clear error.
"""

from __future__ import annotations

import ipaddress
import socket

from gateway.core.yamlnodes import Section

__all__ = ["bind_tcp", "is_loopback", "listen_address"]


def listen_address(sec: Section, default: str = "127.0.0.1") -> str:
    """`address:` of a listener section: an IP address or "localhost" (an error at its
    place otherwise)."""
    address = sec.get_str("address", default)
    if address != "localhost":
        try:
            ipaddress.ip_address(address)
        except ValueError:
            sec.error("address", f"'{sec.where}.address': '{address}' is not an IP address")
    return address


def is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


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
