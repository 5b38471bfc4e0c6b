"""RTMP chunk stream (RTMP 1.0 §5.3): decoder and encoder with per-chunk-stream state.

Both sides apply Set Chunk Size (§5.4.1) themselves when such a message passes through,
so the inbound and outbound sizes stay independent as §5.4.1 requires. The decoder also
applies Abort (§5.4.2). Timestamps are kept as a 31-bit clock (docs/protocol.md §2: some peers
put garbage in bit 31); the connection unwraps them.
"""

from __future__ import annotations

import struct
from typing import Final

from gateway.rtmp.errors import RemoteProtocolError
from gateway.rtmp.limits import Limits
from gateway.rtmp.records import record

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "TIMESTAMP_MASK",
    "ChunkDecoder",
    "ChunkEncoder",
    "RawMessage",
    "basic_header",
]

DEFAULT_CHUNK_SIZE: Final = 128  # §5.4.1: both directions start at 128
TIMESTAMP_MASK: Final = 0x7FFFFFFF  # 31-bit clock (docs/protocol.md §2)
EXTENDED: Final = 0xFFFFFF  # §5.3.1.3: this 24-bit value means "extended timestamp follows"
MAX_CSID: Final = 65599  # §5.3.1.1: 3-byte basic header maximum
TYPE_SET_CHUNK_SIZE: Final = 1
TYPE_ABORT: Final = 2
# Compact the input buffer once this many consumed bytes sit at its front.
_COMPACT_AT: Final = 1 << 16
_HEADER_SIZE: Final = (11, 7, 3, 0)  # §5.3.1.2 message header size by fmt

_U32: Final = struct.Struct(">I")
_U32LE: Final = struct.Struct("<I")


@record
class RawMessage:
    """One reassembled message (§5.3.1.2 fields); ``timestamp`` is the 31-bit clock."""

    csid: int
    timestamp: int
    type_id: int
    stream_id: int
    body: bytes


class _InStream:
    """Receive state of one chunk stream id."""

    __slots__ = ("extended", "field", "length", "payload", "stream_id", "timestamp", "type_id")

    def __init__(self) -> None:
        self.timestamp = 0  # clock of the current/last message (31 bits)
        self.field = 0  # last header timestamp field incl. extended value (abs for fmt 0)
        self.extended = False  # that field came as an extended timestamp
        self.length = 0
        self.type_id = 0
        self.stream_id = 0
        self.payload: bytearray | None = None  # unfinished message, None between messages


def _u24(buf: bytearray, p: int) -> int:
    return (buf[p] << 16) | (buf[p + 1] << 8) | buf[p + 2]


class ChunkDecoder:
    """Reassembles messages from chunks. ``feed`` buffers; ``next_message`` parses lazily.

    Parsing is all-or-nothing per chunk: state changes only once a whole chunk is buffered,
    so results do not depend on how the input was split.
    """

    def __init__(self, limits: Limits | None = None) -> None:
        self._limits = limits if limits is not None else Limits()
        self._buf = bytearray()
        self._pos = 0
        self._streams: dict[int, _InStream] = {}
        self._partial_bytes = 0
        self._wanted = 1
        self._after_chunk = 1  # wanted bytes if the input ends right after the last chunk
        self.chunk_size = DEFAULT_CHUNK_SIZE

    @property
    def buffered_bytes(self) -> int:
        """Bytes held that are not yet part of a complete message (payload + raw input)."""
        return self._partial_bytes + len(self._buf) - self._pos

    @property
    def wanted_bytes(self) -> int:
        """After ``next_message`` returned None: input bytes (>= 1) that are most likely needed
        before it can return a message - the rest of the message in progress, else 1.

        A hint for the transport (e.g. a socket's receive low-water mark) to wake up once per
        message instead of once per TCP segment; parsing never depends on it.
        """
        return self._wanted

    @property
    def partial_bytes(self) -> int:
        return self._partial_bytes

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._pos >= _COMPACT_AT:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def set_chunk_size(self, size: int) -> None:
        """§5.4.1 inbound; bounds from Limits (reason "chunk-size")."""
        if not self._limits.min_chunk_size <= size <= self._limits.max_chunk_size:
            lo, hi = self._limits.min_chunk_size, self._limits.max_chunk_size
            raise RemoteProtocolError("chunk-size", f"Set Chunk Size {size} outside {lo}..{hi}")
        self.chunk_size = size

    def abort(self, csid: int) -> None:
        """§5.4.2: discard the partly received message of ``csid``."""
        st = self._streams.get(csid)
        if st is not None and st.payload is not None:
            self._partial_bytes -= len(st.payload)
            st.payload = None

    def next_message(self) -> RawMessage | None:
        """Return the next complete message, or None when more input is needed."""
        while True:
            result = self._read_chunk()
            if result is None:
                return None
            if isinstance(result, RawMessage):
                self._apply_control(result)
                return result

    def _apply_control(self, msg: RawMessage) -> None:
        if msg.type_id == TYPE_SET_CHUNK_SIZE:
            if len(msg.body) < 4:
                raise RemoteProtocolError("control-message-size")
            # §5.4.1: bit 31 must be zero; a set bit is refused by the range check below.
            self.set_chunk_size(_U32.unpack_from(msg.body)[0])
        elif msg.type_id == TYPE_ABORT:
            if len(msg.body) < 4:
                raise RemoteProtocolError("control-message-size")
            self.abort(_U32.unpack_from(msg.body)[0])

    def _read_chunk(self) -> RawMessage | bool | None:
        """Parse one chunk: None = need data, True = consumed (message unfinished)."""
        buf, p = self._buf, self._pos
        n = len(buf)
        self._wanted = 1  # header incomplete: its size is not known yet
        if p >= n:
            self._wanted = self._after_chunk
            return None
        b0 = buf[p]
        fmt, csid = b0 >> 6, b0 & 0x3F
        p += 1
        if csid == 0:  # §5.3.1.1 two-byte form: 64..319
            if p + 1 > n:
                return None
            csid = buf[p] + 64
            p += 1
        elif csid == 1:  # three-byte form, little-endian: 64..65599
            if p + 2 > n:
                return None
            csid = buf[p] + (buf[p + 1] << 8) + 64
            p += 2
        if p + _HEADER_SIZE[fmt] > n:
            return None
        st = self._streams.get(csid)
        if st is None:
            # §5.3.1.2: a chunk stream starts with fmt 0; fmt 1 is tolerated (msid 0) since
            # some encoders open control streams that way. fmt 2/3 have nothing to inherit.
            if fmt >= 2:
                raise RemoteProtocolError("chunk-no-header")
            if len(self._streams) >= self._limits.max_chunk_streams:
                raise RemoteProtocolError(
                    "too-many-chunk-streams",
                    f"chunk stream {csid} past the {self._limits.max_chunk_streams} allowed",
                )
        new_message = st is None or st.payload is None or fmt < 3
        field = 0
        extended = False
        length = type_id = stream_id = 0
        if fmt <= 2:
            field = _u24(buf, p)
            if fmt <= 1:
                length = _u24(buf, p + 3)
                type_id = buf[p + 6]
            if fmt == 0:
                stream_id = _U32LE.unpack_from(buf, p + 7)[0]  # §5.3.1.2.1: little-endian
            p += _HEADER_SIZE[fmt]
            if field == EXTENDED:  # §5.3.1.3
                if p + 4 > n:
                    return None
                field = _U32.unpack_from(buf, p)[0]
                extended = True
                p += 4
        elif st is not None and st.extended:
            # Type 3 after an extended header: peers differ on repeating the extended field
            # (docs/protocol.md §2). Take 4 bytes as the repeat only if they equal it.
            want = _U32.pack(st.field)
            k = min(4, n - p)
            if buf[p : p + k] == want[:k]:
                if k < 4:
                    return None
                p += 4
        if st is not None and fmt == 3:
            field, extended = st.field, st.extended
        # Message header of a new message, per fmt (§5.3.1.2.1-4).
        if new_message:
            prev_ts = st.timestamp if st is not None else 0
            # fmt 0 is absolute; else a delta (a fmt 3 starting a message re-applies the last).
            timestamp = (field if fmt == 0 else prev_ts + field) & TIMESTAMP_MASK
            if fmt >= 2 and st is not None:
                length, type_id = st.length, st.type_id
            if fmt >= 1 and st is not None:
                stream_id = st.stream_id
            if length > self._limits.max_message_size:
                raise RemoteProtocolError(
                    "message-too-large",
                    f"type {type_id} message of {length} bytes, max_message_size is "
                    f"{self._limits.max_message_size}",
                )
            remaining = length
        else:
            assert st is not None and st.payload is not None
            timestamp = st.timestamp
            length, type_id, stream_id = st.length, st.type_id, st.stream_id
            remaining = length - len(st.payload)
        size = min(self.chunk_size, remaining)
        if p + size > n:
            self._wanted = p + remaining - n
            return None
        # The whole chunk is buffered: commit.
        if st is None:
            st = self._streams[csid] = _InStream()
        if new_message:
            if st.payload is not None:  # a header in mid-message: drop the unfinished one
                self._partial_bytes -= len(st.payload)
            st.timestamp, st.length, st.type_id, st.stream_id = (
                timestamp,
                length,
                type_id,
                stream_id,
            )
            st.field, st.extended = field, extended
            st.payload = bytearray()
        assert st.payload is not None
        payload = st.payload
        payload += buf[p : p + size]
        self._pos = p + size
        if len(payload) < length:
            self._partial_bytes += size
            if self._partial_bytes > self._limits.max_buffered_bytes:
                raise RemoteProtocolError(
                    "buffer-overflow",
                    f"{self._partial_bytes} bytes of unfinished messages, at most "
                    f"{self._limits.max_buffered_bytes}",
                )
            self._after_chunk = 1 + length - len(payload)  # type-3 header + the rest
            return True
        self._partial_bytes -= length - size
        self._after_chunk = 1
        st.payload = None
        return RawMessage(csid, timestamp, type_id, stream_id, bytes(payload))


def basic_header(fmt: int, csid: int) -> bytes:
    """§5.3.1.1 basic header in its shortest form."""
    if 2 <= csid <= 63:
        return bytes(((fmt << 6) | csid,))
    if 64 <= csid <= 319:
        return bytes((fmt << 6, csid - 64))
    if 320 <= csid <= MAX_CSID:
        v = csid - 64
        return bytes(((fmt << 6) | 1, v & 0xFF, v >> 8))
    raise ValueError(f"chunk stream id out of range: {csid}")


class _OutStream:
    __slots__ = ("field", "field_is_delta", "length", "stream_id", "timestamp", "type_id")

    def __init__(self, timestamp: int, field: int, length: int, type_id: int, stream_id: int):
        self.timestamp = timestamp
        self.field = field
        self.field_is_delta = False
        self.length = length
        self.type_id = type_id
        self.stream_id = stream_id


class ChunkEncoder:
    """Splits messages into chunks, compressing headers like FFmpeg/librtmp (§5.3.1.2).

    fmt 0 for a new chunk stream, another message stream id or a clock going backwards
    (incl. u32 wrap); fmt 1 when length/type change; fmt 2 for a new delta; fmt 3 when the
    delta repeats. fmt 3 never follows fmt 0 for a new message: peers disagree on what delta
    that implies. Extended timestamps are repeated on every type-3 chunk (as FFmpeg does).
    """

    def __init__(self, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        self.chunk_size = chunk_size
        self._streams: dict[int, _OutStream] = {}

    def set_chunk_size(self, size: int) -> None:
        if size < 1:
            raise ValueError("chunk size must be >= 1")
        self.chunk_size = size

    def encode(self, csid: int, timestamp: int, type_id: int, stream_id: int, body: bytes) -> bytes:
        return b"".join(self.encode_chunks(csid, timestamp, type_id, stream_id, body))

    def encode_chunks(
        self, csid: int, timestamp: int, type_id: int, stream_id: int, body: bytes
    ) -> list[bytes]:
        """Like ``encode`` but one bytes per chunk, so chunk streams can be interleaved."""
        if len(body) > 0xFFFFFF:
            raise ValueError("message longer than the u24 length field")
        ts = timestamp & 0xFFFFFFFF
        length = len(body)
        st = self._streams.get(csid)
        if st is None or st.stream_id != stream_id or ts < st.timestamp:
            fmt, field = 0, ts
        else:
            field = ts - st.timestamp
            if length != st.length or type_id != st.type_id:
                fmt = 1
            elif st.field_is_delta and field == st.field:
                fmt = 3
            else:
                fmt = 2
        ext = field >= EXTENDED
        ext_bytes = _U32.pack(field) if ext else b""
        out = bytearray(basic_header(fmt, csid))
        chunks: list[bytes] = []
        if fmt <= 2:
            out += (EXTENDED if ext else field).to_bytes(3, "big")
            if fmt <= 1:
                out += length.to_bytes(3, "big")
                out.append(type_id)
            if fmt == 0:
                out += _U32LE.pack(stream_id)
        out += ext_bytes
        cont = basic_header(3, csid) + ext_bytes
        size = self.chunk_size
        out += body[:size]
        chunks.append(bytes(out))
        for off in range(size, length, size):
            chunks.append(cont + body[off : off + size])
        if st is None:
            st = self._streams[csid] = _OutStream(ts, field, length, type_id, stream_id)
        st.timestamp, st.field, st.length, st.type_id, st.stream_id = (
            ts,
            field,
            length,
            type_id,
            stream_id,
        )
        st.field_is_delta = fmt != 0
        if type_id == TYPE_SET_CHUNK_SIZE and length >= 4:  # §5.4.1, like the decoder
            self.set_chunk_size(_U32.unpack_from(body)[0] & 0x7FFFFFFF)
        return chunks
