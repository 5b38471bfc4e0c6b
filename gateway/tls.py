"""TLS contexts from the settings: the server side of RTMPS, the client side of rtmps:// relays.

One place for both so every listener and every outgoing connection trusts and presents the same
things; gateway.config checks the files load at start, so these only fail on a file changed since.
"""

from __future__ import annotations

import ssl

from gateway.config import Settings

__all__ = ["client_context", "describe_tls_error", "server_context"]


def server_context(settings: Settings) -> ssl.SSLContext:
    """For accepted RTMPS connections: tls_cert/tls_key, Python's secure defaults (no ALPN:
    RTMP has no protocol id to negotiate)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    return context


def client_context(settings: Settings) -> ssl.SSLContext:
    """For outgoing TLS: the system's CAs plus tls_ca_file, certificate and host name checked."""
    context = ssl.create_default_context()
    if settings.tls_ca_file:
        context.load_verify_locations(cafile=settings.tls_ca_file)
    return context


def describe_tls_error(exc: BaseException) -> str | None:
    """A line naming the TLS problem behind ``exc`` (trio wraps it in BrokenResourceError), or
    None when ``exc`` is no TLS failure."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return f"TLS certificate not accepted: {current.verify_message}"
        if isinstance(current, ssl.SSLError):
            return f"TLS error: {current.strerror or current}"
        current = current.__cause__ or current.__context__
    return None
