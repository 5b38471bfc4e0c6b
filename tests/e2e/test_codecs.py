"""Issue 15, first slice, end to end: FFmpeg 9 publishes HEVC, AV1 and VP9 (with AAC or Opus) over
Enhanced RTMP; the CMAF output decodes with the right codec, picture and CODECS string. HEVC + AAC
also goes to ts.m3u8 (stream type 0x24), read by PyAV, Debian's ffprobe and FFmpeg 5.1; for AV1,
VP9 and Opus ts.m3u8 answers 404 saying why (MPEG-TS here carries H.264, HEVC, AAC, MP3, AC-3
and E-AC-3)."""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import av
import httpx
import pytest
import trio
from av.video.codeccontext import VideoCodecContext

from gateway.app import Gateway
from tests.clients import apt_ffmpeg_exe, apt_ffprobe_exe, imageio_ffmpeg_exe, run_client
from tests.web.browser import sample_playback

pytestmark = pytest.mark.e2e

FRAMES = 90  # 3 s at 30 fps, a keyframe every second


@dataclass(frozen=True)
class Case:
    video_args: tuple[str, ...]
    audio_args: tuple[str, ...]
    codec: str  # FFmpeg's decoder name
    audio_codec: str
    codecs: re.Pattern[str]  # the CODECS attribute
    ts_names: str  # codec names the ts.m3u8 404 gives ("": TS carries the stream)


CASES = {
    "hevc-aac": Case(
        ("-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error:keyint=30"),
        ("-c:a", "aac"),
        "hevc",
        "aac",
        re.compile(r"hvc1\.1\.6\.L(\d+)(\.[0-9A-F]{2})*,mp4a\.40\.2"),
        "",
    ),
    "av1-opus": Case(
        ("-c:v", "libsvtav1", "-preset", "12", "-g", "30", "-svtav1-params", "lp=1"),
        ("-c:a", "libopus"),
        "av1",
        "opus",
        re.compile(r"av01\.0\.(\d\d)M\.08,Opus"),
        "AV1 or Opus",
    ),
    "vp9-opus": Case(
        ("-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-g", "30"),
        ("-c:a", "libopus"),
        "vp9",
        "opus",
        re.compile(r"vp09\.00\.(\d\d)\.08,Opus"),
        "VP9 or Opus",
    ),
}


def _url(gw: Gateway, path: str) -> str:
    assert gw.bound is not None
    return gw.bound.http_url + path


def _decode(data: bytes, fmt: str = "mp4") -> dict[str, tuple[str, int, int, int]]:
    """codec, width, height and decoded frame count per stream type, read with PyAV."""
    out: dict[str, tuple[str, int, int, int]] = {}
    with av.open(io.BytesIO(data), "r", format=fmt) as container:
        streams = {s.type: s for s in container.streams}
        counts = dict.fromkeys(streams, 0)
        for packet in container.demux():
            for _ in packet.decode():
                counts[packet.stream.type] += 1
        for kind, s in streams.items():
            ctx = s.codec_context
            size = (ctx.width, ctx.height) if isinstance(ctx, VideoCodecContext) else (0, 0)
            out[kind] = (ctx.codec.canonical_name, *size, counts[kind])
    return out


def _pmt_stream_types(segment: bytes) -> list[int]:
    """stream_type of each elementary stream in the segment's first PMT (ISO/IEC 13818-1
    §2.4.4.8), read off the TS packets directly."""
    for at in range(0, len(segment), 188):
        packet = segment[at : at + 188]
        if not packet[1] & 0x40 or packet[3] & 0x20:  # no payload start, or adaptation field
            continue
        section = packet[5 + packet[4] :]  # after the pointer field
        if section[0] != 0x02:  # table_id of a TS_program_map_section
            continue
        end = 3 + (((section[1] & 0x0F) << 8) | section[2]) - 4  # before CRC_32
        pos = 12 + (((section[10] & 0x0F) << 8) | section[11])  # after program_info
        types = []
        while pos < end:
            types.append(section[pos])
            pos += 5 + (((section[pos + 3] & 0x0F) << 8) | section[pos + 4])
        return types
    raise AssertionError("no PMT in the segment")


@pytest.mark.parametrize("name", list(CASES))
async def test_enhanced_rtmp_codec_plays_from_cmaf(gateway: Gateway, name: str) -> None:
    case = CASES[name]
    assert gateway.bound is not None
    args = [
        imageio_ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error",
        "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
        *case.video_args, "-pix_fmt", "yuv420p", *case.audio_args,
        "-frames:v", str(FRAMES), "-t", "3",
        "-f", "flv", f"rtmp://127.0.0.1:{gateway.bound.rtmp_port}/live/{name}",
    ]  # fmt: skip
    result = await run_client(args, timeout=120)
    assert result.returncode == 0, result.stderr.decode(errors="replace")

    base = f"/live/{name}/"
    async with httpx.AsyncClient() as client:
        index = (await client.get(_url(gateway, base + "index.m3u8"))).text
        cmaf = (await client.get(_url(gateway, base + "cmaf.m3u8"))).text
        ts = await client.get(_url(gateway, base + "ts.m3u8"))
        api = (await client.get(_url(gateway, f"/api/streams/live/{name}"))).json()
        maps = re.findall(r'#EXT-X-MAP:URI="([^"]+)"', cmaf)
        assert len(set(maps)) == 1, cmaf
        init = (await client.get(_url(gateway, base + maps[0]))).content
        segment_uris = [line for line in cmaf.splitlines() if line.endswith(".m4s")]
        segments = [(await client.get(_url(gateway, base + u))).content for u in segment_uris]
        part_uris = re.findall(r'#EXT-X-PART:[^\n]*URI="([^"]+)"', cmaf)
        parts = {u: (await client.get(_url(gateway, base + u))) for u in part_uris}

    # index.m3u8 points at the CMAF playlist only, with the CODECS of the sequence headers.
    stream_inf = [line for line in index.splitlines() if line.startswith("#EXT-X-STREAM-INF")]
    assert len(stream_inf) == 1 and index.rstrip().endswith("cmaf.m3u8"), index
    codecs = re.search(r'CODECS="([^"]+)"', stream_inf[0])
    assert codecs is not None and case.codecs.fullmatch(codecs.group(1)), stream_inf[0]
    assert "RESOLUTION=320x240" in stream_inf[0]
    assert api["codecs"] == codecs.group(1).split(",") and api["uncarried"] == []
    assert (api["width"], api["height"]) == (320, 240)

    if not case.ts_names:
        assert ts.status_code == 200 and api["ts"] is None
    else:  # no ts.m3u8, and the 404 says why
        assert ts.status_code == 404
        reason = f"MPEG-TS here carries H.264, HEVC, AAC, MP3, AC-3 and E-AC-3, not {case.ts_names}"
        assert f"ts.m3u8 of live/{name}: {reason}" in ts.text
        assert api["ts"] is not None and case.ts_names in api["ts"]

    # The whole segments after the init segment: every frame, the right codec and picture.
    whole = _decode(init + b"".join(segments))
    assert whole["video"] == (case.codec, 320, 240, FRAMES)
    assert whole["audio"][0] == case.audio_codec and whole["audio"][3] > 100

    # The parts still listed, after the init segment, decode too (they start at a keyframe:
    # the first listed part of a segment is INDEPENDENT).
    assert parts and all(r.status_code == 200 for r in parts.values())
    first_segment = part_uris[0].rsplit(".", 2)[0]
    own = [r.content for u, r in parts.items() if u.rsplit(".", 2)[0] == first_segment]
    of_parts = _decode(init + b"".join(own))
    assert of_parts["video"][:3] == (case.codec, 320, 240) and of_parts["video"][3] > 0
    index_of_segment = [u.rsplit(".", 1)[0] for u in segment_uris].index(first_segment)
    assert b"".join(own) == segments[index_of_segment]  # a segment is its parts

    # ffprobe reads the multivariant playlist: codec, profile and level as CODECS says.
    probe = await run_client(
        [
            apt_ffprobe_exe(),
            "-v",
            "error",
            "-of",
            "json",
            "-show_streams",
            _url(gateway, base + "index.m3u8"),
        ],
        timeout=30,
    )
    assert probe.returncode == 0, probe.stderr
    video = next(s for s in json.loads(probe.stdout)["streams"] if s["codec_type"] == "video")
    assert video["codec_name"] == case.codec and (video["width"], video["height"]) == (320, 240)
    level = case.codecs.fullmatch(codecs.group(1))
    assert level is not None
    if case.codec in ("hevc", "av1"):  # hvc1 profile 1 / av01 profile 0 are both "Main"
        assert video["profile"] == "Main" and video["level"] == int(level.group(1))
    else:
        assert video["profile"] == "Profile 0" and video["pix_fmt"] == "yuv420p"


async def test_hevc_plays_from_mpeg_ts(gateway: Gateway, tmp_path: Path) -> None:
    """HEVC + AAC in ts.m3u8: each segment starts decodable (VPS/SPS/PPS before its IRAP), all of
    them give every frame in PyAV and Debian's ffprobe; Debian's FFmpeg reads the playlist."""
    case = CASES["hevc-aac"]
    assert gateway.bound is not None
    args = [
        imageio_ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error",
        "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
        *case.video_args, "-pix_fmt", "yuv420p", *case.audio_args,
        "-frames:v", str(FRAMES), "-t", "3",
        "-f", "flv", f"rtmp://127.0.0.1:{gateway.bound.rtmp_port}/live/hevcts",
    ]  # fmt: skip
    result = await run_client(args, timeout=120)
    assert result.returncode == 0, result.stderr.decode(errors="replace")

    ts_url = _url(gateway, "/live/hevcts/ts.m3u8")
    async with httpx.AsyncClient() as client:
        ts = await client.get(ts_url)
        assert ts.status_code == 200, ts.text
        uris = [line for line in ts.text.splitlines() if line.endswith(".ts")]
        segments = [(await client.get(_url(gateway, "/live/hevcts/" + u))).content for u in uris]
    assert len(segments) >= 2 and all(segments), ts.text

    for segment in segments:  # each one alone: HEVC from its first IRAP, AAC
        alone = _decode(segment, "mpegts")
        assert alone["video"][:3] == ("hevc", 320, 240) and alone["video"][3] > 0
        assert alone["audio"][0] == "aac" and alone["audio"][3] > 0
    whole = b"".join(segments)
    decoded = _decode(whole, "mpegts")
    assert decoded["video"] == ("hevc", 320, 240, FRAMES)
    assert decoded["audio"][0] == "aac" and decoded["audio"][3] > 100

    # Debian's ffprobe (FFmpeg 5.1) counts every frame; the PMT says stream type 0x24.
    joined = tmp_path / "hevc.ts"
    joined.write_bytes(whole)
    probe = await run_client(
        [
            apt_ffprobe_exe(), "-v", "error", "-of", "json", "-count_frames",
            "-show_streams", "-show_programs", str(joined),
        ],
        timeout=60,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    streams = json.loads(probe.stdout)["streams"]
    video = next(s for s in streams if s["codec_type"] == "video")
    assert video["codec_name"] == "hevc" and (video["width"], video["height"]) == (320, 240)
    assert int(video["nb_read_frames"]) == FRAMES
    assert all(_pmt_stream_types(segment) == [0x24, 0x0F] for segment in segments)
    assert next(s for s in streams if s["codec_type"] == "audio")["codec_name"] == "aac"

    # Debian's FFmpeg 5.1 reads the media playlist itself, without a warning.
    read = await run_client(
        [
            apt_ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "warning",
            "-live_start_index", "0", "-i", ts_url, "-t", "2.5", "-f", "null", "-",
        ],
        timeout=60,
    )  # fmt: skip
    assert read.returncode == 0 and read.stderr.decode().strip() == "", read


@dataclass(frozen=True)
class AudioCase:
    args: tuple[str, ...]
    codec: str  # ffprobe's codec_name
    codecs: str  # the audio entry of the CODECS attribute
    ts: bool  # ts.m3u8 carries it


AUDIO_CASES = {
    "flac": AudioCase(("-c:a", "flac"), "flac", "fLaC", False),
    "ac3": AudioCase(("-c:a", "ac3"), "ac3", "ac-3", True),
    "eac3": AudioCase(("-c:a", "eac3"), "eac3", "ec-3", True),
    "mp3": AudioCase(("-c:a", "libmp3lame"), "mp3", "mp4a.40.34", True),
}


async def _probe_audio(url: str) -> dict[str, object]:
    probe = await run_client(
        [apt_ffprobe_exe(), "-v", "error", "-of", "json", "-show_streams", url], timeout=30
    )
    assert probe.returncode == 0, probe.stderr
    streams = json.loads(probe.stdout)["streams"]
    assert next(s for s in streams if s["codec_type"] == "video")["codec_name"] == "h264"
    audio: dict[str, object] = next(s for s in streams if s["codec_type"] == "audio")
    return audio


@pytest.mark.parametrize("name", list(AUDIO_CASES))
async def test_enhanced_rtmp_audio_plays_from_index(gateway: Gateway, name: str) -> None:
    """FFmpeg 9 publishes H.264 + FLAC / AC-3 / E-AC-3 (Enhanced RTMP fLaC, ac-3, ec-3) or MP3
    (legacy SoundFormat 2, as FFmpeg 9 sends it); index.m3u8 names the codec in CODECS and plays
    in Debian's ffprobe (FFmpeg 5.1) with that codec, rate and channels; ts.m3u8 carries AC-3,
    E-AC-3 and MP3, and answers FLAC with a 404 saying why."""
    case = AUDIO_CASES[name]
    assert gateway.bound is not None
    args = [
        imageio_ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error",
        "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
        "-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-pix_fmt", "yuv420p",
        *case.args, "-frames:v", str(FRAMES), "-t", "3",
        "-f", "flv", f"rtmp://127.0.0.1:{gateway.bound.rtmp_port}/live/{name}",
    ]  # fmt: skip
    result = await run_client(args, timeout=120)
    assert result.returncode == 0, result.stderr.decode(errors="replace")

    base = f"/live/{name}/"
    async with httpx.AsyncClient() as client:
        index = (await client.get(_url(gateway, base + "index.m3u8"))).text
        ts = await client.get(_url(gateway, base + "ts.m3u8"))
        api = (await client.get(_url(gateway, f"/api/streams/live/{name}"))).json()

    stream_inf = [line for line in index.splitlines() if line.startswith("#EXT-X-STREAM-INF")]
    # MP3 in fMP4 is not for browsers (Chromium's MSE takes it as audio/mpeg from TS only).
    playlist = "ts.m3u8" if name == "mp3" else "cmaf.m3u8"
    assert len(stream_inf) == 1 and index.rstrip().endswith(playlist), index
    codecs = re.search(r'CODECS="([^"]+)"', stream_inf[0])
    assert codecs is not None and re.fullmatch(rf"avc1\.[0-9a-f]{{6}},{re.escape(case.codecs)}",
                                               codecs.group(1)), stream_inf[0]  # fmt: skip
    assert api["codecs"] == codecs.group(1).split(",") and api["uncarried"] == []
    assert (api["audio_sample_rate"], api["audio_channels"]) == (48000, 1)
    assert api["malformed"] == 0, api

    for playlist in ("index.m3u8", "cmaf.m3u8"):  # the LL-HLS playlist has every codec
        audio = await _probe_audio(_url(gateway, base + playlist))
        found = (audio["codec_name"], audio["sample_rate"], audio["channels"])
        assert found == (case.codec, "48000", 1), (playlist, audio)

    if case.ts:
        assert ts.status_code == 200 and api["ts"] is None, ts.text
        audio = await _probe_audio(_url(gateway, base + "ts.m3u8"))
        assert (audio["codec_name"], audio["sample_rate"]) == (case.codec, "48000")
    else:
        assert ts.status_code == 404
        assert "ts.m3u8 of live/flac: MPEG-TS here carries" in ts.text and "not FLAC" in ts.text


async def test_player_page_plays_flac_mp3_and_says_what_no_output_carries(gateway: Gateway) -> None:
    """Headless Chromium on the player page (hls.js): H.264 + FLAC plays with sound (Chromium
    decodes fLaC from fMP4), so does H.264 + MP3 (index.m3u8 points at ts.m3u8 for it);
    H.264 + Nellymoser plays its picture and the page says, visibly, that the Nellymoser audio
    is carried by no output."""
    assert gateway.bound is not None
    http_url = gateway.bound.http_url
    rtmp = f"rtmp://127.0.0.1:{gateway.bound.rtmp_port}/live"

    def publish(key: str, audio: tuple[str, ...], rate: int) -> list[str]:
        return [
            imageio_ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error",
            "-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30",
            "-re", "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate={rate}",
            "-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-pix_fmt", "yuv420p",
            *audio, "-t", "25", "-f", "flv", f"{rtmp}/{key}",
        ]  # fmt: skip

    async def live(key: str) -> None:
        # Joined past the first segments: in two clean-clone CI runs a player that joined during
        # the second segment of the FLAC stream stalled at its end (a 0.3 s buffer hole, seen
        # nowhere else; docs/llhls.md). This test is about the codecs, not that join.
        async with httpx.AsyncClient() as client:
            with trio.fail_after(20):
                while True:
                    info = await client.get(f"{http_url}/api/streams/live/{key}")
                    if info.status_code == 200 and info.json().get("segment_count", 0) >= 3:
                        return
                    await trio.sleep(0.2)

    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(run_client, publish("flacweb", ("-c:a", "flac"), 48000),
                                       timeout=60))  # fmt: skip
            nursery.start_soon(partial(run_client, publish("nelly", ("-c:a", "nellymoser"), 44100),
                                       timeout=60))  # fmt: skip
            nursery.start_soon(partial(run_client, publish("mp3web", ("-c:a", "libmp3lame"), 48000),
                                       timeout=60))  # fmt: skip
            for key in ("flacweb", "mp3web", "nelly"):
                await live(key)
            flac, mp3, nelly = await sample_playback(
                [f"{http_url}/live/{key}/" for key in ("flacweb", "mp3web", "nelly")],
                seconds=6.0,
                interval=0.5,
                start_timeout=25.0,
            )
            nursery.cancel_scope.cancel()

    for report in (flac, mp3, nelly):
        assert report.started and report.advanced >= 3.0, report.describe()
        assert not report.fatal_errors and not report.page_errors, report.describe()
    rendition = flac.last_player.get("rendition") or {}
    # index.m3u8 says fLaC; hls.js asks MSE for the name Chromium knows ("flac").
    assert rendition.get("codecs", "").lower().endswith(",flac"), flac.describe()
    assert (flac.samples[-1].audio_decoded or 0) > 0, flac.describe()  # the FLAC sound decodes
    assert flac.samples[-1].shown.get("uncarried") == "", flac.describe()
    assert mp3.last_player.get("playlist") == "/live/mp3web/index.m3u8", mp3.describe()
    assert (mp3.samples[-1].audio_decoded or 0) > 0, mp3.describe()  # the MP3 sound decodes
    message = nelly.samples[-1].shown.get("uncarried", "")
    assert message.startswith("Not playable here: unsupported audio codec Nellymoser"), message
    assert "no output carries it" in message


async def test_player_page_plays_av1_and_opus_with_hlsjs(gateway: Gateway) -> None:
    """Headless Chromium on the player page (hls.js, CMAF): FFmpeg 9 publishes AV1 (SVT-AV1) and
    Opus over Enhanced RTMP; the picture advances, the Opus sound decodes, and hls.js was given
    the av01/Opus CODECS of the sequence headers."""
    assert gateway.bound is not None
    case = CASES["av1-opus"]
    args = [
        imageio_ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error",
        "-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30",
        "-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
        *case.video_args, "-pix_fmt", "yuv420p", *case.audio_args, "-t", "25",
        "-f", "flv", f"rtmp://127.0.0.1:{gateway.bound.rtmp_port}/live/av1web",
    ]  # fmt: skip
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(run_client, args, timeout=60))
            async with httpx.AsyncClient() as client:
                with trio.fail_after(20):
                    while True:
                        info = await client.get(_url(gateway, "/api/streams/live/av1web"))
                        if info.status_code == 200 and info.json().get("segment_count"):
                            break
                        await trio.sleep(0.2)
            (report,) = await sample_playback(
                [_url(gateway, "/live/av1web/")], seconds=6.0, interval=0.5, start_timeout=25.0
            )
            nursery.cancel_scope.cancel()
    assert report.started and report.advanced >= 3.0, report.describe()
    assert not report.fatal_errors and not report.page_errors, report.describe()
    codecs = (report.last_player.get("rendition") or {}).get("codecs", "")
    # hls.js may hand MSE the lower-case name ("opus"), as it does for fLaC.
    assert re.fullmatch(case.codecs.pattern, codecs, re.IGNORECASE), report.describe()
    assert (report.samples[-1].audio_decoded or 0) > 0, report.describe()  # Opus decodes


async def test_rtmp_players_get_each_audio_codec_as_sent(gateway: Gateway, tmp_path: Path) -> None:
    """RTMP play passes FLAC, AC-3, E-AC-3 and MP3 through as the publisher sent them: FFmpeg 9
    joining 2 s into each publish records H.264 + the codec, and all of it decodes (PyAV)."""
    assert gateway.bound is not None
    rtmp = f"rtmp://127.0.0.1:{gateway.bound.rtmp_port}/live"
    recorded: dict[str, dict[str, tuple[str, int, int]]] = {}

    async def publish(key: str, case: AudioCase) -> None:
        args = [
            imageio_ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error",
            "-re", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=15",
            "-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
            "-c:v", "libx264", "-preset", "ultrafast", "-g", "15", "-pix_fmt", "yuv420p",
            *case.args, "-t", "7", "-f", "flv", f"{rtmp}/{key}",
        ]  # fmt: skip
        result = await run_client(args, timeout=30)
        assert result.returncode == 0, result.stderr

    async def play(key: str) -> None:
        await trio.sleep(2)
        out = tmp_path / f"{key}.flv"
        args = [
            imageio_ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error",
            "-i", f"{rtmp}/{key}", "-t", "3", "-c", "copy", "-f", "flv", str(out),
        ]  # fmt: skip
        result = await run_client(args, timeout=30)
        assert result.returncode == 0, result.stderr
        recorded[key] = _decoded_streams(out.read_bytes())

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for key, case in AUDIO_CASES.items():
                nursery.start_soon(publish, key, case)
                nursery.start_soon(play, key)
    for key, case in AUDIO_CASES.items():
        streams = recorded[key]
        assert streams["video"][0] == "h264" and streams["video"][2] >= 40, streams
        audio_codec, rate, frames = streams["audio"]
        assert audio_codec.startswith(case.codec) and rate == 48000, streams
        assert frames >= 80, streams  # 3 s: 94 AC-3 frames, 125 MP3, 140 FLAC


def _decoded_streams(data: bytes) -> dict[str, tuple[str, int, int]]:
    """Per stream type: decoder name, sample rate (audio) and frames decoded, by PyAV."""
    out: dict[str, tuple[str, int, int]] = {}
    with av.open(io.BytesIO(data), mode="r", format="flv") as container:
        streams = {s.type: s for s in container.streams}
        counts = dict.fromkeys(streams, 0)
        for packet in container.demux():
            for _ in packet.decode():
                counts[packet.stream.type] += 1
        for kind, s in streams.items():
            rate = s.sample_rate if isinstance(s, av.AudioStream) else 0
            out[kind] = (s.codec_context.codec.name, rate, counts[kind])
    return out
