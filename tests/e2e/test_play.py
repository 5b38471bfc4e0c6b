"""Issue 5 end-to-end: real RTMP players (FFmpeg 9 and 5.1, rtmpdump, GStreamer rtmp2src)."""

from __future__ import annotations

import itertools
import subprocess
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import av
import pytest
import trio

from gateway.app import Gateway
from tests.clients import imageio_ffmpeg_exe, play_args, publish_args, run_client
from tests.conftest import start_gateway, test_settings

pytestmark = pytest.mark.e2e


@dataclass
class Recording:
    video: int
    audio: int
    first_video_key: bool


def decode(path: Path) -> Recording:
    video = audio = 0
    first_key: bool | None = None
    with av.open(str(path)) as container:
        for packet in container.demux():
            if packet.stream.type == "video" and packet.size and first_key is None:
                first_key = bool(packet.is_keyframe)
            for frame in packet.decode():
                if isinstance(frame, av.VideoFrame):
                    video += 1
                else:
                    audio += 1
    return Recording(video, audio, bool(first_key))


def url(gw: Gateway, key: str) -> str:
    assert gw.bound is not None
    return f"rtmp://127.0.0.1:{gw.bound.rtmp_port}/live/{key}"


async def wait_live(gw: Gateway, key: str) -> None:
    with trio.fail_after(15):
        while (s := gw.hub.get("live", key)) is None or s.publisher is None or not s.gop:
            await trio.sleep(0.05)


@pytest.mark.parametrize("client", ["ffmpeg-9", "ffmpeg-5.1", "rtmpdump", "gstreamer"])
async def test_player_records_a_decodable_stream_starting_at_a_keyframe(
    gateway: Gateway, tmp_path: Path, client: str
) -> None:
    out = tmp_path / "out.flv"
    async with trio.open_nursery() as nursery:
        args = publish_args(imageio_ffmpeg_exe(), url(gateway, "p"), seconds=10, gop=60)
        nursery.start_soon(partial(run_client, args, timeout=40))
        await wait_live(gateway, "p")
        await trio.sleep(1.0)  # join mid-GOP: the GOP cache must still start with a keyframe
        result = await run_client(
            play_args(client, url(gateway, "p"), str(out), seconds=3), timeout=30
        )
        stream = gateway.hub.get("live", "p")
        assert stream is not None
        nursery.cancel_scope.cancel()
    # rtmpdump exits 2 ("incomplete") for a live stream it stops itself; GStreamer is interrupted.
    assert result.returncode in ((0, 2) if client == "rtmpdump" else (0, 130, 124)), result
    rec = decode(out)
    assert rec.first_video_key
    assert rec.video >= 60, rec  # >= 2 s of 30 fps video in a 3 s window
    assert rec.audio >= 60, rec
    assert not stream.players  # the player's slot is gone with its connection


async def test_player_waits_for_publisher_then_plays(gateway: Gateway, tmp_path: Path) -> None:
    out = tmp_path / "late.flv"
    async with trio.open_nursery() as nursery:
        player = play_args("ffmpeg-9", url(gateway, "late"), str(out), seconds=2)
        results = []

        async def play() -> None:
            results.append(await run_client(player, timeout=30))

        nursery.start_soon(play)
        await trio.sleep(1.5)  # the player is now waiting (play_wait_timeout defaults to 5 s)
        args = publish_args(imageio_ffmpeg_exe(), url(gateway, "late"), seconds=6)
        await run_client(args, timeout=30)
    assert results[0].returncode == 0, results[0].stderr
    rec = decode(out)
    assert rec.first_video_key and rec.video >= 45


async def test_play_of_a_name_nobody_publishes_is_refused(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    gw, _ = await start_gateway(nursery, test_settings(play_wait_timeout=0.5))
    result = await run_client(
        play_args("ffmpeg-9", url(gw, "nobody"), str(tmp_path / "x.flv"), seconds=1), timeout=20
    )
    assert result.returncode != 0
    # A player asking for a name nobody publishes leaves no state behind (no memory growth).
    with trio.fail_after(5):
        while gw.hub.get("live", "nobody") is not None:
            await trio.sleep(0.05)


async def test_stalled_player_costs_nobody_else(nursery: trio.Nursery, tmp_path: Path) -> None:
    gw, _ = await start_gateway(
        nursery, test_settings(player_queue=64, player_max_lag=2.0, send_timeout=3.0)
    )
    segment_times: list[float] = []
    original = gw._on_segment

    def on_segment(info: object) -> None:
        segment_times.append(trio.current_time())
        original(info)  # type: ignore[arg-type]

    gw._on_segment = on_segment  # type: ignore[method-assign]
    out = tmp_path / "healthy.flv"
    async with trio.open_nursery() as inner:
        args = publish_args(
            imageio_ffmpeg_exe(), url(gw, "busy"), seconds=14, size="1280x720", gop=60
        )
        inner.start_soon(partial(run_client, args, timeout=40))
        await wait_live(gw, "busy")
        # rtmpdump writes to a pipe nobody reads: it soon stops reading its socket.
        stalled = await trio.lowlevel.open_process(
            ["rtmpdump", "-q", "-r", url(gw, "busy"), "--live", "-o", "-"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            await trio.sleep(2)
            healthy = await run_client(
                play_args("ffmpeg-9", url(gw, "busy"), str(out), seconds=6), timeout=30
            )
            stream = gw.hub.get("live", "busy")
            assert stream is not None
            with trio.fail_after(10):
                while (
                    gw.metrics.players_disconnected_slow._value.get()
                    + gw.metrics.protocol_errors.labels("write-timeout")._value.get()
                    == 0
                ):
                    await trio.sleep(0.1)
        finally:
            stalled.kill()
            await stalled.wait()
        inner.cancel_scope.cancel()
    assert healthy.returncode == 0, healthy.stderr
    rec = decode(out)
    assert rec.first_video_key and rec.video >= 170, rec  # ~6 s of 30 fps: not slowed down
    gaps = [b - a for a, b in itertools.pairwise(segment_times)]
    assert len(segment_times) >= 4 and max(gaps) < 3.0, gaps  # 2 s segments kept coming
    assert gw.metrics.player_dropped._value.get() > 0


async def test_player_follows_a_publisher_reconnect_without_reconnecting(
    gateway: Gateway, tmp_path: Path
) -> None:
    out = tmp_path / "across.flv"
    results = []

    async def player() -> None:
        args = play_args("ffmpeg-9", url(gateway, "re"), str(out), seconds=8)
        results.append(await run_client(args, timeout=40))

    async with trio.open_nursery() as nursery:
        first = publish_args(imageio_ffmpeg_exe(), url(gateway, "re"), seconds=4)
        nursery.start_soon(partial(run_client, first, timeout=30))
        await wait_live(gateway, "re")
        nursery.start_soon(player)
        with trio.fail_after(15):  # the first publisher is gone; the player is waiting
            while (s := gateway.hub.get("live", "re")) is not None and s.publisher is not None:
                await trio.sleep(0.05)
        second = publish_args(imageio_ffmpeg_exe(), url(gateway, "re"), seconds=7)
        assert (await run_client(second, timeout=30)).returncode == 0
    (result,) = results
    assert result.returncode == 0, result.stderr
    rec = decode(out)
    # The first session can only have given ~4 s: the rest came from the second publisher.
    assert rec.first_video_key and rec.video >= 6 * 30, rec
