"""Issue 15, RTMP side, end to end: FFmpeg 9 plays an HEVC (Enhanced RTMP) stream over RTMP with
the right codec; a Multitrack publish (the project's client role sending two HEVC renditions that
FFmpeg 9 recorded, joined with join_tracks) is one video track to legacy players (FFmpeg 9, the
project's client without capsEx) and every track to a client that announced Multitrack; a push
relay carries HEVC and every track to a second gateway."""

from __future__ import annotations

import subprocess
from pathlib import Path

import av
import pytest
import trio

from gateway.app import Gateway
from gateway.rtmp import ertmp
from gateway.rtmp import events as ev
from gateway.rtmp.connection import NEED_DATA, Connection, Role
from segmenter.flv import (
    FlvTag,
    TagType,
    Track,
    config_type,
    is_multitrack,
    iter_flv_file,
    join_tracks,
    split_multitrack,
)
from tests.clients import imageio_ffmpeg_exe, play_args, run_client
from tests.conftest import start_gateway, test_settings

pytestmark = pytest.mark.e2e

V, A = TagType.VIDEO, TagType.AUDIO
HEVC = ("-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error:keyint=30")
SECONDS = 8


def record(path: Path, size: str, *, audio: bool) -> list[FlvTag]:
    """An HEVC (+ AAC) FLV file written by FFmpeg 9's muxer (Enhanced RTMP hvc1 tags)."""
    args = [
        imageio_ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30",
        *(("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000") if audio else ()),
        *HEVC, "-pix_fmt", "yuv420p", *(("-c:a", "aac") if audio else ("-an",)),
        "-t", str(SECONDS), "-f", "flv", str(path),
    ]  # fmt: skip
    done = subprocess.run(args, capture_output=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return list(iter_flv_file(path.read_bytes()))


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[FlvTag], list[FlvTag]]:
    where = tmp_path_factory.mktemp("renditions")
    return record(where / "big.flv", "320x240", audio=True), record(
        where / "small.flv", "160x120", audio=False
    )


def multitrack_tags(big: list[FlvTag], small: list[FlvTag]) -> list[FlvTag]:
    """The two renditions as one Multitrack publish: video frame i of each in one ManyTracks tag
    when they share FrameType and PacketType, else as two OneTrack tags; AAC stays legacy."""
    small_video = [t for t in small if t.type is V]
    assert all(t.body[0] & 0x80 for t in small_video)  # FFmpeg 9 wrote ExHeader hvc1
    out: list[FlvTag] = []
    i = 0
    for tag in big:
        if tag.type is not V:
            out.append(tag)
            continue
        other = small_video[i] if i < len(small_video) else None
        i += 1
        zero = Track(0, "hvc1", tag.body)
        if other is None:
            out.append(FlvTag(V, tag.timestamp, join_tracks(V, [zero])))
        elif other.body[0] == tag.body[0]:
            out.append(
                FlvTag(V, tag.timestamp, join_tracks(V, [zero, Track(1, "hvc1", other.body)]))
            )
        else:
            out.append(FlvTag(V, tag.timestamp, join_tracks(V, [zero])))
            out.append(FlvTag(V, tag.timestamp, join_tracks(V, [Track(1, "hvc1", other.body)])))
    return out


class RtmpClient:
    """The project's client role over TCP."""

    def __init__(self, sock: trio.SocketStream, conn: Connection) -> None:
        self.sock, self.conn = sock, conn
        self.events: list[ev.Event] = []

    @classmethod
    async def open(cls, port: int, caps_ex: int | None) -> RtmpClient:
        sock = await trio.open_tcp_stream("127.0.0.1", port)
        conn = Connection(Role.CLIENT)
        extra = {"capsEx": float(caps_ex)} if caps_ex is not None else None
        conn.connect("live", f"rtmp://127.0.0.1:{port}/live", extra=extra)
        return cls(sock, conn)

    async def until(self, done: object) -> None:
        with trio.fail_after(20):
            while True:
                while (event := self.conn.next_event()) is not NEED_DATA:
                    assert not isinstance(event, type)
                    self.events.append(event)
                    if callable(done) and done(event):
                        return
                if out := self.conn.data_to_send():
                    await self.sock.send_all(out)
                data = await self.sock.receive_some(65536)
                if not data:
                    return
                self.conn.receive_data(data)

    def video(self) -> list[bytes]:
        return [e.body for e in self.events if isinstance(e, ev.Media) and e.type == 9]


async def publish(port: int, key: str, tags: list[FlvTag]) -> None:
    """Publish ``tags`` paced at their timestamps (x4), as a live encoder would."""
    pub = await RtmpClient.open(port, ertmp.CAPS_MULTITRACK)
    pub.conn.publish(key)
    await pub.until(lambda e: isinstance(e, ev.Status) and "Publish.Start" in e.code)
    sid = next(e.stream_id for e in pub.events if isinstance(e, ev.Status))
    start = trio.current_time()
    for tag in tags:
        await trio.sleep_until(start + tag.timestamp / 4000)
        pub.conn.send_media(sid, int(tag.type), tag.timestamp, tag.body)
        await pub.sock.send_all(pub.conn.data_to_send())
    pub.conn.delete_stream(sid)
    await pub.sock.send_all(pub.conn.data_to_send())
    await pub.sock.aclose()


async def wait_live(gw: Gateway, key: str) -> None:
    with trio.fail_after(20):
        while (s := gw.hub.get("live", key)) is None or s.publisher is None or not s.gop:
            await trio.sleep(0.02)


def probe(path: Path) -> list[tuple[str, str, int, int]]:
    """(type, codec, width, height) of every stream PyAV finds, and that video decodes."""
    with av.open(str(path)) as container:
        found: list[tuple[str, str, int, int]] = [
            (
                str(s.type),
                s.codec_context.name,
                *((s.width, s.height) if isinstance(s, av.VideoStream) else (0, 0)),
            )
            for s in container.streams
        ]
        frames = sum(1 for p in container.demux(video=0) for _ in p.decode())
    assert frames >= 15, frames
    return found


async def test_ffmpeg9_plays_hevc_over_rtmp(gateway: Gateway, tmp_path: Path) -> None:
    assert gateway.bound is not None
    url = f"rtmp://127.0.0.1:{gateway.bound.rtmp_port}/live/hevc"
    publisher = [
        imageio_ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error",
        "-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30",
        "-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
        *HEVC, "-pix_fmt", "yuv420p", "-c:a", "aac", "-t", "8", "-f", "flv", url,
    ]  # fmt: skip
    out = tmp_path / "played.flv"
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: run_client(publisher, timeout=60))
        await wait_live(gateway, "hevc")
        played = await run_client(play_args("ffmpeg-9", url, str(out), seconds=3), timeout=40)
        nursery.cancel_scope.cancel()
    assert played.returncode == 0, played.stderr.decode(errors="replace")
    streams = probe(out)
    assert ("video", "hevc", 320, 240) in streams and [s[0] for s in streams].count("video") == 1
    assert any(s[:2] == ("audio", "aac") for s in streams)


async def test_multitrack_publish_legacy_players_get_track_0_others_every_track(
    gateway: Gateway, tmp_path: Path, recordings: tuple[list[FlvTag], list[FlvTag]]
) -> None:
    assert gateway.bound is not None
    port = gateway.bound.rtmp_port
    tags = multitrack_tags(*recordings)
    assert sum(1 for t in tags if is_multitrack(V, t.body)) > 100
    out = tmp_path / "legacy.flv"
    url = f"rtmp://127.0.0.1:{port}/live/mt"
    async with trio.open_nursery() as nursery:
        nursery.start_soon(publish, port, "mt", tags)
        await wait_live(gateway, "mt")
        legacy = await RtmpClient.open(port, None)
        multi = await RtmpClient.open(port, ertmp.CAPS_MULTITRACK)
        for client in (legacy, multi):
            client.conn.play("mt")
            await client.until(lambda e: isinstance(e, ev.Status) and "Play.Start" in e.code)
        played = await run_client(play_args("ffmpeg-9", url, str(out), seconds=1), timeout=40)
        for client in (legacy, multi):  # a second of media each
            with trio.move_on_after(1):
                await client.until(None)
        nursery.cancel_scope.cancel()

    # FFmpeg 9, a legacy player: one video track, track 0 (the 320x240 rendition).
    assert played.returncode == 0, played.stderr.decode(errors="replace")
    streams = probe(out)
    assert [s for s in streams if s[0] == "video"] == [("video", "hevc", 320, 240)]
    # The project's client without capsEx: no Multitrack tag, a header and frames of track 0.
    assert legacy.video() and not any(is_multitrack(V, b) for b in legacy.video())
    assert any(config_type(V, b) == 0 for b in legacy.video())
    # With capsEx Multitrack: both tracks, each with its sequence header.
    tracks: dict[int, list[bytes]] = {}
    for body in multi.video():
        for t in split_multitrack(V, body) or [Track(0, "hvc1", body)]:
            tracks.setdefault(t.track_id, []).append(t.body)
    assert sorted(tracks) == [0, 1]
    assert all(any(config_type(V, b) == 0 for b in bodies) for bodies in tracks.values())
    assert len(tracks[1]) > 10


async def test_push_relay_carries_hevc_and_every_track(
    nursery: trio.Nursery, recordings: tuple[list[FlvTag], list[FlvTag]]
) -> None:
    far, _ = await start_gateway(nursery, test_settings())
    assert far.bound is not None
    push = f"live=rtmp://127.0.0.1:{far.bound.rtmp_port}/live/{{key}}"
    near, _ = await start_gateway(nursery, test_settings(push=push))
    assert near.bound is not None
    nursery.start_soon(publish, near.bound.rtmp_port, "mtr", multitrack_tags(*recordings))
    await wait_live(far, "mtr")
    with trio.fail_after(20):
        while (s := far.hub.get("live", "mtr")) is None or (9, 1, 0) not in s.headers:
            await trio.sleep(0.02)
    near_stream = near.hub.get("live", "mtr")
    assert near_stream is not None
    # The far side has the same configuration of every track, HEVC included, byte for byte.
    assert {k: t.body for k, t in s.headers.items()} == {
        k: t.body for k, t in near_stream.headers.items()
    }
    assert s.headers[(9, 0, 0)].body[1:5] == b"hvc1" and s.headers[(8, 0, 0)].body[0] >> 4 == 10
    assert any(is_multitrack(V, t.body) for t in s.gop)


async def test_pull_relay_takes_every_track(
    nursery: trio.Nursery, recordings: tuple[list[FlvTag], list[FlvTag]]
) -> None:
    source, _ = await start_gateway(nursery, test_settings())
    assert source.bound is not None
    pull = f"live/pulled=rtmp://127.0.0.1:{source.bound.rtmp_port}/live/mtp"
    puller, _ = await start_gateway(nursery, test_settings(pull=pull))
    nursery.start_soon(publish, source.bound.rtmp_port, "mtp", multitrack_tags(*recordings))
    # The pull announced capsEx Multitrack: the source serves it every track, unchanged.
    with trio.fail_after(20):
        while (s := puller.hub.get("live", "pulled")) is None or (9, 1, 0) not in s.headers:
            await trio.sleep(0.02)
    assert s.headers[(9, 0, 0)].body[1:5] == b"hvc1"
    with trio.fail_after(10):
        while not any(is_multitrack(V, t.body) for t in s.gop):
            await trio.sleep(0.02)
