"""Errors raised by the sans-IO RTMP layer (h11 style: local vs remote fault)."""

from __future__ import annotations

__all__ = ["LocalProtocolError", "ProtocolError", "RemoteProtocolError"]


class ProtocolError(Exception):
    """Base of every error raised on bad protocol input or misuse.

    ``reason`` is a short, stable, machine-ish cause (e.g. ``"amf-depth"``) used in
    logs and as a metrics label, so keep its cardinality low. ``status_code`` is an
    optional onStatus code hint for the reply (e.g. ``"NetStream.Publish.BadName"``).
    ``detail`` (the offending value and the bound) goes into the message only, for the log.
    """

    def __init__(
        self, reason: str, detail: str | None = None, *, status_code: str | None = None
    ) -> None:
        super().__init__(reason if detail is None else f"{reason}: {detail}")
        self.reason = reason
        self.status_code = status_code

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason!r}, status_code={self.status_code!r})"


class RemoteProtocolError(ProtocolError):
    """The peer sent something invalid; the connection should go to an error state."""


class LocalProtocolError(ProtocolError):
    """We were asked to do something invalid (a bug or bad input on our side)."""
