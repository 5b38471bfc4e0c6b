"""The player page plays a real published stream in headless Chromium, and recovers by itself when
the publisher reconnects: hls.js in lowLatencyMode on the multivariant index.m3u8 (Low-Latency HLS,
fMP4), hls.js on the MPEG-TS playlist (?playlist=ts), and Chromium's native HLS on both. One
Chromium, one tab each, one publisher that goes and comes back."""

from __future__ import annotations

import statistics
from functools import partial

import httpx
import pytest
import trio

from gateway.app import Gateway
from tests.clients import imageio_ffmpeg_exe, publish_args, run_client
from tests.web.browser import PlaybackReport, sample_playback

pytestmark = pytest.mark.e2e

# Sanity bounds on the latency the page shows (arrival at the gateway, EXT-X-PROGRAM-DATE-TIME, to
# the frame on screen; same machine clock) with a 1 s GOP publisher. Not a benchmark: LL-HLS plays
# about a second behind, TS about three target durations plus a segment behind (hls.js defaults).
MAX_LATENCY_LLHLS = 5.0
MAX_LATENCY_TS = 12.0
# What publish_args sends: 320x240 H.264 at 30 fps with a keyframe every 30 frames, AAC-LC.
WIDTH, HEIGHT = 320, 240


def assert_plays_both_sessions(report: PlaybackReport, sessions: list[str]) -> None:
    assert report.started, report.describe()
    assert not report.fatal_errors, report.describe()
    assert not report.page_errors, report.describe()
    assert report.advance_in_session(sessions[0]) >= 2.0, report.describe()
    # The page noticed the new publisher by itself and plays it.
    assert report.last_player.get("session") == sessions[1], report.describe()
    assert report.advance_in_session(sessions[1]) >= 3.0, report.describe()


def assert_latency(report: PlaybackReport, sessions: list[str], bound: float) -> None:
    """While each session plays, the page knows its latency, shows it, and it is below ``bound``
    seconds."""
    why = report.describe()
    for session in sessions:
        playing = report.playing_in_session(session)
        values = [(s.player or {}).get("latency") for s in playing]
        latencies = [float(value) for value in values if isinstance(value, int | float)]
        assert len(latencies) == len(values) >= 3, (values, why)
        # Median: the samples around a reconnect (old media ran out, new one not yet at its pace)
        # are allowed to be off; most of the session is not.
        assert 0 < statistics.median(latencies) < bound, (session, latencies, why)
        # Settled by the end: catching up does not drift away from the live edge.
        assert 0 < latencies[-1] < bound, (session, latencies, why)
        # The page shows it (refreshed twice a second, so the last sample's is recent).
        assert playing[-1].data.get("latency"), why
        assert playing[-1].shown.get("latency", "").startswith("latency "), why


def assert_rendition(report: PlaybackReport, *, advertised: bool, codecs: bool) -> None:
    """The page shows the rendition playing: its size, with ``advertised`` what the multivariant
    playlist's EXT-X-STREAM-INF says of it (bitrate, frame rate, codecs), with ``codecs`` (and
    no multivariant playlist) the codecs hls.js found in the media."""
    why = report.describe()
    rendition = report.last_player.get("rendition") or {}
    assert (rendition.get("width"), rendition.get("height")) == (WIDTH, HEIGHT), why
    if advertised:
        assert rendition.get("level") == 0, why
        assert rendition.get("bitrate", 0) > 0, why
        assert round(rendition.get("frameRate", 0)) == 30, why
    if advertised or codecs:
        assert rendition.get("codecs", "").startswith("avc1."), why
        assert "mp4a.40." in rendition["codecs"], why
    label = rendition.get("label", "")
    assert f"{WIDTH}\u00d7{HEIGHT}" in label, why
    last = report.samples[-1]
    assert last.data.get("rendition") == label and last.shown.get("rendition") == label, why


async def test_player_page_plays_live_stream_across_publisher_reconnect(gateway: Gateway) -> None:
    assert gateway.bound is not None
    rtmp = f"rtmp://127.0.0.1:{gateway.bound.rtmp_port}/live/cam"
    http_url = gateway.bound.http_url
    page = f"{http_url}/live/cam/"
    sessions: list[str] = []

    async def publisher_session(seconds: float) -> None:
        async with trio.open_nursery() as inner:
            args = publish_args(imageio_ffmpeg_exe(), rtmp, seconds=seconds, gop=30)
            inner.start_soon(partial(run_client, args, timeout=seconds + 30))
            async with httpx.AsyncClient() as client:
                with trio.fail_after(10):
                    while True:
                        info = await client.get(f"{http_url}/api/streams/live/cam")
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
        await publisher_session(20)  # live until the sampling ends

    tabs = {
        "llhls": page,  # index.m3u8 -> cmaf.m3u8, hls.js (the default where MSE exists)
        "ts": f"{page}?playlist=ts",
        "native": f"{page}?engine=native",
        "native-ts": f"{page}?playlist=ts&engine=native",
    }
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(publisher_goes_and_comes_back)
            reports = dict(
                zip(
                    tabs,
                    await sample_playback(
                        list(tabs.values()), seconds=22.0, interval=0.5, start_timeout=25.0
                    ),
                    strict=True,
                )
            )
            nursery.cancel_scope.cancel()
    assert len(sessions) == 2 and sessions[0] != sessions[1]
    engines = {name: report.last_player.get("engine") for name, report in reports.items()}
    assert engines == {"llhls": "hls.js", "ts": "hls.js", "native": "native", "native-ts": "native"}
    playlists = {name: report.last_player.get("playlist") for name, report in reports.items()}
    assert playlists == {
        "llhls": "/live/cam/index.m3u8",
        "ts": "/live/cam/ts.m3u8",
        "native": "/live/cam/index.m3u8",
        "native-ts": "/live/cam/ts.m3u8",
    }
    for report in reports.values():
        assert_plays_both_sessions(report, sessions)

    llhls, ts = reports["llhls"], reports["ts"]
    # hls.js followed index.m3u8 to a media playlist with EXT-X-PART parts; ts.m3u8 has none.
    assert llhls.last_player.get("lowLatency") is True, llhls.describe()
    assert llhls.samples[-1].data.get("lowLatency") == "true", llhls.describe()
    assert ts.last_player.get("lowLatency") is False, ts.describe()
    assert_latency(llhls, sessions, MAX_LATENCY_LLHLS)
    assert_latency(ts, sessions, MAX_LATENCY_TS)
    assert_rendition(llhls, advertised=True, codecs=True)
    assert_rendition(ts, advertised=False, codecs=True)
    assert_rendition(reports["native"], advertised=True, codecs=False)
    assert_rendition(reports["native-ts"], advertised=False, codecs=False)
    # Native: Chromium has no HTMLMediaElement.getStartDate(), so the page cannot tell the PDT of
    # the frame shown and shows no latency rather than guess (Safari has it).
    for name in ("native", "native-ts"):
        latency = reports[name].last_player.get("latency")
        assert latency is None or 0 < latency < MAX_LATENCY_TS, reports[name].describe()
