"""Issue 2 end-to-end: real FFmpeg encoders publish over loopback RTMP to the gateway."""

from __future__ import annotations

import pytest
import trio

from gateway.app import Gateway
from gateway.hub import HubItem, Stream
from segmenter.flv import FlvTag, TagType
from tests.clients import (
    apt_ffmpeg_exe,
    gst_publish_args,
    imageio_ffmpeg_exe,
    publish_args,
    run_client,
)

pytestmark = pytest.mark.e2e


class Recorder:
    """Collects every tag the hub fans out for streams started while it is installed."""

    def __init__(self, gw: Gateway) -> None:
        self.items: dict[str, list[HubItem]] = {}
        self.receivers: list[tuple[str, trio.MemoryReceiveChannel[HubItem]]] = []
        original = gw.hub._on_stream_started

        def hook(stream: Stream) -> None:
            if original is not None:
                original(stream)
            _, rx = gw.hub.attach(stream, "test-recorder", 1_000_000)
            self.receivers.append((stream.path, rx))

        gw.hub._on_stream_started = hook

    def drain(self) -> None:
        for path, rx in self.receivers:
            while True:
                try:
                    self.items.setdefault(path, []).append(rx.receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                    break

    def tags(self, path: str) -> list[FlvTag]:
        self.drain()
        return [t for t in self.items.get(path, []) if isinstance(t, FlvTag)]


def check_publish(tags: list[FlvTag], *, seconds: float, fps: int, first_ms: int = 0) -> None:
    meta = [t for t in tags if t.type is TagType.SCRIPT]
    video = [t for t in tags if t.type is TagType.VIDEO]
    audio = [t for t in tags if t.type is TagType.AUDIO]
    assert meta and meta[0].body.startswith(b"\x02\x00\x0aonMetaData"), "no onMetaData"
    # AVC sequence header (FLV E.4.3.1: AVCPacketType 0) and AAC AudioSpecificConfig first.
    assert video[0].body[:2] == b"\x17\x00", "first video tag is not the AVC sequence header"
    assert audio[0].body[:2] == b"\xaf\x00", "first audio tag is not the AAC sequence header"
    frames = [t for t in video[1:] if t.body[1] == 1]
    assert len(frames) == round(seconds * fps), f"{len(frames)} video frames"
    aac_frames = [t for t in audio[1:] if t.body[1] == 1]
    expected_audio = seconds * 44100 / 1024
    assert abs(len(aac_frames) - expected_audio) <= 3, f"{len(aac_frames)} AAC frames"
    for kind in (frames, aac_frames):
        stamps = [t.timestamp for t in kind]
        assert stamps == sorted(stamps), "timestamps not monotonic"
        # AAC priming may put the first audio frame a few ms before the first video frame.
        assert first_ms - 100 <= stamps[0] <= first_ms + 100
        assert stamps[-1] - stamps[0] >= (seconds - 0.2) * 1000


async def wait_for_publisher_gone(gw: Gateway, app: str, key: str) -> None:
    with trio.fail_after(5):
        while (s := gw.hub.get(app, key)) is not None and s.publisher is not None:
            await trio.sleep(0.02)


@pytest.mark.parametrize("client", ["imageio-ffmpeg-9", "debian-ffmpeg-5.1", "gstreamer"])
async def test_real_encoder_publish_is_received_whole(gateway: Gateway, client: str) -> None:
    rec = Recorder(gateway)
    assert gateway.bound is not None
    url = f"rtmp://127.0.0.1:{gateway.bound.rtmp_port}/live/e2e"
    if client == "gstreamer":
        args = gst_publish_args(url, seconds=4)
    else:
        exe = imageio_ffmpeg_exe() if client.startswith("imageio") else apt_ffmpeg_exe()
        args = publish_args(exe, url, seconds=4)
    result = await run_client(args, timeout=30)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    await wait_for_publisher_gone(gateway, "live", "e2e")
    check_publish(rec.tags("live/e2e"), seconds=4, fps=30)


async def test_extended_timestamps_start_high_and_cross_24_bits(gateway: Gateway) -> None:
    # RTMP 1.0 §5.3.1.3: from 0xFFFFFF ms (16777.215 s) on, timestamps need the extended field.
    rec = Recorder(gateway)
    assert gateway.bound is not None
    url = f"rtmp://127.0.0.1:{gateway.bound.rtmp_port}/live/ext"
    start = 16_775.0
    args = publish_args(imageio_ffmpeg_exe(), url, seconds=4, ts_offset=start)
    result = await run_client(args, timeout=30)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    await wait_for_publisher_gone(gateway, "live", "ext")
    tags = rec.tags("live/ext")
    check_publish(tags, seconds=4, fps=30, first_ms=int(start * 1000))
    assert any(t.timestamp < 0xFFFFFF for t in tags[3:]) and tags[-1].timestamp > 0xFFFFFF


async def test_second_publisher_is_rejected_first_unaffected(gateway: Gateway) -> None:
    rec = Recorder(gateway)
    assert gateway.bound is not None
    url = f"rtmp://127.0.0.1:{gateway.bound.rtmp_port}/live/dup"
    first_result: list[object] = []

    async def first() -> None:
        first_result.append(
            await run_client(publish_args(imageio_ffmpeg_exe(), url, seconds=5), timeout=30)
        )

    async with trio.open_nursery() as nursery:
        nursery.start_soon(first)
        with trio.fail_after(10):
            while (s := gateway.hub.get("live", "dup")) is None or s.publisher is None:
                await trio.sleep(0.02)
        second = await run_client(publish_args(imageio_ffmpeg_exe(), url, seconds=2), timeout=30)
        assert second.returncode != 0
        stream = gateway.hub.get("live", "dup")
        assert stream is not None and stream.publisher is not None  # first still live
    (first_done,) = first_result
    assert first_done.returncode == 0  # type: ignore[attr-defined]
    await wait_for_publisher_gone(gateway, "live", "dup")
    check_publish(rec.tags("live/dup"), seconds=5, fps=30)
    assert gateway.metrics.publish_rejected.labels("NetStream.Publish.BadName")._value.get() == 1
