"""Issue 15 item 5 end-to-end: FFmpeg 9 publishes H.264 + AAC to a gateway with ``transcode`` set;
the rung is one more rendition of index.m3u8, cut at the same keyframes as the publisher's, and
Debian's ffprobe reads it at the rung's size."""

from __future__ import annotations

import json
import re

import httpx
import pytest
import trio

from tests.clients import apt_ffprobe_exe, imageio_ffmpeg_exe, publish_args, run_client
from tests.conftest import start_gateway, test_settings
from tests.e2e.test_ingest import wait_for_publisher_gone

pytestmark = pytest.mark.e2e

SECONDS = 4


def _extinf(playlist: str) -> list[str]:
    return re.findall(r"#EXTINF:([\d.]+),", playlist)


async def test_a_rung_is_a_rendition_of_the_multivariant_playlist(nursery: trio.Nursery) -> None:
    settings = test_settings(
        transcode="live=160x120@200k",
        transcode_preset="ultrafast",
        hls_target_duration=1.0,
        hls_end_grace=0.5,  # ENDLIST soon after the publisher left: ffprobe reads to the end
    )
    gw, _ = await start_gateway(nursery, settings)
    assert gw.bound is not None
    url = f"rtmp://127.0.0.1:{gw.bound.rtmp_port}/live/tc"
    args = publish_args(imageio_ffmpeg_exe(), url, seconds=SECONDS, gop=30)  # 320x240, 1 s GOPs
    result = await run_client(args, timeout=60)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    await wait_for_publisher_gone(gw, "live", "tc")
    base = f"{gw.bound.http_url}/live/tc/"
    async with httpx.AsyncClient(timeout=10) as http:
        with trio.fail_after(10):
            while "#EXT-X-ENDLIST" not in (await http.get(base + "cmaf-v1.m3u8")).text:
                await trio.sleep(0.1)
        api = (await http.get(f"{gw.bound.http_url}/api/streams/live/tc")).json()
        index = (await http.get(base + "index.m3u8")).text
        own = (await http.get(base + "cmaf.m3u8")).text
        rung = await http.get(base + "cmaf-v1.m3u8")
    # The session is over: the rung's thread was told to stop; it made every picture but the
    # few still in its decoder's reordering window.
    (state,) = api["transcode"]
    assert state["track"] == 1 and state["rung"] == "160x120@200k"
    assert state["state"] == "stopped" and state["size"] == "160x120"
    assert SECONDS * 30 - 5 <= state["tags"] <= SECONDS * 30 + 1

    variants = re.findall(r"#EXT-X-STREAM-INF:([^\n]*)\n([^\n]+)", index)
    by_uri = {uri: attributes for attributes, uri in variants}
    assert "RESOLUTION=320x240" in by_uri["cmaf.m3u8"]
    assert "RESOLUTION=160x120" in by_uri["cmaf-v1.m3u8"]
    assert 'CODECS="avc1.' in by_uri["cmaf-v1.m3u8"]

    # Cut at the same keyframes: the same segments, the same durations (the rung's last one
    # lacks the pictures left in the decoder when the publisher went).
    assert rung.status_code == 200
    ours, theirs = _extinf(own), _extinf(rung.text)
    assert len(ours) == len(theirs) >= SECONDS - 1
    assert ours[:-1] == theirs[:-1]

    probe = await run_client(
        [
            apt_ffprobe_exe(),
            *("-v", "error", "-of", "json", "-count_frames", "-show_streams"),
            base + "cmaf-v1.m3u8",
        ],
        timeout=30,
    )
    assert probe.returncode == 0, probe.stderr
    streams = json.loads(probe.stdout)["streams"]
    video = next(s for s in streams if s["codec_type"] == "video")
    assert (video["codec_name"], video["width"], video["height"]) == ("h264", 160, 120)
    assert int(video["nb_read_frames"]) == state["tags"] - 1  # all but the sequence header
    assert any(s["codec_type"] == "audio" for s in streams)  # the publisher's audio, muxed in


async def test_shutdown_while_live_joins_the_rung_threads(nursery: trio.Nursery) -> None:
    settings = test_settings(transcode="live/*=160x120@200k", transcode_preset="ultrafast")
    publisher_done = trio.Event()
    async with trio.open_nursery() as gateway_nursery:
        gw, stop = await start_gateway(gateway_nursery, settings)
        assert gw.bound is not None
        url = f"rtmp://127.0.0.1:{gw.bound.rtmp_port}/live/down"

        async def publish() -> None:
            # Ends with an error when the gateway goes away: only the shutdown is tested here.
            await run_client(publish_args(imageio_ffmpeg_exe(), url, seconds=30), timeout=60)
            publisher_done.set()

        nursery.start_soon(publish)
        with trio.fail_after(20):
            while not ((t := gw.transcoders.get("live/down")) and t.describe()[0]["tags"] > 10):
                await trio.sleep(0.05)
        threads = [w.thread for w in gw.transcoders["live/down"]._running]
        assert threads and all(t is not None and t.is_alive() for t in threads)
        stop.set()  # the gateway returns once the segmenters (and their rungs) are closed
    assert all(t is not None and not t.is_alive() for t in threads)
    assert gw.transcoders == {}
    with trio.fail_after(30):
        await publisher_done.wait()
