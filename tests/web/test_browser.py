"""hls.js and native HLS in headless Chromium play a live stream served by the app (hypercorn)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import trio

from segmenter.store import MemoryStore
from tests.web.browser import sample_playback
from tests.web.conftest import FakeStatus, stream_info
from tests.web.hls_fixture import encode_test_stream, feed_live
from tests.web.server import serving
from web.app import create_app

# How long each page is sampled once playing, and how far its clock must move meanwhile.
SAMPLE_SECONDS = 4.0
MIN_ADVANCE = 2.0


@pytest.mark.e2e
async def test_player_page_plays_live_stream(tmp_path: Path) -> None:
    segments = await trio.to_thread.run_sync(encode_test_stream, tmp_path / "hls", 30.0)
    store = MemoryStore()
    status = FakeStatus()
    status.set(stream_info("live", "cam1", state="live"))
    app = create_app(store, status)
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            await nursery.start(feed_live, store, "live", "cam1", segments)
            async with serving(app) as base:
                reports = await sample_playback(
                    [
                        f"{base}/live/cam1/",
                        f"{base}/live/cam1/?engine=native",
                        f"{base}/live/cam1/?engine=hlsjs",
                    ],
                    SAMPLE_SECONDS,
                )
            nursery.cancel_scope.cancel()
    default, native, hlsjs = reports
    # Where MSE exists the page prefers hls.js (player.js chooseEngine); ?engine=native forces it.
    assert default.last_player.get("engine") == "hls.js", default.describe()
    assert native.last_player.get("engine") == "native", native.describe()
    assert hlsjs.last_player.get("engine") == "hls.js", hlsjs.describe()
    for report in reports:
        assert report.started, report.describe()
        assert report.advanced >= MIN_ADVANCE, report.describe()
        assert not report.fatal_errors, report.describe()
        assert not report.page_errors, report.describe()
        assert report.last_player.get("stream") == "live", report.describe()


@pytest.mark.e2e
async def test_player_recovers_when_publisher_reconnects(tmp_path: Path) -> None:
    first = await trio.to_thread.run_sync(encode_test_stream, tmp_path / "hls", 16.0)
    # The reconnect: same media (timestamps restart, as with a new publisher), new segment names.
    second = [replace(s, name=s.name.replace("s1-", "s2-")) for s in first]
    store = MemoryStore()
    status = FakeStatus()
    session_one, session_two = "2024-05-01T12:00:00+00:00", "2024-05-01T12:05:00+00:00"
    live = stream_info("live", "cam1", state="live")
    status.set({**live, "started_at": session_one})
    app = create_app(store, status)

    async def publisher_goes_and_comes_back() -> None:
        await feed_live(store, "live", "cam1", first[:7])  # ends with EXT-X-ENDLIST
        status.set({**live, "state": "ended", "publisher": None, "started_at": session_one})
        await trio.sleep(2.5)
        # New session announced before its first playlist exists: the player sees a 404.
        store.delete("live/cam1/index.m3u8")
        status.set({**live, "started_at": session_two})
        await trio.sleep(1.5)
        await feed_live(store, "live", "cam1", second, end=False)

    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            async with serving(app) as base:
                nursery.start_soon(publisher_goes_and_comes_back)
                reports = await sample_playback(
                    [f"{base}/live/cam1/", f"{base}/live/cam1/?engine=hlsjs"],
                    seconds=16.0,
                    interval=0.5,
                )
            nursery.cancel_scope.cancel()
    for report in reports:
        player = report.last_player
        assert report.started, report.describe()
        assert player.get("session") == session_two, report.describe()
        assert player.get("loads", 0) >= 2, report.describe()
        assert player.get("stream") == "live", report.describe()
        assert report.advance_in_session(session_one) >= 1.0, report.describe()
        assert report.advance_in_session(session_two) >= MIN_ADVANCE, report.describe()
        assert not report.page_errors, report.describe()
