"""Issue 15 item 5 end-to-end: FFmpeg 9 publishes H.264 + AAC to a gateway with ``transcode`` set;
the rung is one more rendition of index.m3u8, cut at the same keyframes as the publisher's,
Debian's ffprobe reads it at the rung's size, and hls.js in headless Chromium switches through
the publisher's rendition and two rungs without a stall; a shutdown joins the rung threads."""

from __future__ import annotations

import json
import re
from functools import partial
from typing import Any

import httpx
import pytest
import trio

from bench.browser import chromium, open_player
from tests.clients import apt_ffprobe_exe, imageio_ffmpeg_exe, publish_args, run_client
from tests.conftest import start_gateway, test_settings
from tests.e2e.test_ingest import wait_for_publisher_gone
from tests.e2e.test_ladder import STALLS, SWITCH_JS

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
    # The session is over: the rung's thread was told to stop.
    (state,) = api["transcode"]
    assert state["track"] == 1 and state["rung"] == "160x120@200k"
    assert state["state"] == "stopped" and state["size"] == "160x120"
    # The sequence header and every picture, but those still queued or in the worker when the
    # publisher left (the session is over: the segmenter takes no more of them).
    in_flight = settings.transcode_queue + 2
    assert SECONDS * 30 + 1 - in_flight <= state["tags"] <= SECONDS * 30 + 1

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
    assert ours[1:-1] == theirs[1:-1]
    # The first may differ by the audio FFmpeg sends ahead of its first keyframe (~23 ms), which
    # opens track 0's first segment (the cutter keeps it); the rung starts at that keyframe.
    assert 0 <= float(ours[0]) - float(theirs[0]) < 0.05, (ours, theirs)

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


def play_levels(url: str) -> dict[str, Any]:
    """hls.js (lowLatencyMode) in headless Chromium on ``url``: its levels, then a switch to each
    level, largest first, and back. Blocking: run it in a worker thread."""
    out: dict[str, Any] = {"switches": []}
    with chromium("transcode-chromium-") as context:
        page = open_player(context, url, {"lowLatencyMode": True})
        page.wait_for_function("document.getElementById('v').currentTime > 1", timeout=30_000)
        out["levels"] = page.evaluate("hls.levels.map((l) => [l.width, l.height])")
        out["waiting_before"] = page.evaluate("bench.waiting")
        order = sorted(range(len(out["levels"])), key=lambda i: -out["levels"][i][0])
        for i in [*order, order[0]]:
            step = ["level", i, out["levels"][i][0]]
            out["switches"].append(page.evaluate(SWITCH_JS, step))
        out["waiting_after"] = page.evaluate("bench.waiting")
        out["errors"] = page.evaluate("bench.errors")
    return out


async def test_hlsjs_switches_through_the_transcoded_rungs(nursery: trio.Nursery) -> None:
    # The default preset (veryfast: High profile, the avcC with its High extension).
    settings = test_settings(transcode="live/ladder=240x180@300k,160x120@200k")
    gw, _ = await start_gateway(nursery, settings)
    assert gw.bound is not None
    rtmp = f"rtmp://127.0.0.1:{gw.bound.rtmp_port}/live/ladder"
    base = f"{gw.bound.http_url}/live/ladder/"
    with trio.fail_after(150):
        async with trio.open_nursery() as publisher:
            args = publish_args(imageio_ffmpeg_exe(), rtmp, seconds=60, gop=30)
            publisher.start_soon(partial(run_client, args, timeout=90))
            async with httpx.AsyncClient() as client:
                while True:  # until the smallest rung has a few segments listed
                    await trio.sleep(0.5)
                    v2 = await client.get(base + "cmaf-v2.m3u8")
                    if v2.status_code == 200 and len(_extinf(v2.text)) >= 3:
                        break
                api = (await client.get(f"{gw.bound.http_url}/api/streams/live/ladder")).json()
            played = await trio.to_thread.run_sync(play_levels, base + "index.m3u8")
            publisher.cancel_scope.cancel()

    assert [(r["width"], r["height"], r["aligned"]) for r in api["renditions"]] == [
        (320, 240, True), (240, 180, True), (160, 120, True)
    ]  # fmt: skip
    assert [r["state"] for r in api["transcode"]] == ["running", "running"]
    assert [r["codec"][:7] for r in api["renditions"][1:]] == ["avc1.64"] * 2  # High
    assert sorted(played["levels"]) == [[160, 120], [240, 180], [320, 240]], played
    assert [s["width"] for s in played["switches"]] == [320, 240, 160, 320], played
    assert all(s["advanced"] > 2 for s in played["switches"]), played
    assert not [e for e in played["errors"] if e["fatal"] or e["details"] in STALLS], played
    assert played["waiting_after"] == played["waiting_before"], played
