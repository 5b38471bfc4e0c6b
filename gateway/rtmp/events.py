"""Events produced by ``Connection.next_event`` (h11 style: small frozen dataclasses)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.rtmp.ertmp import Capabilities
from gateway.rtmp.records import record

__all__ = [
    "NEED_DATA",
    "CallFailed",
    "ConnectRequest",
    "ConnectResult",
    "ConnectionClosed",
    "Event",
    "FCPublish",
    "HandshakeComplete",
    "Media",
    "PauseRequest",
    "PlayRequest",
    "PublishRequest",
    "ReconnectRequest",
    "ReleaseStream",
    "SetBufferLength",
    "Status",
    "StreamCreated",
    "StreamDeleted",
    "Unpublish",
]


class NEED_DATA:  # a sentinel class, as in h11
    """Returned by ``next_event`` when more bytes are needed."""


@dataclass(frozen=True, slots=True)
class HandshakeComplete:
    """§5.2: handshake done; ``digest`` tells whether the Flash 9 digest variant was used."""

    digest: bool = False


@dataclass(frozen=True, slots=True)
class ConnectRequest:
    """connect command (§7.2.1.1); answer with accept_connect / reject_connect."""

    transaction_id: float
    app: str  # without query string
    tc_url: str | None
    params: dict[str, Any]  # the whole command object
    query: str  # query string found in app or tcUrl ("" if none)
    # Enhanced RTMP: what the client can take (fourCcList, FourCC info maps, capsEx) and what
    # was malformed in it (ignored; for a log line).
    capabilities: Capabilities = field(default_factory=Capabilities)
    problems: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ReleaseStream:
    name: str


@dataclass(frozen=True, slots=True)
class FCPublish:
    name: str


@dataclass(frozen=True, slots=True)
class StreamCreated:
    """createStream was answered with this message stream id (§7.2.1.3)."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class PublishRequest:
    """publish command (§7.2.2.6); answer with accept_publish / reject_publish."""

    stream_id: int
    name: str  # without query string
    query: str
    publish_type: str  # "live", "record" or "append"


@dataclass(frozen=True, slots=True)
class PlayRequest:
    """play command (§7.2.2.1); answer with accept_play / reject_play."""

    stream_id: int
    name: str
    query: str
    start: float
    duration: float
    reset: bool


@dataclass(frozen=True, slots=True)
class PauseRequest:
    """pause command (§7.2.2.8): ``pause`` True stops delivery, False resumes it."""

    stream_id: int
    pause: bool
    position_ms: float


@record
class Media:
    """Audio (8), video (9) or data (18, always AMF0 name + value) of a published stream.

    ``timestamp`` is unwrapped, unbounded milliseconds per message stream.
    """

    stream_id: int
    type: int
    timestamp: int
    body: bytes


@dataclass(frozen=True, slots=True)
class StreamDeleted:
    """deleteStream / closeStream."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class Unpublish:
    """FCUnpublish; ``stream_id`` is the stream publishing ``name``, or 0 if none."""

    stream_id: int
    name: str


@dataclass(frozen=True, slots=True)
class SetBufferLength:
    """User control SetBufferLength (§7.1.7) from a player."""

    stream_id: int
    buffer_ms: int


@dataclass(frozen=True, slots=True)
class ConnectResult:
    """Client role: the server's answer to our connect (§7.2.1.1 _result / _error)."""

    success: bool
    code: str
    description: str
    info: dict[str, Any]  # the whole information object
    # The server's properties object (fmsVer, capabilities; E-RTMP: capsEx, FourCC info maps).
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Status:
    """Client role: onStatus from the server (§7.2.2), e.g. NetStream.Publish.Start / BadName."""

    stream_id: int
    level: str  # "status", "warning" or "error"
    code: str
    description: str
    info: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ReconnectRequest:
    """Client role: onStatus NetConnection.Connect.ReconnectRequest (E-RTMP v2): reconnect at
    the next media boundary, to ``tc_url`` (already resolved; None: the same server)."""

    tc_url: str | None
    description: str


@dataclass(frozen=True, slots=True)
class CallFailed:
    """Client role: the server answered one of our calls (e.g. createStream) with _error."""

    command: str
    code: str
    description: str


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The peer closed (EOF). Returned again on later calls."""


Event = (
    HandshakeComplete
    | ConnectRequest
    | ReleaseStream
    | FCPublish
    | StreamCreated
    | PublishRequest
    | PlayRequest
    | PauseRequest
    | Media
    | StreamDeleted
    | Unpublish
    | SetBufferLength
    | ConnectResult
    | Status
    | ReconnectRequest
    | CallFailed
    | ConnectionClosed
)
