"""hls.js and native HLS in headless Chromium play a live stream served by the app (hypercorn)."""

from __future__ import annotations

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
                    [f"{base}/live/cam1/", f"{base}/live/cam1/?engine=hlsjs"], SAMPLE_SECONDS
                )
            nursery.cancel_scope.cancel()
    default, hlsjs = reports
    # Chromium 156 answers canPlayType(HLS) with "maybe", so the default page plays natively.
    assert default.last_player.get("engine") == "native", default.describe()
    assert hlsjs.last_player.get("engine") == "hls.js", hlsjs.describe()
    for report in reports:
        assert report.started, report.describe()
        assert report.advanced >= MIN_ADVANCE, report.describe()
        assert not report.fatal_errors, report.describe()
        assert not report.page_errors, report.describe()
        assert report.last_player.get("stream") == "live", report.describe()
