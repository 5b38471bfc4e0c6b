"""Scripted client sessions (docs/protocol.md §4) built with our encoder, and a replay driver.

OBS (librtmp) and FFmpeg publish the same command sequence with different details: OBS uses
the digest handshake and sets its chunk size before connect; the FFmpeg-like script uses a
plain handshake, sets the chunk size after connect and starts its clock high so extended
timestamps (RTMP 1.0 §5.3.1.3) are crossed.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any

from gateway.rtmp import amf0, events, handshake
from gateway.rtmp import messages as m
from gateway.rtmp.chunk import ChunkEncoder
from gateway.rtmp.connection import NEED_DATA, Connection
from gateway.rtmp.limits import Limits

SERVER_SEED = 99
META = amf0.EcmaArray(width=1280.0, height=720.0, framerate=30.0, videocodecid=7.0)
AVC_SEQ = bytes.fromhex("1700000000 0164001fffe1000467640028 0100046868e38c")
AAC_SEQ = bytes.fromhex("af00 1190")


def rng(seed: int) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


class Script:
    """Accumulates client bytes: handshake then chunked messages."""

    def __init__(self, *, digest: bool) -> None:
        client = handshake.ClientHandshake(digest=digest, time_ms=0, random_bytes=rng(1))
        reply = handshake.server_reply(client.c0c1(), random_bytes=rng(SERVER_SEED))
        self.wire = bytearray(client.c0c1() + client.c2(reply.data))
        self.enc = ChunkEncoder()

    def msg(self, csid: int, type_id: int, msid: int, body: bytes, ts: int = 0) -> Script:
        self.wire += self.enc.encode(csid, ts, type_id, msid, body)
        return self

    def control(self, msg: m.ControlMessage) -> Script:
        return self.msg(2, msg.type_id, 0, msg.encode())

    def command(self, csid: int, msid: int, name: str, txn: float, *rest: Any) -> Script:
        return self.msg(csid, 20, msid, amf0.encode(name, txn, *rest))

    def data(self) -> bytes:
        return bytes(self.wire)


def frames(s: Script, csids: tuple[int, int], t0: int, count: int) -> None:
    """Sequence headers then alternating video/audio frames, 33 ms apart."""
    audio_cs, video_cs = csids
    s.msg(video_cs, 9, 1, AVC_SEQ, t0)
    s.msg(audio_cs, 8, 1, AAC_SEQ, t0)
    for i in range(count):
        key = 0x17 if i % 10 == 0 else 0x27
        s.msg(video_cs, 9, 1, bytes([key, 1, 0, 0, 0]) + bytes(300 + i), t0 + 33 * i)
        s.msg(audio_cs, 8, 1, b"\xaf\x01" + bytes(20), t0 + 33 * i + 5)


def obs_session() -> bytes:
    s = Script(digest=True)
    s.control(m.SetChunkSize(4096))
    obj = {
        "app": "live",
        "type": "nonprivate",
        "flashVer": "FMLE/3.0 (compatible; FMSc/1.0)",
        "swfUrl": "rtmp://example.com/live",
        "tcUrl": "rtmp://example.com/live",
    }
    s.command(3, 0, "connect", 1.0, obj)
    s.command(3, 0, "releaseStream", 2.0, None, "key")
    s.command(3, 0, "FCPublish", 3.0, None, "key")
    s.command(3, 0, "createStream", 4.0, None)
    s.command(4, 1, "publish", 5.0, None, "key", "live")
    s.msg(4, 18, 1, amf0.encode("@setDataFrame", "onMetaData", META))
    frames(s, (4, 5), 0, 12)
    s.command(3, 0, "FCUnpublish", 6.0, None, "key")
    s.command(3, 0, "deleteStream", 7.0, None, 1.0)
    return s.data()


FFMPEG_T0 = 0xFFFFFF - 100  # crosses into extended timestamps mid-stream


def ffmpeg_session() -> bytes:
    s = Script(digest=False)
    obj = {
        "app": "live",
        "flashVer": "FMLE/3.0 (compatible; Lavf61.7.100)",
        "tcurl": "rtmp://127.0.0.1:1935/live?token=abc",
        "fpad": False,
        "capabilities": 15.0,
        "audioCodecs": 4071.0,
        "videoCodecs": 252.0,
        "videoFunction": 1.0,
    }
    s.command(3, 0, "connect", 1.0, obj)
    s.control(m.SetChunkSize(4096))
    s.control(m.WindowAckSize(2_500_000))
    s.command(3, 0, "releaseStream", 2.0, None, "cam?token=abc")
    s.command(3, 0, "FCPublish", 3.0, None, "cam?token=abc")
    s.command(3, 0, "createStream", 4.0, None)
    s.command(8, 1, "publish", 5.0, None, "cam?token=abc", "live")
    s.msg(4, 18, 1, amf0.encode("@setDataFrame", "onMetaData", META), FFMPEG_T0)
    frames(s, (4, 6), FFMPEG_T0, 12)
    s.command(3, 0, "FCUnpublish", 6.0, None, "cam?token=abc")
    s.command(3, 0, "deleteStream", 7.0, None, 1.0)
    return s.data()


def server() -> Connection:
    return Connection(limits=Limits(), random_bytes=rng(SERVER_SEED), epoch_ms=lambda: 0)


def drain(
    conn: Connection, accept: bool = True, out: list[events.Event] | None = None
) -> list[events.Event]:
    """Pull events until NEED_DATA, answering requests like a permissive server layer.

    Events go to ``out`` as they come, so a caller keeps them when an error is raised.
    """
    if out is None:
        out = []
    while True:
        ev = conn.next_event()
        if ev is NEED_DATA:
            return out
        assert not isinstance(ev, type)
        out.append(ev)
        if isinstance(ev, events.ConnectRequest):
            conn.accept_connect() if accept else conn.reject_connect("no")
        elif isinstance(ev, events.PublishRequest):
            conn.accept_publish(ev.stream_id)
        elif isinstance(ev, events.PlayRequest):
            conn.accept_play(ev.stream_id)
        elif isinstance(ev, events.ConnectionClosed):
            return out


def replay(pieces: Iterable[bytes], *, eof: bool = True) -> tuple[list[events.Event], Connection]:
    conn = server()
    got: list[events.Event] = []
    for piece in pieces:
        conn.receive_data(piece)
        got += drain(conn)
    if eof:
        conn.receive_data(b"")
        got += drain(conn)
    return got, conn


def random_splits(data: bytes, seed: int) -> list[bytes]:
    r = random.Random(seed)
    cuts = sorted(r.sample(range(1, len(data)), k=min(40, len(data) - 1)))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
