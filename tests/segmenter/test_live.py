from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import m3u8
import pytest

from segmenter.flv import FlvTag, TagType
from segmenter.live import (
    TS_PLAYLIST_NAME,
    LiveStream,
    SegmenterConfig,
    SegmentInfo,
    end_stale_playlists,
)
from segmenter.store import DiskStore, MemoryStore
from tests.segmenter.media import decode, dump_store, ffmpeg_read_warnings, shifted, tags

PATH = "live/key"


def make(store: MemoryStore | DiskStore, **config: Any) -> tuple[LiveStream, list[SegmentInfo]]:
    infos: list[SegmentInfo] = []
    live = LiveStream(
        PATH, store, SegmenterConfig(**config), wallclock=lambda: 1.7e9, on_segment=infos.append
    )
    return live, infos


def publish(live: LiveStream, items: list[FlvTag], now: float) -> None:
    live.begin_session(now)
    for tag in items:
        live.feed(tag, now)
    live.end_session(now)


def playlist(store: MemoryStore | DiskStore) -> m3u8.M3U8:
    data = store.get(f"{PATH}/{TS_PLAYLIST_NAME}")
    assert data is not None
    return m3u8.loads(data.decode())


def check_media(store: MemoryStore | DiskStore, tmp_path: Path) -> m3u8.M3U8:
    """Every listed segment decodes alone; FFmpeg reads the playlist with no warnings."""
    pl = playlist(store)
    for seg in pl.segments:
        data = store.get(f"{PATH}/{seg.uri}")
        assert data is not None
        decoded = decode(data)
        assert decoded.first_video_key in (True, None)
        assert math.floor(seg.duration + 0.5) <= pl.target_duration
    dump_store(store, tmp_path)
    assert ffmpeg_read_warnings(tmp_path / PATH / TS_PLAYLIST_NAME) == ""
    return pl


def test_one_session_end_to_end(av_flv: bytes, tmp_path: Path) -> None:
    store = MemoryStore()
    live, infos = make(store, max_segment_duration=4)
    publish(live, tags(av_flv), 0.0)
    live.close(1.0)
    pl = check_media(store, tmp_path)
    # cutter.py rule 1: the 2 s target (1 s keyframe gap), below the 4 s ceiling.
    assert pl.is_endlist and pl.target_duration == 2
    assert [s.duration for s in pl.segments][:2] == [2.0, 2.0]
    assert sum(s.duration for s in pl.segments) == pytest.approx(6.0, abs=0.05)
    assert pl.segments[0].program_date_time is not None
    assert not any(s.discontinuity for s in pl.segments)
    assert [i.sequence for i in infos] == [0, 1, 2]
    assert all(i.name.startswith(f"{PATH}/") and i.name.endswith(".ts") for i in infos)
    stats = live.stats()
    assert stats["codecs"][0].startswith("avc1.") and stats["codecs"][1:] == ["mp4a.40.2"]
    assert (stats["width"], stats["height"], stats["frame_rate"]) == (320, 240, 30.0)
    assert stats["keyframe_interval"] == pytest.approx(1.0)
    assert stats["video_bitrate"] > 0 and stats["audio_bitrate"] > 0
    assert stats["segment_count"] == 3 and stats["state"] == "ended"
    assert stats["warnings"] == [] and stats["malformed"] == 0


def test_reconnect_is_one_discontinuity_and_sequence_grows(av_flv: bytes, tmp_path: Path) -> None:
    store = DiskStore(tmp_path / "store")
    live, infos = make(store, max_segment_duration=4, window_segments=10)
    items = tags(av_flv)
    publish(live, items, 0.0)
    assert live.state == "waiting"
    publish(live, shifted(items, 500_000), 5.0)  # the new session's clock starts elsewhere
    assert live.state == "waiting"
    pl = playlist(store)
    assert not pl.is_endlist
    assert [s.discontinuity for s in pl.segments] == [False] * 3 + [True] + [False] * 2
    assert pl.segments[3].program_date_time is not None
    sequences = [i.sequence for i in infos]
    assert sequences == list(range(6))
    prefixes = {s.uri.split("-")[0] for s in pl.segments}
    assert len(prefixes) == 2 and len({s.uri for s in pl.segments}) == 6
    live.close(6.0)
    check_media(store, tmp_path / "dump")


def test_end_grace_then_new_playlist_continues_numbering(av_flv: bytes) -> None:
    store = MemoryStore()
    live, infos = make(store, max_segment_duration=4, end_grace=20)
    publish(live, tags(av_flv), 0.0)
    live.poll(19.0)
    assert not playlist(store).is_endlist and live.state == "waiting"
    live.poll(20.5)
    assert playlist(store).is_endlist and live.state == "ended"
    old = [s.uri for s in playlist(store).segments]
    publish(live, shifted(tags(av_flv), 10_000), 30.0)
    pl = playlist(store)
    assert not pl.is_endlist
    assert pl.media_sequence == 3 and pl.segments[0].discontinuity
    assert [i.sequence for i in infos] == [0, 1, 2, 3, 4, 5]
    # The ended playlist's segments stay for their grace, then leave the store.
    assert all(store.get(f"{PATH}/{u}") is not None for u in old)
    live.poll(100.0)
    assert all(store.get(f"{PATH}/{u}") is None for u in old)
    assert all(store.get(f"{PATH}/{s.uri}") is not None for s in pl.segments)


def test_window_expiry_deletes_old_segments(av_flv: bytes) -> None:
    store = MemoryStore()
    live, infos = make(store, max_segment_duration=2, window_segments=3, target_duration=1)
    live.begin_session(0.0)
    for round_ in range(4):
        for tag in shifted(tags(av_flv), round_ * 6100):
            live.feed(tag, float(round_))
    live.end_session(5.0)
    pl = playlist(store)
    assert pl.media_sequence > 0
    live.poll(1000.0)
    stored = {n for n in store.names(PATH) if n.endswith(".ts")}
    assert stored == {f"{PATH}/{s.uri}" for s in pl.segments}
    assert len(infos) > len(pl.segments)


def test_long_gop_warns_and_keeps_extinf_under_target(long_gop_flv: bytes, tmp_path: Path) -> None:
    store = MemoryStore()
    live, infos = make(store, max_segment_duration=3)
    publish(live, tags(long_gop_flv), 0.0)
    live.close(1.0)
    pl = check_media(store, tmp_path)
    assert pl.target_duration == 3
    assert any(i.forced for i in infos)
    warnings = live.stats()["warnings"]
    assert any("keyframe interval (5.0 s)" in w for w in warnings)
    assert live.stats()["dropped"] > 0


def test_target_duration_follows_the_keyframe_interval_under_the_ceiling(
    long_gop_flv: bytes, tmp_path: Path
) -> None:
    # 5 s keyframes with a 10 s ceiling: TARGETDURATION 5 (the gap), no forced cut; the
    # operator is told once that the keyframe interval is the cause of the longer segments.
    store = MemoryStore()
    live, infos = make(store, max_segment_duration=10)
    publish(live, tags(long_gop_flv), 0.0)
    live.close(1.0)
    pl = check_media(store, tmp_path)
    assert pl.target_duration == 5
    assert not any(i.forced for i in infos)
    (warning,) = live.stats()["warnings"]
    assert warning.startswith("keyframe interval 5.0 s is longer than the 2 s target")
    assert live.stats()["target_duration"] == 5


def test_codec_change_mid_session_starts_discontinuous_segment(
    av_flv: bytes, small_flv: bytes, tmp_path: Path
) -> None:
    store = MemoryStore()
    live, _ = make(store, max_segment_duration=4)
    live.begin_session(0.0)
    for tag in tags(av_flv):
        live.feed(tag, 0.0)
    for tag in shifted(tags(small_flv), 6100):  # new SPS (160x120) and timeline continues
        live.feed(tag, 1.0)
    live.close(2.0)
    pl = check_media(store, tmp_path)
    assert [s.discontinuity for s in pl.segments] == [False, False, False, True]
    last = store.get(f"{PATH}/{pl.segments[-1].uri}")
    assert last is not None and decode(last).video_frames == 60
    assert live.stats()["width"] == 160


def test_unsupported_and_malformed_media_never_raise(hevc_flv: bytes, av_flv: bytes) -> None:
    store = MemoryStore()
    live, infos = make(store)
    live.begin_session(0.0)
    for tag in tags(hevc_flv):
        live.feed(tag, 0.0)
    for body in (b"\x17\x05\x00\x00\x00", b"\x17\x00\x00\x00\x00\x02", b"\x91av", b"\xaf\x00\x12"):
        live.feed(FlvTag(TagType.VIDEO if body[0] != 0xAF else TagType.AUDIO, 5, body), 0.0)
    live.feed(FlvTag(TagType.VIDEO, 10, b"\x17\x01\x00\x00\x00\x00\x00\x00\x09\x65"), 0.0)
    live.feed(FlvTag(TagType.VIDEO, 11, b"\x90vvc1\x01"), 0.0)  # a FourCC nothing carries
    live.end_session(1.0)
    stats = live.stats()
    assert stats["unsupported"] > 0 and stats["malformed"] >= 3
    assert any("unsupported video codec vvc1" in w for w in stats["uncarried"])
    assert any("frame in avc1 after a hvc1 sequence header" in w for w in stats["warnings"])
    # The HEVC publisher is segmented in both formats (MPEG-TS carries HEVC as stream type 0x24).
    assert infos and stats["codecs"][1] == "mp4a.40.2" and stats["codecs"][0].startswith("hvc1.")
    assert stats["ts"] is None and playlist(store).segments


def test_feed_without_begin_session_and_garbage_in_avc(av_flv: bytes) -> None:
    store = MemoryStore()
    live, infos = make(store, max_segment_duration=4)
    items = tags(av_flv)
    # A non-key video frame replaced by one whose NAL length overruns: counted, the stream goes on.
    index = next(i for i, t in enumerate(items) if i > 200 and t.body[0] == 0x27)
    body = b"\x27\x01\x00\x00\x00\x00\x00\x01\x00\x41"
    items[index] = FlvTag(TagType.VIDEO, items[index].timestamp, body)
    for tag in items:  # no begin_session(): the first tag starts a session
        live.feed(tag, 0.0)
    live.close(1.0)
    assert live.stats()["malformed"] == 1
    assert len(infos) == 3


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        SegmenterConfig(target_duration=5, max_segment_duration=4)
    with pytest.raises(ValueError):
        SegmenterConfig(window_segments=0)
    assert SegmenterConfig(max_segment_duration=6.5).playlist_target_duration == 7


def test_restart_resumes_numbering_with_discontinuity_and_cleans_old_segments(
    av_flv: bytes, tmp_path: Path
) -> None:
    store = DiskStore(tmp_path / "hls")
    old = "\n".join(
        [
            "#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:3", "#EXT-X-MEDIA-SEQUENCE:10",
            "#EXT-X-DISCONTINUITY-SEQUENCE:2", "#EXTINF:2.000,", "aaaa-10.ts",
            "#EXT-X-DISCONTINUITY", "#EXTINF:2.000,", "bbbb-11.ts", "#EXTINF:2.000,", "bbbb-12.ts",
        ]
    )  # fmt: skip
    store.put(f"{PATH}/{TS_PLAYLIST_NAME}", old.encode())
    for name in ("aaaa-10.ts", "bbbb-11.ts", "bbbb-12.ts"):
        store.put(f"{PATH}/{name}", b"old")
    live, _ = make(store)
    live.begin_session(100.0)
    for tag in tags(av_flv):
        live.feed(tag, 100.0)
    live.end_session(101.0)
    pl = playlist(store)
    assert pl.media_sequence == 13  # continues after the last listed segment, never decreases
    assert pl.segments[0].discontinuity and pl.segments[0].program_date_time is not None
    assert pl.discontinuity_sequence == 3
    live.poll(105.0)  # within 2 x 6 s of the restart: old segments may still be fetched
    assert store.get(f"{PATH}/aaaa-10.ts") == b"old"
    live.poll(113.0)
    assert not [n for n in store.names(PATH) if n.endswith(("aaaa-10.ts", "-11.ts", "-12.ts"))]


def test_stale_live_playlists_are_ended_at_startup(tmp_path: Path) -> None:
    store = DiskStore(tmp_path / "hls")
    live_text = b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.000,\na-0.ts\n"
    store.put("live/a/ts.m3u8", live_text)
    store.put("live/a/cmaf.m3u8", live_text)
    store.put("live/b/ts.m3u8", live_text + b"#EXT-X-ENDLIST\n")
    # A multivariant playlist is no media playlist: nothing to end there.
    store.put("live/a/index.m3u8", b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\ncmaf.m3u8\n")
    assert sorted(end_stale_playlists(store)) == ["live/a/cmaf.m3u8", "live/a/ts.m3u8"]
    text = store.get("live/a/ts.m3u8")
    assert text is not None and m3u8.loads(text.decode()).is_endlist
    assert end_stale_playlists(store) == []


def test_retire_frees_segments_and_keeps_numbering_for_the_next_publisher(
    av_flv: bytes, tmp_path: Path
) -> None:
    store = MemoryStore()
    live, _ = make(store)
    publish(live, tags(av_flv), 0.0)
    live.end_session(10.0)
    assert not live.retirable(10.0, 0.0)  # not ended yet: a publisher may come back
    live.poll(10.0 + live.config.end_grace)
    ended = playlist(store)
    assert ended.is_endlist
    assert not live.retirable(10.0 + live.config.end_grace + 5, 60.0)
    assert live.retirable(10.0 + live.config.end_grace + 60, 60.0)
    live.retire(100.0)
    # Only the numbering is left (and the multivariant playlist naming the media playlists).
    assert sorted(store.names(PATH)) == [
        f"{PATH}/{name}" for name in ("cmaf.m3u8", "index.m3u8", TS_PLAYLIST_NAME)
    ]
    tomb = playlist(store)
    assert tomb.is_endlist and tomb.segments == []
    assert tomb.media_sequence == ended.media_sequence + len(ended.segments)
    # A new publisher much later: a fresh LiveStream continues the numbering.
    again, _ = make(store)
    publish(again, tags(av_flv), 200.0)
    again.end_session(210.0)
    pl = playlist(store)
    assert pl.media_sequence == tomb.media_sequence and pl.segments[0].discontinuity
