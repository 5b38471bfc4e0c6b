"""Issue 5 (pull): gateway B ingests a stream that FFmpeg publishes to gateway A, over RTMP."""

from __future__ import annotations

import io
from functools import partial

import av
import httpx
import m3u8
import pytest
import trio

from tests.clients import imageio_ffmpeg_exe, publish_args, run_client
from tests.conftest import start_gateway, test_settings

pytestmark = pytest.mark.e2e


async def test_pulled_stream_becomes_hls_and_follows_the_source(nursery: trio.Nursery) -> None:
    # B plays before FFmpeg publishes: A holds the play up to 3 s, B retries with backoff.
    a, _ = await start_gateway(nursery, test_settings(play_wait_timeout=3.0))
    assert a.bound is not None
    source = f"rtmp://127.0.0.1:{a.bound.rtmp_port}/live/src"
    b, _ = await start_gateway(nursery, test_settings(pull=f"live/mirror={source}"))
    assert b.bound is not None
    playlist_url = f"{b.bound.http_url}/live/mirror/ts.m3u8"
    async with trio.open_nursery() as inner:
        args = publish_args(imageio_ffmpeg_exe(), source, seconds=8)
        inner.start_soon(partial(run_client, args, timeout=40))
        async with httpx.AsyncClient() as client:
            with trio.fail_after(20):
                while (r := await client.get(playlist_url)).status_code != 200 or len(
                    m3u8.loads(r.text).segments
                ) < 2:
                    await trio.sleep(0.2)
            segment = m3u8.loads(r.text).segments[0].uri
            data = (await client.get(f"{b.bound.http_url}/live/mirror/{segment}")).content
            info = (await client.get(f"{b.bound.http_url}/api/streams/live/mirror")).json()
    with av.open(io.BytesIO(data), "r", format="mpegts") as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames >= 30  # 1 s keyframes at 30 fps: a whole GOP or more, decodable
    assert info["state"] == "live" and info["publisher"].startswith("pull rtmp://127.0.0.1:")
    assert info["pulls"][0]["state"] == "playing"
    # The source's publisher left: after its grace A says UnpublishNotify and B's session ends.
    with trio.fail_after(10):
        while (s := b.hub.get("live", "mirror")) is not None and s.publisher is not None:
            await trio.sleep(0.1)
