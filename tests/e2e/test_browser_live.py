"""Issue 4: the player page plays a real published stream in headless Chromium, and recovers by
itself when the publisher reconnects (native HLS and hls.js, one tab each)."""

from __future__ import annotations

from functools import partial

import httpx
import pytest
import trio

from gateway.app import Gateway
from tests.clients import imageio_ffmpeg_exe, publish_args, run_client
from tests.web.browser import sample_playback

pytestmark = pytest.mark.e2e


async def test_player_page_plays_live_stream_across_publisher_reconnect(gateway: Gateway) -> None:
    assert gateway.bound is not None
    rtmp = f"rtmp://127.0.0.1:{gateway.bound.rtmp_port}/live/cam"
    page = f"{gateway.bound.http_url}/live/cam/"
    sessions: list[str] = []

    async def publisher_session(seconds: float) -> None:
        async with trio.open_nursery() as inner:
            args = publish_args(imageio_ffmpeg_exe(), rtmp, seconds=seconds)
            inner.start_soon(partial(run_client, args, timeout=seconds + 30))
            async with httpx.AsyncClient() as client:
                with trio.fail_after(10):
                    while True:
                        info = await client.get(f"{gateway.bound.http_url}/api/streams/live/cam")
                        started = info.json().get("started_at") if info.status_code == 200 else None
                        if started and started not in sessions:
                            sessions.append(started)
                            break
                        await trio.sleep(0.1)

    async def publisher_goes_and_comes_back() -> None:
        await publisher_session(12)
        with trio.fail_after(10):  # the server has seen the first publisher leave
            while (s := gateway.hub.get("live", "cam")) is not None and s.publisher is not None:
                await trio.sleep(0.05)
        await publisher_session(16)

    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(publisher_goes_and_comes_back)
            reports = await sample_playback(
                [page, f"{page}?engine=native"], seconds=22.0, interval=0.5, start_timeout=25.0
            )
            nursery.cancel_scope.cancel()
    assert len(sessions) == 2 and sessions[0] != sessions[1]
    assert [r.last_player.get("engine") for r in reports] == ["hls.js", "native"]
    for report in reports:
        assert report.started, report.describe()
        assert not report.fatal_errors, report.describe()
        assert not report.page_errors, report.describe()
        assert report.advance_in_session(sessions[0]) >= 2.0, report.describe()
        # The page noticed the new publisher by itself and plays it.
        assert report.last_player.get("session") == sessions[1], report.describe()
        assert report.advance_in_session(sessions[1]) >= 3.0, report.describe()
