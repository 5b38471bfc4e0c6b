"""Issue 15, item 3, end to end: one multitrack publish becomes an adaptive-bitrate ladder.

FFmpeg 9's FLV muxer publishes several video and audio streams over one RTMP connection as
Enhanced RTMP v2 multitrack, as OBS's Enhanced Broadcasting does (track 0 as plain tags, the
other tracks as Multitrack OneTrack tags): three H.264 renditions of one picture (3 sizes, the
same keyframes) and two AAC tracks. index.m3u8 lists three variants and two EXT-X-MEDIA audio
renditions; Debian's ffprobe reads every rendition with its size and codec; /api/streams lists
them; headless Chromium with hls.js sees 3 levels and 2 audio tracks and switches through every
level and both audio tracks while the video keeps playing, without a stall.
"""

from __future__ import annotations

import json
import re
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import m3u8
import pytest
import trio

from bench.browser import chromium, open_player
from gateway.app import Gateway
from gateway.rtmp import amf0
from gateway.rtmp import events as ev
from gateway.rtmp.client import set_data_frame
from gateway.rtmp.connection import NEED_DATA, Connection, Role
from gateway.rtmp.limits import Limits
from segmenter.flv import FlvTag, TagType
from tests.clients import apt_ffprobe_exe, imageio_ffmpeg_exe, run_client
from tests.segmenter.media import make_flv, tags
from tests.segmenter.test_ladder import ladder_args
from tests.web.browser import sample_playback

pytestmark = pytest.mark.e2e

SIZES = ((320, 240), (160, 120), (240, 180))  # video tracks 0, 1, 2
SECONDS = 60  # the publisher's run; the test cancels it once done
STALLS = ("bufferStalledError", "bufferNudgeOnStall")  # hls.js's own stall reports
# The player page's hls.js settings, with a 2 s live sync distance instead of PART-HOLD-BACK
# (0.6 s): a level switch fetches the other rendition's playlist and parts, which on this
# shared 2-core machine (three x264 encodes, Chromium, the gateway) can take longer than 0.6 s.
HLS_CONFIG = {
    "lowLatencyMode": True,
    "liveDurationInfinity": True,
    "maxLiveSyncPlaybackRate": 1.1,
    "liveSyncDuration": 2.0,
}


def ladder_publish_args(url: str) -> list[str]:
    scaled = ";".join(f"[v{i}]scale={w}:{h}[s{i}]" for i, (w, h) in enumerate(SIZES))
    return [
        imageio_ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error",
        "-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30",
        "-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
        "-re", "-f", "lavfi", "-i", "sine=frequency=660:sample_rate=44100",
        "-filter_complex", f"[0:v]split=3[v0][v1][v2];{scaled}",
        "-map", "[s0]", "-map", "[s1]", "-map", "[s2]", "-map", "1:a", "-map", "2:a",
        # The same keyframes in every rendition: a fixed GOP, no scene-cut keyframes.
        "-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-sc_threshold", "0",
        "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k",
        "-t", str(SECONDS), "-f", "flv", url,
    ]  # fmt: skip


async def ffprobe(url: str) -> list[dict[str, Any]]:
    args = [apt_ffprobe_exe(), "-v", "error", "-of", "json", "-show_streams", url]
    result = await run_client(args, timeout=60)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    streams: list[dict[str, Any]] = json.loads(result.stdout)["streams"]
    return streams


# Each step: set the level or audio track, then wait until hls.js says it switched and the
# picture has the rendition's size, and the video played on by two more seconds.
SWITCH_JS = """async ([what, index, width]) => {
  const v = document.getElementById('v');
  const t0 = v.currentTime, errors0 = bench.errors.length, waiting0 = bench.waiting;
  if (what === 'level') hls.nextLevel = index; else hls.audioTrack = index;
  const done = () => (what === 'level'
      ? hls.currentLevel === index && v.videoWidth === width
      : hls.audioTrack === index) && v.currentTime > t0 + 2;
  while (!done()) await new Promise((resolve) => setTimeout(resolve, 100));
  return {level: hls.currentLevel, audio: hls.audioTrack, width: v.videoWidth,
          advanced: v.currentTime - t0, waiting: bench.waiting - waiting0,
          errors: bench.errors.slice(errors0).map((e) => e.details),
          buffered: v.buffered.length ? v.buffered.end(v.buffered.length - 1) - v.currentTime : 0};
}"""


def play_ladder(url: str) -> dict[str, Any]:
    """hls.js (lowLatencyMode) on ``url`` in headless Chromium: the levels and audio tracks it
    found, then every switch. Blocking: run it in a worker thread."""
    out: dict[str, Any] = {"switches": []}
    with chromium("ladder-chromium-") as context:
        page = open_player(context, url, HLS_CONFIG)
        page.wait_for_function(
            "document.getElementById('v').currentTime > 1 && hls.audioTracks.length > 0",
            timeout=30_000,
        )
        out["levels"] = page.evaluate(
            "hls.levels.map((l) => [l.width, l.height, l.bitrate, l.videoCodec, l.audioCodec])"
        )
        out["audio_tracks"] = page.evaluate("hls.audioTracks.map((t) => t.name)")
        out["waiting_before"] = page.evaluate("bench.waiting")
        order = sorted(range(len(out["levels"])), key=lambda i: -out["levels"][i][0])
        steps = [("level", i, out["levels"][i][0]) for i in [*order, order[0]]]
        steps += [("audio", 1, 0), ("audio", 0, 0)]
        for step in steps:
            out["switches"].append(page.evaluate(SWITCH_JS, list(step)))
        out["waiting_after"] = page.evaluate("bench.waiting")
        out["errors"] = page.evaluate("bench.errors")
    return out


async def test_multitrack_publish_is_a_ladder_hlsjs_switches_through(gateway: Gateway) -> None:
    assert gateway.bound is not None
    rtmp = f"rtmp://127.0.0.1:{gateway.bound.rtmp_port}/live/ladder"
    http = gateway.bound.http_url
    base = f"{http}/live/ladder/"
    with trio.fail_after(150):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(run_client, ladder_publish_args(rtmp), timeout=SECONDS + 30))
            async with httpx.AsyncClient() as client:
                while True:  # until every rendition has a few segments listed
                    await trio.sleep(0.5)
                    index = await client.get(base + "index.m3u8")
                    v2 = await client.get(base + "cmaf-v2.m3u8")
                    ready = index.status_code == 200 and v2.status_code == 200
                    if ready and len(m3u8.loads(v2.text).segments) >= 3:
                        break
                index = await client.get(base + "index.m3u8")
                api = (await client.get(f"{http}/api/streams/live/ladder")).json()
                playlists = {
                    n: (await client.get(base + n)).text
                    for n in ("cmaf.m3u8", "cmaf-v1.m3u8", "cmaf-v2.m3u8")
                }
                blocking = await client.get(base + "cmaf-v1.m3u8", params={"_HLS_msn": "2"})
            multivariant = m3u8.loads(index.text)
            probes = {
                uri: await ffprobe(base + uri)
                for uri in [
                    *(p.uri for p in multivariant.playlists),
                    "cmaf-a0.m3u8",
                    "cmaf-a1.m3u8",
                ]
            }
            played = await trio.to_thread.run_sync(play_ladder, base + "index.m3u8")
            # The gateway's own player page plays the ladder too (hls.js picks the level).
            (page,) = await sample_playback([base], seconds=6.0, interval=0.5)
            nursery.cancel_scope.cancel()

    # index.m3u8: three video variants (track 0 at cmaf.m3u8), two audio renditions.
    assert [p.uri for p in multivariant.playlists] == ["cmaf.m3u8", "cmaf-v1.m3u8", "cmaf-v2.m3u8"]
    for variant, size in zip(multivariant.playlists, SIZES, strict=True):
        info = variant.stream_info
        assert info.resolution == size, index.text
        assert re.fullmatch(r"avc1\.[0-9a-f]{6},mp4a\.40\.2", info.codecs or ""), index.text
        assert info.audio == "audio" and info.bandwidth > info.average_bandwidth > 0
    media = [(m.uri, m.name, m.default) for m in multivariant.media]
    assert media == [("cmaf-a0.m3u8", "Track 0", "YES"), ("cmaf-a1.m3u8", "Track 1", "NO")]

    # Each rendition as ffprobe reads it: the right picture and codec, video-only; AAC apart.
    for uri, size in zip(["cmaf.m3u8", "cmaf-v1.m3u8", "cmaf-v2.m3u8"], SIZES, strict=True):
        streams = probes[uri]
        assert [(s["codec_name"], s["width"], s["height"]) for s in streams] == [("h264", *size)]
    for uri in ("cmaf-a0.m3u8", "cmaf-a1.m3u8"):
        assert [s["codec_name"] for s in probes[uri]] == ["aac"], probes[uri]

    # Cut at the same keyframes, numbered alike; rendition reports for the others.
    def listing(text: str) -> list[tuple[str, float]]:
        segments = m3u8.loads(text).segments
        return [(s.uri.rsplit("-", 1)[1], s.duration) for s in segments if s.uri]

    track0 = listing(playlists["cmaf.m3u8"])
    for name in ("cmaf-v1.m3u8", "cmaf-v2.m3u8"):
        theirs = listing(playlists[name])
        common = [x for x in theirs if x[0] in {s for s, _ in track0}]
        assert common and common == [x for x in track0 if x[0] in {s for s, _ in theirs}]
        reports = re.findall(r'#EXT-X-RENDITION-REPORT:URI="([^"]+)"', playlists[name])
        assert sorted(reports) == sorted(
            {"cmaf.m3u8", "cmaf-v1.m3u8", "cmaf-v2.m3u8", "cmaf-a0.m3u8", "cmaf-a1.m3u8"} - {name}
        )
    # A blocking reload of a rendition's playlist answers with that rendition.
    assert blocking.status_code == 200 and "RENDITION-REPORT" in blocking.text
    assert m3u8.loads(blocking.text).segments[0].uri.split("-")[1] == "v1"

    # /api/streams: every rendition with its codec, size, measured bandwidth and alignment.
    renditions = api["renditions"]
    assert [(r["kind"], r["track"]) for r in renditions] == [
        ("video", 0), ("video", 1), ("video", 2), ("audio", 0), ("audio", 1)
    ]  # fmt: skip
    for r, size in zip(renditions[:3], SIZES, strict=True):
        assert (r["width"], r["height"]) == size and r["codec"].startswith("avc1.")
        assert r["aligned"] is True and r["bandwidth"] > 0
    assert all(r["codec"] == "mp4a.40.2" and r["bandwidth"] > 0 for r in renditions[3:])
    assert not [w for w in api["warnings"] if "line up" in w]

    # hls.js: three levels, two audio tracks, every switch done while playing on, no stall.
    assert sorted((w, h) for w, h, *_ in played["levels"]) == sorted(SIZES), played
    assert played["audio_tracks"] == ["Track 0", "Track 1"], played
    assert len(played["switches"]) == 6, played
    widths = [s["width"] for s in played["switches"][:4]]
    assert widths == [320, 240, 160, 320], played
    assert all(s["advanced"] > 2 for s in played["switches"]), played
    assert [s["audio"] for s in played["switches"][4:]] == [1, 0], played
    assert not [e for e in played["errors"] if e["fatal"] or e["details"] in STALLS], played
    assert played["waiting_after"] == played["waiting_before"], played
    assert page.started and not page.fatal_errors and not page.page_errors, page.describe()
    assert page.advanced >= 3.0, page.describe()
    rendition = page.last_player.get("rendition") or {}
    assert (rendition.get("width"), rendition.get("height")) in SIZES, page.describe()


async def publish_tags(
    gw: Gateway, key: str, metadata: dict[str, Any], items: list[FlvTag]
) -> None:
    """The project's own RTMP client role as a publisher: onMetaData (as @setDataFrame), then
    ``items`` as fast as the socket takes them, then close."""
    assert gw.bound is not None
    sock = await trio.open_tcp_stream("127.0.0.1", gw.bound.rtmp_port)
    async with sock:
        conn = Connection(Role.CLIENT, Limits())
        conn.connect("live", f"rtmp://127.0.0.1:{gw.bound.rtmp_port}/live")
        conn.publish(key)
        stream_id = None
        while stream_id is None:
            await sock.send_all(conn.data_to_send())
            conn.receive_data(await sock.receive_some(16384))
            while (event := conn.next_event()) is not NEED_DATA:
                assert not isinstance(event, ev.ConnectionClosed), event
                if isinstance(event, ev.Status) and event.code == "NetStream.Publish.Start":
                    stream_id = event.stream_id
        body = set_data_frame(amf0.encode("onMetaData", metadata))
        conn.send_media(stream_id, int(TagType.SCRIPT), 0, body)
        for tag in items:
            conn.send_media(stream_id, int(tag.type), tag.timestamp, tag.body)
            if len(pending := conn.data_to_send()) > 0:
                await sock.send_all(pending)


async def test_own_client_publishes_audio_track_names_and_languages(
    gateway: Gateway, tmp_path: Path
) -> None:
    """Enhanced RTMP v2 onMetaData audioTrackIdInfoMap gives each audio rendition its NAME and
    LANGUAGE (FFmpeg sends none: the project's RTMP client publishes FFmpeg's multitrack FLV)."""
    assert gateway.bound is not None
    data = make_flv(tmp_path / "ladder.flv", *ladder_args(5))
    metadata = {
        "audioTrackIdInfoMap": {
            "0": {"name": "English", "language": "en"},
            "1": {"name": "Français", "language": "fr"},
        }
    }
    items = tags(data, drop=[TagType.SCRIPT])
    with trio.fail_after(60):
        await publish_tags(gateway, "langs", metadata, items)
        async with httpx.AsyncClient() as client:
            while True:
                index = await client.get(f"{gateway.bound.http_url}/live/langs/index.m3u8")
                if index.status_code == 200 and index.text.count("#EXT-X-MEDIA:") == 2:
                    break
                await trio.sleep(0.1)
    media = [(m.uri, m.language, m.name, m.default) for m in m3u8.loads(index.text).media]
    assert media == [
        ("cmaf-a0.m3u8", "en", "English", "YES"),
        ("cmaf-a1.m3u8", "fr", "Français", "NO"),
    ]
    assert index.text.count("#EXT-X-STREAM-INF") == 3
