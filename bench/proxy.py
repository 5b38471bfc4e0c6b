"""A loopback TCP proxy in front of a target's RTMP port that timestamps the publisher's keyframes.

The client->server bytes are passed on unchanged and also decoded (RTMP 1.0 §5.2 handshake sizes,
§5.3 chunk stream with the project's own sans-IO chunk decoder), so the bench knows when each video
keyframe reached the server's socket, for any target. Timestamps come from ``trio.current_time``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import trio

from gateway.rtmp.chunk import ChunkDecoder

# RTMP 1.0 §5.2: C0 (1 byte) + C1 (1536) + C2 (1536) precede the first chunk.
HANDSHAKE_BYTES = 1 + 1536 + 1536
# Bytes read from a socket at once.
READ_SIZE = 65536
TYPE_VIDEO = 9  # RTMP 1.0 §7.1.5 video message
KEYFRAME = 1  # FLV VideoTagHeader FrameType (E.4.3.1): 1 = key frame


@dataclass(frozen=True)
class Keyframe:
    timestamp_ms: int  # the RTMP message timestamp
    arrived: float  # trio clock when its last byte was written to the server


@dataclass
class KeyframeLog:
    connected_at: float | None = None  # trio clock of the publisher's TCP connect
    keyframes: list[Keyframe] = field(default_factory=list)
    last_media_ms: int | None = None  # newest audio/video timestamp passed on
    errors: list[str] = field(default_factory=list)
    capture: bytearray | None = None  # when set, every client->server byte (hotpath replay)

    def nearest(self, timestamp_ms: float) -> Keyframe | None:
        return min(self.keyframes, key=lambda k: abs(k.timestamp_ms - timestamp_ms), default=None)


def _is_keyframe(body: bytes) -> bool:
    if not body or body[0] >> 4 & 0x7 != KEYFRAME:
        return False
    if body[0] & 0x80:  # Enhanced RTMP: packet type in the low nibble, 0 = sequence start
        return body[0] & 0x0F != 0
    # Legacy AVC/HEVC: AVCPacketType 0 is the sequence header, not a frame.
    return len(body) > 1 and body[1] != 0


class Decoder:
    """Client->server bytes in, keyframe arrival records out."""

    def __init__(self, log: KeyframeLog) -> None:
        self.log = log
        self._skip = HANDSHAKE_BYTES
        self._chunks = ChunkDecoder()

    def feed(self, data: bytes, now: float) -> None:
        if self.log.capture is not None:
            self.log.capture += data
        if self._skip:
            n = min(self._skip, len(data))
            self._skip -= n
            data = data[n:]
        if not data:
            return
        self._chunks.feed(data)
        while (msg := self._chunks.next_message()) is not None:
            if msg.type_id in (8, TYPE_VIDEO):
                self.log.last_media_ms = msg.timestamp
            if msg.type_id == TYPE_VIDEO and _is_keyframe(msg.body):
                self.log.keyframes.append(Keyframe(msg.timestamp, now))


async def serve_proxy(
    upstream_port: int,
    log: KeyframeLog,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on a free loopback port (reported via ``task_status``) and relay to upstream."""

    async def relay(client: trio.SocketStream) -> None:
        if log.connected_at is None:
            log.connected_at = trio.current_time()
        decoder = Decoder(log)
        try:
            server = await trio.open_tcp_stream("127.0.0.1", upstream_port)
        except OSError as exc:
            log.errors.append(f"upstream: {exc}")
            return

        async def up() -> None:
            while data := await client.receive_some(READ_SIZE):
                await server.send_all(data)
                try:
                    decoder.feed(data, trio.current_time())
                except Exception as exc:  # a decode failure stops timing, never the relay
                    log.errors.append(f"decode: {type(exc).__name__}: {exc}")
                    decoder.feed = lambda data, now: None  # type: ignore[method-assign]
            await server.send_eof()

        async def down() -> None:
            while data := await server.receive_some(READ_SIZE):
                await client.send_all(data)

        async with server:
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(up)
                    nursery.start_soon(down)
            except* (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass  # either side closing ends the relay

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(relay, listeners)
