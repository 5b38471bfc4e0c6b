"""Multitrack (Enhanced RTMP v2) publish -> adaptive-bitrate ladder.

Real media: FFmpeg 9's FLV muxer writes several video and audio streams as one multitrack FLV,
the way OBS's Enhanced Broadcasting does (track 0 as plain tags, the other tracks as Multitrack
OneTrack tags). Fed to one LiveStream it must give index.m3u8 with a variant per video track and
an EXT-X-MEDIA per audio track, an LL-HLS playlist per rendition numbered alike, rendition
reports between them, and a warning (log + stats) for a track whose keyframes do not line up.
"""

from __future__ import annotations

import io
from pathlib import Path

import av
import m3u8
import pytest

from segmenter.flv import FlvTag, TagType, Track, join_tracks, split_multitrack
from segmenter.live import LiveStream, SegmenterConfig, end_stale_playlists
from segmenter.playlist import (
    AudioRendition,
    LivePlaylist,
    PartEntry,
    RenditionReport,
    SegmentEntry,
    Variant,
    render_multivariant,
)
from segmenter.store import MemoryStore
from tests.segmenter.media import make_flv, shifted, tags

PATH = "live/ladder"
SIZES = ((320, 240), (160, 120), (240, 180))


def ladder_args(
    seconds: float, *, gops: tuple[int, int, int] = (30, 30, 30), audio: int = 2
) -> list[str]:
    """Three H.264 renditions of one picture (3 sizes, keyframe intervals ``gops`` frames) and
    ``audio`` AAC tracks (440 Hz, 660 Hz, ...), one FLV."""
    scaled = "".join(f"[v{i}]scale={w}:{h}[s{i}];" for i, (w, h) in enumerate(SIZES))
    graph = f"[0:v]split=3[v0][v1][v2];{scaled}".rstrip(";")
    args = ["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30"]
    for n in range(audio):
        args += ["-f", "lavfi", "-i", f"sine=frequency={440 + 220 * n}:sample_rate=44100"]
    args += ["-filter_complex", graph]
    args += [arg for i in range(3) for arg in ("-map", f"[s{i}]")]
    args += [arg for n in range(audio) for arg in ("-map", f"{n + 1}:a")]
    args += ["-c:v", "libx264", "-preset", "ultrafast", "-sc_threshold", "0", "-bf", "0"]
    args += [arg for i, gop in enumerate(gops) for arg in (f"-g:v:{i}", str(gop))]
    args += ["-c:a", "aac", "-t", str(seconds)]
    return args


@pytest.fixture(scope="module")
def ladder_flv(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return make_flv(tmp_path_factory.mktemp("ladder") / "ladder.flv", *ladder_args(6))


def run(
    data: bytes,
    store: MemoryStore,
    metadata: dict[str, object] | None = None,
    *,
    end: bool = False,
) -> LiveStream:
    """Publish ``data``; ``end``: the publisher leaves (open segments are closed)."""
    live = LiveStream(PATH, store, SegmenterConfig(), wallclock=lambda: 1.7e9)
    live.begin_session(0.0)
    if metadata is not None:
        live.metadata(metadata)
    now = 0.0
    for tag in tags(data):
        now = tag.timestamp / 1000  # "now" follows media time
        live.feed(tag, now)
    if end:
        live.end_session(now)
    return live


def text(store: MemoryStore, name: str) -> str:
    data = store.get(f"{PATH}/{name}")
    assert data is not None, name
    return data.decode()


def decode_size(store: MemoryStore, playlist: m3u8.M3U8) -> tuple[int, int, int]:
    """(width, height, frames) of a rendition's init + first segment, decoded with PyAV."""
    segment = playlist.segments[0]
    init = store.get(f"{PATH}/{segment.init_section.uri}")
    media = store.get(f"{PATH}/{segment.uri}")
    assert init is not None and media is not None
    frames = 0
    with av.open(io.BytesIO(init + media), mode="r", format="mp4") as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            frames += 1
            size = (frame.width, frame.height)
    return (*size, frames)


def test_ffmpeg_writes_the_obs_mix(ladder_flv: bytes) -> None:
    """The fixture is what OBS sends: track 0 as plain tags, tracks 1.. as Multitrack OneTrack."""
    seen = set()
    for tag in tags(ladder_flv, drop=[TagType.SCRIPT]):
        tracks = split_multitrack(tag.type, tag.body)
        seen.add((tag.type, None if tracks is None else tuple(t.track_id for t in tracks)))
    assert seen == {
        (TagType.VIDEO, None),
        (TagType.VIDEO, (1,)),
        (TagType.VIDEO, (2,)),
        (TagType.AUDIO, None),
        (TagType.AUDIO, (1,)),
    }


def test_three_video_two_audio_tracks_make_a_ladder(ladder_flv: bytes) -> None:
    store = MemoryStore()
    live = run(ladder_flv, store)
    index = m3u8.loads(text(store, "index.m3u8"))
    uris = [p.uri for p in index.playlists]
    assert uris == ["cmaf.m3u8", "cmaf-v1.m3u8", "cmaf-v2.m3u8"]
    for variant, size in zip(index.playlists, SIZES, strict=True):
        info = variant.stream_info
        assert info.resolution == size
        assert info.codecs is not None and info.codecs.startswith("avc1.")
        assert info.codecs.endswith(",mp4a.40.2")
        assert info.audio == "audio"
        assert info.frame_rate == 30
        assert 0 < info.average_bandwidth <= info.bandwidth
    # Measured per rendition: the biggest picture costs the most.
    bandwidth = {p.uri: p.stream_info.bandwidth for p in index.playlists}
    assert bandwidth["cmaf-v1.m3u8"] < bandwidth["cmaf-v2.m3u8"] < bandwidth["cmaf.m3u8"]
    audio = [m for m in index.media if m.type == "AUDIO"]
    assert [(m.uri, m.group_id, m.name, m.default, m.autoselect) for m in audio] == [
        ("cmaf-a0.m3u8", "audio", "Track 0", "YES", "YES"),
        ("cmaf-a1.m3u8", "audio", "Track 1", "NO", "YES"),
    ]
    # Video renditions are video-only, each audio track is its own playlist.
    for name, size in zip(uris, SIZES, strict=True):
        playlist = m3u8.loads(text(store, name))
        width, height, frames = decode_size(store, playlist)
        assert (width, height) == size and frames >= 30
        init = store.get(f"{PATH}/{playlist.segments[0].init_section.uri}")
        assert init is not None and b"mp4a" not in init
    for name in ("cmaf-a0.m3u8", "cmaf-a1.m3u8"):
        playlist = m3u8.loads(text(store, name))
        init = store.get(f"{PATH}/{playlist.segments[0].init_section.uri}")
        assert init is not None and b"mp4a" in init and b"avc1" not in init
    # Aligned keyframes: the same cuts under the same numbers in every video rendition.
    listings = [
        [(s.uri.rsplit("-", 1)[1], s.duration) for s in m3u8.loads(text(store, n)).segments]
        for n in uris
    ]
    assert len(listings[0]) >= 2 and listings[1] == listings[0] and listings[2] == listings[0]
    stats = live.stats()
    renditions = stats["renditions"]
    assert [(r["kind"], r["track"], r["playlist"]) for r in renditions] == [
        ("video", 0, "cmaf.m3u8"),
        ("video", 1, "cmaf-v1.m3u8"),
        ("video", 2, "cmaf-v2.m3u8"),
        ("audio", 0, "cmaf-a0.m3u8"),
        ("audio", 1, "cmaf-a1.m3u8"),
    ]
    video = [r for r in renditions if r["kind"] == "video"]
    assert [(r["width"], r["height"]) for r in video] == list(SIZES)
    assert all(r["aligned"] is True and r["bandwidth"] > 0 for r in video)
    assert not any("line up" in w for w in stats["warnings"])


def test_rendition_reports_and_per_rendition_parts(ladder_flv: bytes) -> None:
    store = MemoryStore()
    live = run(ladder_flv, store)
    names = ["cmaf.m3u8", "cmaf-v1.m3u8", "cmaf-v2.m3u8", "cmaf-a0.m3u8", "cmaf-a1.m3u8"]
    for name in names:
        playlist = live.live_playlist(name)
        assert playlist is not None and playlist.part_target is not None, name
        rendered = playlist.render()
        reports = [line for line in rendered.splitlines() if "RENDITION-REPORT" in line]
        others = [n for n in names if n != name]
        assert [r.split('"')[1] for r in reports] == others, name
        for line in reports:
            other = live.live_playlist(line.split('"')[1])
            assert other is not None
            last = other.last_part()
            assert last is not None and last[1] is not None
            assert line.endswith(f"LAST-MSN={last[0]},LAST-PART={last[1]}")
        # Each rendition's parts are served from memory and lead back to its own playlist.
        parsed = m3u8.loads(rendered)
        part_uri = parsed.segments[-1].parts[0].uri
        assert live.part(part_uri) is not None
        assert live.live_playlist(part_uri) is playlist
        hint = playlist.preload_hint
        assert hint is not None and live.live_playlist(hint) is playlist
    # The stored copies (for static servers) have no LL-HLS tags.
    assert "RENDITION-REPORT" not in text(store, "cmaf-v1.m3u8")


def test_metadata_names_and_languages(ladder_flv: bytes) -> None:
    """Enhanced RTMP v2 onMetaData audioTrackIdInfoMap: NAME and LANGUAGE of each track."""
    store = MemoryStore()
    run(
        ladder_flv,
        store,
        {
            "audioTrackIdInfoMap": {
                "0": {"name": "English", "language": "en"},
                "1": {"name": 'Fran"çais', "language": "not a tag!"},
            }
        },
    )
    index = text(store, "index.m3u8")
    assert 'LANGUAGE="en",NAME="English",DEFAULT=YES,AUTOSELECT=YES' in index
    line = next(x for x in index.splitlines() if "cmaf-a1.m3u8" in x)
    assert 'NAME="Français",DEFAULT=NO' in line and "LANGUAGE" not in line


def test_one_audio_track_stays_muxed(tmp_path: Path) -> None:
    data = make_flv(tmp_path / "one.flv", *ladder_args(4, audio=1))
    store = MemoryStore()
    live = run(data, store)
    index = m3u8.loads(text(store, "index.m3u8"))
    assert len(index.playlists) == 3 and not index.media
    for variant in index.playlists:
        assert variant.stream_info.audio is None
        assert variant.stream_info.codecs.endswith(",mp4a.40.2")
        playlist = m3u8.loads(text(store, variant.uri))
        init = store.get(f"{PATH}/{playlist.segments[0].init_section.uri}")
        assert init is not None and b"mp4a" in init and b"avc1" in init
    assert not live.audio_apart


def test_ts_carries_track_0(ladder_flv: bytes) -> None:
    store = MemoryStore()
    run(ladder_flv, store)
    playlist = m3u8.loads(text(store, "ts.m3u8"))
    segment = store.get(f"{PATH}/{playlist.segments[0].uri}")
    assert segment is not None
    with av.open(io.BytesIO(segment), format="mpegts") as container:
        video, audio = container.streams.video, container.streams.audio
        assert len(video) == 1 and len(audio) == 1
        assert (video[0].codec_context.width, video[0].codec_context.height) == SIZES[0]


def test_misaligned_keyframes_are_served_with_a_warning(tmp_path: Path) -> None:
    data = make_flv(tmp_path / "mis.flv", *ladder_args(9, gops=(30, 45, 30), audio=1))
    store = MemoryStore()
    live = run(data, store, end=True)
    stats = live.stats()
    video = {r["track"]: r for r in stats["renditions"] if r["kind"] == "video"}
    assert video[1]["aligned"] is False
    assert video[2]["aligned"] is True
    assert any("video track 1 keyframes do not line up" in w for w in stats["warnings"])
    # Still served: its own cuts at its own keyframes, every segment starting with one.
    playlist = m3u8.loads(text(store, "cmaf-v1.m3u8"))
    assert len(playlist.segments) >= 2
    # Cut at its own keyframes (1.5 s apart): how many GOPs a segment takes depends on when the
    # first segment opens (audio before the first keyframe opens it since the cutter keeps that
    # audio), never a cut between keyframes, and never past the target duration.
    for segment in playlist.segments[:-1]:
        gops = segment.duration / 1.5
        assert abs(gops - round(gops)) < 0.05 and round(gops) >= 1, segment.duration
        assert segment.duration <= playlist.target_duration + 0.5
    assert "cmaf-v1.m3u8" in text(store, "index.m3u8")


def test_many_tracks_tags_too(ladder_flv: bytes) -> None:
    """A publisher that sends tracks 1 and 2 together in one ManyTracks tag (join_tracks)."""
    rebuilt = []
    pending: dict[int, list[Track]] = {}
    for tag in tags(ladder_flv):
        tracks = split_multitrack(tag.type, tag.body)
        if tag.type is TagType.VIDEO and tracks is not None:
            group = pending.setdefault(tag.timestamp, [])
            group += tracks
            if len(group) == 2:
                body = join_tracks(tag.type, pending.pop(tag.timestamp))
                rebuilt.append(type(tag)(tag.type, tag.timestamp, body))
            continue
        rebuilt.append(tag)
    store = MemoryStore()
    live = LiveStream(PATH, store, SegmenterConfig(), wallclock=lambda: 1.7e9)
    for tag in rebuilt:
        live.feed(tag, tag.timestamp / 1000)
    uris = [p.uri for p in m3u8.loads(text(store, "index.m3u8")).playlists]
    assert uris == ["cmaf.m3u8", "cmaf-v1.m3u8", "cmaf-v2.m3u8"]


def test_rendition_report_lines() -> None:
    """rfc8216bis §4.4.5.4: LAST-MSN/LAST-PART of the other rendition's last part, after the
    hint; none once ended; the playlist's own text is not changed by them."""
    playlist = LivePlaylist(2, 6, part_target=0.2)
    other = LivePlaylist(2, 6, part_target=0.2)
    playlist.rendition_reports = lambda: [
        RenditionReport("cmaf-v1.m3u8", *last) for last in [other.last_part()] if last
    ]
    assert "RENDITION-REPORT" not in playlist.render()
    other.add_part(PartEntry("b-0.0.m4s", 0.2, True), "init.mp4")
    other.add_part(PartEntry("b-0.1.m4s", 0.2, False), "init.mp4")
    playlist.set_preload_hint("a-0.0.m4s")
    lines = playlist.render().splitlines()
    assert lines[-2:] == [
        '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="a-0.0.m4s"',
        '#EXT-X-RENDITION-REPORT:URI="cmaf-v1.m3u8",LAST-MSN=0,LAST-PART=1',
    ]
    parts = (PartEntry("b-0.0.m4s", 0.2, True), PartEntry("b-0.1.m4s", 0.2, False))
    other.add_segment(SegmentEntry("b-0.m4s", 0.4, init_uri="init.mp4", parts=parts), 0.0)
    assert playlist.render().splitlines()[-1].endswith("LAST-MSN=0,LAST-PART=1")
    other.add_part(PartEntry("b-1.0.m4s", 0.2, True), "init.mp4")
    assert playlist.render().splitlines()[-1].endswith("LAST-MSN=1,LAST-PART=0")
    assert "RENDITION-REPORT" not in playlist.render(low_latency=False)
    playlist.end()
    assert "RENDITION-REPORT" not in playlist.render()


def test_multivariant_with_audio_renditions() -> None:
    variants = [
        Variant("cmaf.m3u8", 900, 800, ("avc1.64000d", "mp4a.40.2"), (320, 240), 30.0, "audio"),
        Variant("cmaf-v1.m3u8", 300, 250, ("avc1.64000b", "mp4a.40.2"), (160, 120), 30.0, "audio"),
    ]
    audio = [
        AudioRendition("cmaf-a0.m3u8", "audio", "English", "en", True),
        AudioRendition("cmaf-a1.m3u8", "audio", "Track 1", None, False),
    ]
    lines = render_multivariant(variants, audio).splitlines()
    assert lines[3:5] == [
        '#EXT-X-MEDIA:URI="cmaf-a0.m3u8",TYPE=AUDIO,GROUP-ID="audio",LANGUAGE="en",'
        'NAME="English",DEFAULT=YES,AUTOSELECT=YES',
        '#EXT-X-MEDIA:URI="cmaf-a1.m3u8",TYPE=AUDIO,GROUP-ID="audio",NAME="Track 1",'
        "DEFAULT=NO,AUTOSELECT=YES",
    ]
    assert lines[5].endswith('CODECS="avc1.64000d,mp4a.40.2",AUDIO="audio"')
    assert lines[6] == "cmaf.m3u8"
    assert lines[7].startswith("#EXT-X-STREAM-INF:BANDWIDTH=300,AVERAGE-BANDWIDTH=250,")


def test_republish_continues_every_rendition(ladder_flv: bytes) -> None:
    """A publisher that reconnects: every rendition goes on with a discontinuity, numbered like
    track 0; the stale playlists of a dead process are ended, renditions' too."""
    store = MemoryStore()
    live = run(ladder_flv, store, end=True)
    live.begin_session(10.0)
    for tag in shifted(tags(ladder_flv), 50_000):
        live.feed(tag, 10.0 + tag.timestamp / 1000 - 50)
    live.end_session(20.0)
    listings = []
    for name in ("cmaf.m3u8", "cmaf-v1.m3u8", "cmaf-v2.m3u8"):
        playlist = m3u8.loads(text(store, name))
        assert [s.discontinuity for s in playlist.segments].count(True) == 1, name
        listings.append([(s.uri.rsplit("-", 1)[1], s.duration) for s in playlist.segments])
    assert listings[1] == listings[0] and listings[2] == listings[0]
    assert all(r["aligned"] for r in live.stats()["renditions"] if r["kind"] == "video")
    ended = end_stale_playlists(store)
    assert {n.rpartition("/")[2] for n in ended} == {
        "ts.m3u8",
        "cmaf.m3u8",
        "cmaf-v1.m3u8",
        "cmaf-v2.m3u8",
        "cmaf-a0.m3u8",
        "cmaf-a1.m3u8",
    }


def test_max_renditions_bounds_the_tracks(ladder_flv: bytes) -> None:
    store = MemoryStore()
    live = LiveStream(PATH, store, SegmenterConfig(max_renditions=2), wallclock=lambda: 1.7e9)
    for tag in tags(ladder_flv):
        live.feed(tag, tag.timestamp / 1000)
    stats = live.stats()
    assert len(stats["renditions"]) == 3  # video track 0 and two more
    assert stats["dropped"] > 0
    assert any("no rendition for it (max_renditions 2)" in w for w in stats["warnings"])


def test_audio_only_multitrack(tmp_path: Path) -> None:
    """Two audio tracks and no video: track 0's stream carries audio track 0 (a variant to
    play), each track is an audio rendition too; nothing fails for want of a picture."""
    args = [
        *("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"),
        *("-f", "lavfi", "-i", "sine=frequency=660:sample_rate=44100"),
        *("-map", "0:a", "-map", "1:a", "-c:a", "aac", "-t", "5"),
    ]
    data = make_flv(tmp_path / "audio.flv", *args)
    store = MemoryStore()
    live = run(data, store, end=True)
    index = m3u8.loads(text(store, "index.m3u8"))
    assert [p.uri for p in index.playlists] == ["cmaf.m3u8"]
    assert [m.uri for m in index.media] == ["cmaf-a0.m3u8", "cmaf-a1.m3u8"]
    for name in ("cmaf.m3u8", "cmaf-a0.m3u8", "cmaf-a1.m3u8", "ts.m3u8"):
        assert len(m3u8.loads(text(store, name)).segments) >= 2, name
    assert live.stats()["malformed"] == 0


def test_a_track_that_ends_leaves_the_ladder_until_it_returns(ladder_flv: bytes) -> None:
    # A transcoding rung dropped mid-session, or a multitrack encoder stopping one rendition,
    # ends its track with a SequenceEnd: players must not be offered a rendition that stalls.
    store = MemoryStore()
    live = run(ladder_flv, store)
    assert text(store, "index.m3u8").count("#EXT-X-STREAM-INF") == 3
    end = join_tracks(TagType.VIDEO, [Track(1, "avc1", b"\x82avc1")])
    live.feed(FlvTag(TagType.VIDEO, 6000, end), 6.0)
    index = text(store, "index.m3u8")
    assert index.count("#EXT-X-STREAM-INF") == 2 and "cmaf-v1.m3u8" not in index
    assert "cmaf-v1.m3u8" not in text(store, "cmaf.m3u8")  # no rendition report for it
    # The track comes back (the publisher's next session sends it again): so does its rendition.
    live.end_session(6.0)
    live.begin_session(7.0)
    for tag in tags(ladder_flv):
        live.feed(tag, 7 + tag.timestamp / 1000)
    assert text(store, "index.m3u8").count("#EXT-X-STREAM-INF") == 3
