"""HTTP listening sockets that drop peers which stop taking data (TCP_USER_TIMEOUT).

hypercorn has no write timeout, and it shields its socket writes from cancellation: a client
that requests a segment and then never reads (a stalled mobile viewer, or an attacker opening
connections by the hundred) keeps its connection, its task and the response being written
forever; the kernel keeps probing a zero receive window indefinitely. TCP_USER_TIMEOUT (Linux,
RFC 5482) makes the kernel abort a connection whose sent data has stayed unacknowledged, zero
window included, for that long; set on the listening socket, accepted sockets inherit it.
"""

from __future__ import annotations

import logging
import socket

from hypercorn.config import Config, Sockets

log = logging.getLogger("web.tcp")

__all__ = ["HttpServerConfig", "reuseport_socket", "set_send_timeout"]


def set_send_timeout(sock: socket.socket, seconds: float) -> bool:
    """Set TCP_USER_TIMEOUT on a TCP socket; False where the platform lacks it."""
    option = getattr(socket, "TCP_USER_TIMEOUT", None)
    if option is None:
        return False
    try:
        sock.setsockopt(socket.IPPROTO_TCP, option, max(1, round(seconds * 1000)))
    except OSError:
        return False
    return True


def reuseport_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` with SO_REUSEPORT (not listening yet): several
    processes bind the same port this way and the kernel spreads new connections over those
    that listen (gateway.supervisor's workers)."""
    host = (host or "0.0.0.0").strip("[]")
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class HttpServerConfig(Config):
    """hypercorn's Config whose sockets abort peers that take no data for ``send_timeout``
    seconds (0 = the kernel's default: never, for a peer that keeps a zero window open)."""

    send_timeout: float = 0.0

    def create_sockets(self) -> Sockets:
        sockets = super().create_sockets()
        if self.send_timeout > 0:
            tcp = [
                s
                for s in (*sockets.secure_sockets, *sockets.insecure_sockets)
                if s.family in (socket.AF_INET, socket.AF_INET6)  # not unix: sockets
            ]
            if not all([set_send_timeout(s, self.send_timeout) for s in tcp]):
                log.warning("TCP_USER_TIMEOUT unavailable: stalled HTTP clients are kept")
        return sockets
