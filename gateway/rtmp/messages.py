"""Typed RTMP messages: protocol control (§5.4), user control (§6.2 / §7.1.7), commands
(§7.1.1 / §7.2), data (§7.1.2) and aggregate splitting (§7.1.6, docs/protocol.md §2).

Bodies only: chunking is chunk.py's job. Control messages go on csid 2, message stream 0.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from gateway.rtmp import amf0
from gateway.rtmp.errors import RemoteProtocolError

__all__ = [
    "Abort",
    "Acknowledgement",
    "AggregatePart",
    "Command",
    "ControlMessage",
    "PingRequest",
    "PingResponse",
    "SetBufferLength",
    "SetChunkSize",
    "SetPeerBandwidth",
    "StreamBegin",
    "StreamDry",
    "StreamEOF",
    "StreamIsRecorded",
    "UserControl",
    "WindowAckSize",
    "decode_command",
    "decode_control",
    "decode_data",
    "encode_command",
    "split_aggregate",
    "user_control",
]

# §5.4 / §7.1 message type ids.
SET_CHUNK_SIZE: Final = 1
ABORT: Final = 2
ACKNOWLEDGEMENT: Final = 3
USER_CONTROL: Final = 4
WINDOW_ACK_SIZE: Final = 5
SET_PEER_BANDWIDTH: Final = 6
AUDIO: Final = 8
VIDEO: Final = 9
DATA_AMF3: Final = 15
SHARED_OBJECT_AMF3: Final = 16
COMMAND_AMF3: Final = 17
DATA_AMF0: Final = 18
SHARED_OBJECT_AMF0: Final = 19
COMMAND_AMF0: Final = 20
AGGREGATE: Final = 22
CONTROL_TYPES: Final = frozenset((1, 2, 3, 4, 5, 6))

# §5.4.5 Set Peer Bandwidth limit types.
LIMIT_HARD: Final = 0
LIMIT_SOFT: Final = 1
LIMIT_DYNAMIC: Final = 2

_U32: Final = struct.Struct(">I")
_U16: Final = struct.Struct(">H")
_EVENT_U32: Final = struct.Struct(">HI")
_EVENT_U32_U32: Final = struct.Struct(">HII")


@dataclass(frozen=True, slots=True)
class SetChunkSize:
    """§5.4.1: u32 with bit 31 zero."""

    type_id: ClassVar[int] = SET_CHUNK_SIZE
    size: int

    def encode(self) -> bytes:
        return _U32.pack(self.size & 0x7FFFFFFF)


@dataclass(frozen=True, slots=True)
class Abort:
    """§5.4.2: drop the partial message of chunk stream ``csid``."""

    type_id: ClassVar[int] = ABORT
    csid: int

    def encode(self) -> bytes:
        return _U32.pack(self.csid)


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    """§5.4.3: total bytes received so far, mod 2**32."""

    type_id: ClassVar[int] = ACKNOWLEDGEMENT
    sequence: int

    def encode(self) -> bytes:
        return _U32.pack(self.sequence & 0xFFFFFFFF)


@dataclass(frozen=True, slots=True)
class WindowAckSize:
    """§5.4.4: the sender wants an Acknowledgement every ``size`` bytes."""

    type_id: ClassVar[int] = WINDOW_ACK_SIZE
    size: int

    def encode(self) -> bytes:
        return _U32.pack(self.size)


@dataclass(frozen=True, slots=True)
class SetPeerBandwidth:
    """§5.4.5: u32 window + limit type (0 hard, 1 soft, 2 dynamic)."""

    type_id: ClassVar[int] = SET_PEER_BANDWIDTH
    size: int
    limit_type: int = LIMIT_DYNAMIC

    def encode(self) -> bytes:
        return _U32.pack(self.size) + bytes((self.limit_type,))


# §7.1.7 user control events (message type 4): u16 event type + event data.
@dataclass(frozen=True, slots=True)
class StreamBegin:
    event: ClassVar[int] = 0
    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamEOF:
    event: ClassVar[int] = 1
    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamDry:
    event: ClassVar[int] = 2
    stream_id: int


@dataclass(frozen=True, slots=True)
class SetBufferLength:
    event: ClassVar[int] = 3
    stream_id: int
    buffer_ms: int


@dataclass(frozen=True, slots=True)
class StreamIsRecorded:
    event: ClassVar[int] = 4
    stream_id: int


@dataclass(frozen=True, slots=True)
class PingRequest:
    event: ClassVar[int] = 6
    timestamp: int


@dataclass(frozen=True, slots=True)
class PingResponse:
    event: ClassVar[int] = 7
    timestamp: int


UserControlEvent = (
    StreamBegin
    | StreamEOF
    | StreamDry
    | SetBufferLength
    | StreamIsRecorded
    | PingRequest
    | PingResponse
)
_ONE_U32_EVENTS: Final[dict[int, Any]] = {
    0: StreamBegin,
    1: StreamEOF,
    2: StreamDry,
    4: StreamIsRecorded,
    6: PingRequest,
    7: PingResponse,
}


@dataclass(frozen=True, slots=True)
class UserControl:
    """§5.4 type 4 wrapper; ``event`` is None for event types we do not model."""

    type_id: ClassVar[int] = USER_CONTROL
    event: UserControlEvent | None
    event_type: int = -1

    def encode(self) -> bytes:
        ev = self.event
        if isinstance(ev, SetBufferLength):
            return _EVENT_U32_U32.pack(ev.event, ev.stream_id, ev.buffer_ms)
        if isinstance(ev, PingRequest | PingResponse):
            return _EVENT_U32.pack(ev.event, ev.timestamp & 0xFFFFFFFF)
        if ev is None:
            raise ValueError("cannot encode an unknown user control event")
        return _EVENT_U32.pack(ev.event, ev.stream_id)


ControlMessage = (
    SetChunkSize | Abort | Acknowledgement | WindowAckSize | SetPeerBandwidth | UserControl
)


def decode_control(type_id: int, body: bytes) -> ControlMessage:
    """Parse a protocol/user control body; trailing bytes are ignored (lenient, like FFmpeg)."""
    try:
        if type_id == SET_CHUNK_SIZE:
            return SetChunkSize(_U32.unpack_from(body)[0])
        if type_id == ABORT:
            return Abort(_U32.unpack_from(body)[0])
        if type_id == ACKNOWLEDGEMENT:
            return Acknowledgement(_U32.unpack_from(body)[0])
        if type_id == WINDOW_ACK_SIZE:
            return WindowAckSize(_U32.unpack_from(body)[0])
        if type_id == SET_PEER_BANDWIDTH:
            # Some clients omit the limit type byte: default to dynamic.
            return SetPeerBandwidth(_U32.unpack_from(body)[0], body[4] if len(body) > 4 else 2)
        if type_id == USER_CONTROL:
            event_type = _U16.unpack_from(body)[0]
            if event_type == SetBufferLength.event:
                _, sid, ms = _EVENT_U32_U32.unpack_from(body)
                return UserControl(SetBufferLength(sid, ms), event_type)
            cls = _ONE_U32_EVENTS.get(event_type)
            if cls is None:
                return UserControl(None, event_type)
            return UserControl(cls(_EVENT_U32.unpack_from(body)[1]), event_type)
    except struct.error:
        raise RemoteProtocolError("control-message-size") from None
    raise ValueError(f"not a control message type: {type_id}")


def user_control(event: UserControlEvent) -> UserControl:
    return UserControl(event, event.event)


@dataclass(frozen=True, slots=True)
class Command:
    """§7.1.1 command: name, transaction id, command object, optional arguments."""

    name: str
    transaction_id: float
    command_object: Any = None
    args: tuple[Any, ...] = field(default=())


def encode_command(cmd: Command) -> bytes:
    """AMF0 body of a type 20 message."""
    return amf0.encode(cmd.name, cmd.transaction_id, cmd.command_object, *cmd.args)


def decode_command(type_id: int, body: bytes, limits: amf0.AmfLimits) -> Command:
    """Type 20 (AMF0) or 17 (AMF3 wrapper) body -> Command (reason "command-malformed")."""
    if type_id == COMMAND_AMF3:
        values = amf0.decode_amf3_message_body(body, limits)
    else:
        values = amf0.decode_all(body, limits)
    if not values or not isinstance(values[0], str):
        raise RemoteProtocolError("command-malformed")
    txn = values[1] if len(values) > 1 else 0.0
    # A missing or non-numeric transaction id is treated as 0 (no reply expected).
    if isinstance(txn, bool) or not isinstance(txn, int | float) or txn != txn:
        txn = 0.0
    obj = values[2] if len(values) > 2 else None
    return Command(values[0], float(txn), obj, tuple(values[3:]))


def decode_data(type_id: int, body: bytes, limits: amf0.AmfLimits) -> list[Any]:
    """Type 18 (AMF0) or 15 (AMF3 wrapper) body -> values."""
    if type_id == DATA_AMF3:
        return amf0.decode_amf3_message_body(body, limits)
    return amf0.decode_all(body, limits)


@dataclass(frozen=True, slots=True)
class AggregatePart:
    """One sub-message of an aggregate, its timestamp already shifted (31-bit clock)."""

    type_id: int
    timestamp: int
    stream_id: int
    body: bytes


_SUB_HEADER: Final = 11  # type u8, size u24, ts u24 + u8 high, stream id u24
_BACK_POINTER: Final = 4


def split_aggregate(body: bytes, timestamp: int) -> list[AggregatePart]:
    """§7.1.6: split a type 22 body; shift times by aggregate ts minus the first sub ts."""
    parts: list[AggregatePart] = []
    pos, n = 0, len(body)
    shift: int | None = None
    while pos < n:
        if pos + _SUB_HEADER > n:
            raise RemoteProtocolError("aggregate-malformed")
        type_id = body[pos]
        size = int.from_bytes(body[pos + 1 : pos + 4], "big")
        sub_ts = int.from_bytes(body[pos + 4 : pos + 7], "big") | (body[pos + 7] << 24)
        stream_id = int.from_bytes(body[pos + 8 : pos + 11], "big")
        start = pos + _SUB_HEADER
        end = start + size
        if end + _BACK_POINTER > n:
            raise RemoteProtocolError("aggregate-malformed")
        if shift is None:
            shift = timestamp - sub_ts
        ts = (sub_ts + shift) & 0x7FFFFFFF
        parts.append(AggregatePart(type_id, ts, stream_id, bytes(body[start:end])))
        pos = end + _BACK_POINTER
    return parts
