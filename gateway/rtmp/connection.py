"""RTMP connection state machine, sans-IO (h11 style): bytes in, events out, bytes to send.

``receive_data`` only buffers (and acknowledges on time, RTMP 1.0 §5.4.3); ``next_event``
parses lazily; the server layer answers requests with ``accept_*`` / ``reject_*``. Command
handling (§7.2) lives in commands.py; this module owns state, framing and media.
"""

from __future__ import annotations

import enum
import os
from collections import deque
from collections.abc import Callable
from typing import Any, Final

from gateway.rtmp import amf0, client, commands, ertmp, events, handshake
from gateway.rtmp import messages as m
from gateway.rtmp.chunk import TIMESTAMP_MASK, ChunkDecoder, ChunkEncoder, RawMessage
from gateway.rtmp.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from gateway.rtmp.events import NEED_DATA, Event
from gateway.rtmp.limits import Limits

__all__ = ["NEED_DATA", "Connection", "Role", "State", "StreamState"]

# Outbound chunk stream ids (peers must not rely on numbers; these follow nginx-rtmp).
CSID_CONTROL: Final = 2  # §5.4: protocol control on csid 2
CSID_COMMAND: Final = 3  # NetConnection commands
CSID_STREAM: Final = 5  # NetStream commands, status and data
CSID_AUDIO: Final = 6
CSID_VIDEO: Final = 7
# Data message names passed on to the server (docs/protocol.md §4.5); others are dropped.
ALLOWED_DATA: Final = frozenset(("onMetaData", "onTextData", "onCuePoint", "onCaption"))
SET_DATA_FRAME: Final = "@setDataFrame"
_HALF_CLOCK: Final = 1 << 30  # serial arithmetic (RFC 1982) on the 31-bit clock


class Role(enum.Enum):
    SERVER = "server"
    CLIENT = "client"


class State(enum.Enum):
    HANDSHAKE = "handshake"  # waiting for C0+C1 (server) or S0+S1+S2 (client)
    HANDSHAKE_ACK = "handshake-ack"  # server: S0+S1+S2 sent, waiting for C2
    WAIT_CONNECT = "wait-connect"  # handshake done, no connect yet
    CONNECT_PENDING = "connect-pending"  # ConnectRequest surfaced, no decision yet
    CONNECTED = "connected"
    REJECTED = "rejected"  # connect refused: input is drained until EOF
    CLOSED = "closed"  # EOF seen and processed
    ERROR = "error"  # sticky after a remote protocol error


class StreamState(enum.Enum):
    CREATED = "created"
    PUBLISH_PENDING = "publish-pending"
    PUBLISHING = "publishing"
    PLAY_PENDING = "play-pending"
    PLAYING = "playing"


_PUBLISHER_MEDIA: Final = frozenset((StreamState.PUBLISH_PENDING, StreamState.PUBLISHING))
_PLAYER_MEDIA: Final = frozenset((StreamState.PLAY_PENDING, StreamState.PLAYING))


class MessageStream:
    """A message stream made by createStream (§7.2.1.3)."""

    __slots__ = ("name", "state")

    def __init__(self) -> None:
        self.state = StreamState.CREATED
        self.name = ""


class Connection(client.ClientMixin):
    def __init__(
        self,
        role: Role = Role.SERVER,
        limits: Limits | None = None,
        *,
        random_bytes: Callable[[int], bytes] = os.urandom,
        epoch_ms: Callable[[], int] | None = None,
    ) -> None:
        self.role = role
        self.limits = limits if limits is not None else Limits()
        self._random = random_bytes
        self._epoch_ms = epoch_ms
        self._state = State.HANDSHAKE
        self._error: RemoteProtocolError | None = None
        self._hs_buf = bytearray()
        self._decoder = ChunkDecoder(self.limits)
        self._encoder = ChunkEncoder()
        self._out = bytearray()
        self._events: deque[Event] = deque()
        self._eof = False
        self._bytes_received = 0
        self._bytes_sent = 0
        self._peer_window = 0  # §5.4.4: 0 until the peer announces one
        self._last_ack = 0
        self.peer_acknowledged = 0  # last Acknowledgement sequence from the peer
        self.dropped_messages = 0  # data/media we did not pass on (observability)
        self.streams: dict[int, MessageStream] = {}
        self._clocks: dict[int, tuple[int, int]] = {}  # msid -> (last 31-bit ts, unwrapped)
        self._connect_txn = 0.0
        # Server role: what the client announced in connect (E-RTMP); client role: what the
        # server announced in its connect _result.
        self.peer_caps = ertmp.Capabilities()
        self._object_encoding: float = 0.0
        self._digest = False  # the peer used the Flash 9 digest handshake
        self._client_hs: handshake.ClientHandshake | None = None
        self._cli: client.ClientState | None = None
        if role is Role.CLIENT:
            self._cli = client.ClientState()
            self._client_hs = handshake.ClientHandshake(
                time_ms=self._now(), random_bytes=random_bytes
            )
            self._out += self._client_hs.c0c1()

    # ---- public surface -------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def bytes_received(self) -> int:
        return self._bytes_received

    @property
    def bytes_sent(self) -> int:
        return self._bytes_sent

    @property
    def has_data_to_send(self) -> bool:
        """Cheap test for output, so a caller can skip a write (and its lock)."""
        return bool(self._out)

    def wanted_bytes(self, floor: int = 1) -> int:
        """After NEED_DATA: bytes to wait for before reading again (a hint for the transport):
        at least ``floor``, the rest of the message in progress, but never past the byte that
        makes our Acknowledgement due (§5.4.3: a peer may stop until it gets one)."""
        if self._state in (State.HANDSHAKE, State.HANDSHAKE_ACK):
            return 1
        wanted = max(floor, self._decoder.wanted_bytes)
        if self._peer_window:
            return max(1, min(wanted, self._last_ack + self._peer_window - self._bytes_received))
        return wanted

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer (copy) bytes from the peer; ``b""`` means the peer closed (EOF). The caller may
        reuse ``data``'s memory once this returns."""
        self._check_error()
        if self._eof:
            raise LocalProtocolError("receive-after-eof")
        if not data:
            self._eof = True
            return
        self._bytes_received += len(data)
        if self._state in (State.HANDSHAKE, State.HANDSHAKE_ACK):
            self._hs_buf += data
        else:
            self._decoder.feed(data)
        self._maybe_ack()

    def next_event(self) -> Event | type[NEED_DATA]:
        self._check_error()
        try:
            while not self._events:
                ev = self._step()
                if ev is not None:
                    return ev
            return self._events.popleft()
        except RemoteProtocolError as exc:
            self._error = exc
            self._state = State.ERROR
            raise

    def data_to_send(self) -> bytes:
        """Drain queued outbound bytes (allowed in ERROR too, to flush what was queued)."""
        out = bytes(self._out)
        self._out.clear()
        self._bytes_sent += len(out)
        return out

    # ---- decisions of the server layer (§7.2 replies) ----------------------------------

    def accept_connect(self) -> None:
        """§7.2.1.1: window, peer bandwidth, chunk size, then _result Connect.Success."""
        self._expect_state(State.CONNECT_PENDING)
        lim = self.limits
        self._send_control(m.WindowAckSize(lim.window_ack_size))
        self._send_control(m.SetPeerBandwidth(lim.window_ack_size, m.LIMIT_DYNAMIC))
        self._send_control(m.SetChunkSize(lim.out_chunk_size))  # encoder switches after it
        props: dict[str, Any] = {"fmsVer": "FMS/3,0,1,123", "capabilities": 31.0}
        if self.peer_caps.announced:
            # E-RTMP: an enhanced client is told what we support (legacy ones get the old bytes).
            props.update(ertmp.server_properties())
        info = {
            "level": "status",
            "code": "NetConnection.Connect.Success",
            "description": "Connection succeeded.",
            "objectEncoding": self._object_encoding,
        }
        self.send_command(CSID_COMMAND, 0, "_result", self._connect_txn, props, info)
        self._state = State.CONNECTED

    def reject_connect(self, description: str) -> None:
        self._expect_state(State.CONNECT_PENDING)
        info = {"level": "error", "code": "NetConnection.Connect.Rejected"}
        info["description"] = description
        self.send_command(CSID_COMMAND, 0, "_error", self._connect_txn, None, info)
        self._state = State.REJECTED

    def accept_publish(self, stream_id: int) -> None:
        """§7.2.2.6: StreamBegin + onStatus NetStream.Publish.Start (after authorisation)."""
        st = self._pending(stream_id, StreamState.PUBLISH_PENDING)
        self._send_control(m.user_control(m.StreamBegin(stream_id)))
        self.send_status(stream_id, "status", "NetStream.Publish.Start", f"{st.name} is published.")
        st.state = StreamState.PUBLISHING

    def reject_publish(self, stream_id: int, code: str, description: str) -> None:
        st = self._pending(stream_id, StreamState.PUBLISH_PENDING)
        self.send_status(stream_id, "error", code, description)
        st.state = StreamState.CREATED

    def accept_play(self, stream_id: int) -> None:
        """§7.2.2.1: StreamBegin, Play.Reset, Play.Start, |RtmpSampleAccess; docs/protocol.md §4."""
        st = self._pending(stream_id, StreamState.PLAY_PENDING)
        self._send_control(m.user_control(m.StreamBegin(stream_id)))
        self.send_status(stream_id, "status", "NetStream.Play.Reset", f"Playing {st.name}.")
        self.send_status(stream_id, "status", "NetStream.Play.Start", f"Started {st.name}.")
        body = amf0.encode("|RtmpSampleAccess", True, True)
        self._send(CSID_STREAM, m.DATA_AMF0, stream_id, body)
        st.state = StreamState.PLAYING

    def reject_play(self, stream_id: int, code: str, description: str) -> None:
        st = self._pending(stream_id, StreamState.PLAY_PENDING)
        self.send_status(stream_id, "error", code, description)
        st.state = StreamState.CREATED

    def send_reconnect_request(self, description: str, tc_url: str | None = None) -> None:
        """E-RTMP v2 "Reconnect Request": NetConnection onStatus (stream 0, transaction 0, null
        command object) asking the client to reconnect, to ``tc_url`` or the same server."""
        self._check_error()
        if self._state is not State.CONNECTED:
            raise LocalProtocolError("not-connected")
        info = ertmp.reconnect_info(description, tc_url)
        self.send_command(CSID_COMMAND, 0, "onStatus", 0.0, None, info)

    def send_status(self, stream_id: int, level: str, code: str, description: str) -> None:
        self._check_error()
        info = {"level": level, "code": code, "description": description}
        self.send_command(CSID_STREAM, stream_id, "onStatus", 0.0, None, info)

    def send_media(self, stream_id: int, type: int, timestamp: int, body: bytes) -> None:
        """Audio/video/data to the peer on their own chunk streams; time is sent mod 2**32."""
        self._check_error()
        if self._state is not State.CONNECTED:
            raise LocalProtocolError("not-connected")
        csid = {m.AUDIO: CSID_AUDIO, m.VIDEO: CSID_VIDEO}.get(type, CSID_STREAM)
        self._send(csid, type, stream_id, body, timestamp)

    def send_command(
        self, csid: int, stream_id: int, name: str, txn: float, obj: Any, *args: Any
    ) -> None:
        """Queue an AMF0 command message (§7.1.1)."""
        self._check_error()
        body = m.encode_command(m.Command(name, txn, obj, args))
        self._send(csid, m.COMMAND_AMF0, stream_id, body)

    # ---- internals ----------------------------------------------------------------------

    def _now(self) -> int:
        return self._epoch_ms() if self._epoch_ms is not None else 0

    def _check_error(self) -> None:
        if self._error is not None:
            raise RemoteProtocolError(self._error.reason, status_code=self._error.status_code)

    def _expect_state(self, state: State) -> None:
        self._check_error()
        if self._state is not state:
            raise LocalProtocolError(f"wrong-state: {self._state.value}")

    def _pending(self, stream_id: int, state: StreamState) -> MessageStream:
        self._check_error()
        st = self.streams.get(stream_id)
        if st is None or st.state is not state:
            raise LocalProtocolError(f"stream-not-{state.value}")
        return st

    def _send(self, csid: int, type_id: int, stream_id: int, body: bytes, ts: int = 0) -> None:
        self._out += self._encoder.encode(csid, ts, type_id, stream_id, body)

    def _send_control(self, msg: m.ControlMessage) -> None:
        self._send(CSID_CONTROL, msg.type_id, 0, msg.encode())

    def _maybe_ack(self) -> None:
        """§5.4.3: acknowledge as soon as the peer's window of bytes has been received."""
        if self._peer_window and self._bytes_received - self._last_ack >= self._peer_window:
            self._last_ack = self._bytes_received
            self._send_control(m.Acknowledgement(self._bytes_received))

    def _step(self) -> Event | type[NEED_DATA] | None:
        """Advance once: an event, NEED_DATA, or None to keep going."""
        st = self._state
        if st is State.HANDSHAKE:
            return self._step_handshake()
        if st is State.HANDSHAKE_ACK:
            if len(self._hs_buf) < handshake.C1_SIZE:
                return self._need()
            # §5.2: C2 should echo S1; not checked (FFmpeg's own server only warns).
            return self._handshake_done(handshake.C1_SIZE, self._digest)
        if st is State.CLOSED:
            return events.ConnectionClosed()
        msg = self._decoder.next_message()
        if msg is None:
            return self._need()
        self._on_message(msg)
        return None

    def _need(self) -> Event | type[NEED_DATA]:
        if self._eof:
            self._state = State.CLOSED
            return events.ConnectionClosed()
        return NEED_DATA

    def _step_handshake(self) -> Event | type[NEED_DATA] | None:
        buf = self._hs_buf
        if self._client_hs is not None:
            if buf[:1] and buf[0] != handshake.RTMP_VERSION:
                handshake.check_version(buf[0])
            if len(buf) < 1 + 2 * handshake.C1_SIZE:
                return self._need()
            self._out += self._client_hs.c2(bytes(buf[: 1 + 2 * handshake.C1_SIZE]))
            return self._handshake_done(1 + 2 * handshake.C1_SIZE, False)
        if buf[:1]:
            handshake.check_version(buf[0])  # fail fast on TLS/HTTP, before 1537 bytes
        if len(buf) < 1 + handshake.C1_SIZE:
            return self._need()
        reply = handshake.server_reply(
            bytes(buf[: 1 + handshake.C1_SIZE]), time_ms=self._now(), random_bytes=self._random
        )
        del buf[: 1 + handshake.C1_SIZE]
        self._out += reply.data
        self._digest = reply.digest
        self._state = State.HANDSHAKE_ACK
        return None

    def _handshake_done(self, consumed: int, digest: bool) -> Event:
        rest = bytes(self._hs_buf[consumed:])
        self._hs_buf = bytearray()
        self._decoder.feed(rest)
        self._state = State.WAIT_CONNECT
        if self._cli is not None and self._cli.connect_obj is not None:
            self._send_connect()  # connect() was called during the handshake
        return events.HandshakeComplete(digest)

    def _on_message(self, msg: RawMessage) -> None:
        t = msg.type_id
        if t in m.CONTROL_TYPES:
            self._on_control(m.decode_control(t, msg.body))
        elif t in (m.COMMAND_AMF0, m.COMMAND_AMF3):
            handle = client.handle_command if self._cli else commands.handle_command
            handle(self, msg.stream_id, m.decode_command(t, msg.body, self.limits.amf))
        elif t in (m.AUDIO, m.VIDEO, m.DATA_AMF0, m.DATA_AMF3):
            self._on_media(msg.stream_id, t, msg.timestamp, msg.body)
        elif t == m.AGGREGATE:
            for part in m.split_aggregate(msg.body, msg.timestamp):
                if part.type_id in (m.AUDIO, m.VIDEO, m.DATA_AMF0):
                    self._on_media(msg.stream_id, part.type_id, part.timestamp, part.body)
        # Shared objects (16/19) and unknown types are ignored (§7.1.3: not used by encoders).

    def _on_control(self, msg: m.ControlMessage) -> None:
        # Set Chunk Size and Abort were applied by the chunk decoder already (§5.4.1-2).
        if isinstance(msg, m.WindowAckSize):
            self._peer_window = msg.size
            self._maybe_ack()
        elif isinstance(msg, m.SetPeerBandwidth):
            self._on_peer_bandwidth(msg.size)
        elif isinstance(msg, m.Acknowledgement):
            self.peer_acknowledged = msg.sequence
        elif isinstance(msg, m.UserControl):
            ev = msg.event
            if isinstance(ev, m.PingRequest):  # §7.1.7: answer with the same timestamp
                self._send_control(m.user_control(m.PingResponse(ev.timestamp)))
            elif isinstance(ev, m.SetBufferLength):
                self._events.append(events.SetBufferLength(ev.stream_id, ev.buffer_ms))

    def _on_media(self, stream_id: int, type_id: int, timestamp: int, body: bytes) -> None:
        st = self.streams.get(stream_id)
        # A server takes media from its publishers; a client (pull relay) from what it plays.
        states = _PLAYER_MEDIA if self._cli is not None else _PUBLISHER_MEDIA
        if st is None or st.state not in states or not body:
            self.dropped_messages += 1
            return
        if type_id in (m.DATA_AMF0, m.DATA_AMF3):
            data = self._clean_data(type_id, body)
            if data is None:
                self.dropped_messages += 1
                return
            type_id, body = m.DATA_AMF0, data
        ts = self._unwrap(stream_id, timestamp)
        self._events.append(events.Media(stream_id, type_id, ts, body))

    def _clean_data(self, type_id: int, body: bytes) -> bytes | None:
        """Strip @setDataFrame and re-encode as AMF0 (docs/protocol.md §4.5); None = drop."""
        try:
            values = m.decode_data(type_id, body, self.limits.amf)
            if values[:1] == [SET_DATA_FRAME]:
                values = values[1:]
            if not values or values[0] not in ALLOWED_DATA:
                return None
            return amf0.encode(*values)
        except ProtocolError:  # a bad data message is not worth the connection
            return None

    def _unwrap(self, stream_id: int, ts: int) -> int:
        """Serial-arithmetic unwrap of the 31-bit clock per message stream (docs/protocol.md §7)."""
        prev = self._clocks.get(stream_id)
        if prev is None:
            value = ts
        else:
            diff = (ts - prev[0]) & TIMESTAMP_MASK
            if diff >= _HALF_CLOCK:
                diff -= TIMESTAMP_MASK + 1
            value = prev[1] + diff
        self._clocks[stream_id] = (ts, value)
        return value

    def _queue(self, event: Event) -> None:
        self._events.append(event)
