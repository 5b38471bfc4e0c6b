"""CMAF / LL-HLS output of the segmenter: init segments, parts, segments and cmaf.m3u8.

Real media (imageio-ffmpeg's x264 + AAC with B-frames) through LiveStream; every part is decoded
with its init segment, the parts of a segment are the segment, tfdt runs on across parts,
segments and a republish, and FFmpeg reads the playlists without a warning.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import av
import m3u8

from segmenter.fmp4 import AAC_FRAME_SAMPLES, VIDEO_TIMESCALE
from segmenter.live import (
    CMAF_PLAYLIST_NAME,
    MULTIVARIANT_NAME,
    TS_PLAYLIST_NAME,
    LiveStream,
    end_stale_playlists,
)
from segmenter.playlist import nearest_int
from segmenter.store import Data, DiskStore, MemoryStore, Store
from tests.segmenter.media import dump_store, ffmpeg_read_warnings, make_flv, shifted, tags
from tests.segmenter.test_live import PATH, make, publish


def media_playlist(store: Store, name: str = CMAF_PLAYLIST_NAME) -> m3u8.M3U8:
    data = store.get(f"{PATH}/{name}")
    assert data is not None
    return m3u8.loads(data.decode())


def ll(live: LiveStream) -> m3u8.M3U8:
    """The LL-HLS playlist as the web side serves it (from memory, with parts and hint)."""
    assert live.lowlatency is not None
    return m3u8.loads(live.lowlatency.render())


def part(live: LiveStream, uri: str) -> bytes:
    data = live.part(uri)  # parts stay in memory, never in the store
    assert data is not None, uri
    return data


def get(store: MemoryStore, uri: str) -> bytes:
    data = store.get(f"{PATH}/{uri}")
    assert data is not None, uri
    return data


def boxes(data: bytes) -> list[tuple[bytes, bytes]]:
    """Top-level (type, payload) boxes; sizes must add up to the data exactly."""
    out, at = [], 0
    while at < len(data):
        size, kind = struct.unpack_from(">I4s", data, at)
        assert size >= 8 and at + size <= len(data), (kind, size)
        out.append((kind, data[at + 8 : at + size]))
        at += size
    return out


def children(payload: bytes) -> dict[bytes, bytes]:
    return dict(boxes(payload))


def tfdts(fragment: bytes) -> dict[int, int]:
    """track_ID -> baseMediaDecodeTime of each traf of a moof+mdat fragment."""
    (kind, moof), (mdat_kind, _) = boxes(fragment)
    assert (kind, mdat_kind) == (b"moof", b"mdat")
    out = {}
    for traf_kind, traf in boxes(moof):
        if traf_kind != b"traf":
            continue
        inner = children(traf)
        (track_id,) = struct.unpack_from(">I", inner[b"tfhd"], 4)
        assert inner[b"tfdt"][0] == 1  # version 1: 64-bit decode time
        (out[track_id],) = struct.unpack_from(">Q", inner[b"tfdt"], 4)
    return out


def decode_fmp4(data: bytes) -> tuple[int, int, bool | None, int]:
    """(video frames, audio frames, first video packet is a keyframe, video packets) of init +
    media. A part that does not start with a keyframe demuxes but does not decode alone."""
    video = audio = packets = 0
    first_key = None
    with av.open(io.BytesIO(data), "r", format="mp4") as container:
        for packet in container.demux():
            if packet.size == 0:
                continue
            if packet.stream.type == "video":
                if first_key is None:
                    first_key = packet.is_keyframe
                packets += 1
                video += len(packet.decode())
            else:
                audio += len(packet.decode())
        for stream in container.streams.video:
            video += len(stream.codec_context.decode(None))
    return video, audio, first_key, packets


def test_init_segment_declares_the_publishers_tracks(av_flv: bytes) -> None:
    store = MemoryStore()
    live, _ = make(store)
    publish(live, tags(av_flv), 0.0)
    pl = media_playlist(store)
    init = get(store, pl.segments[0].init_section.uri)
    assert [k for k, _ in boxes(init)] == [b"ftyp", b"moov"]
    with av.open(io.BytesIO(init), "r", format="mp4") as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert (video.codec_context.name, video.width, video.height) == ("h264", 320, 240)
        assert (audio.codec_context.name, audio.sample_rate, audio.channels) == ("aac", 44100, 1)


def test_parts_decode_concatenate_to_segments_and_tfdt_continues(av_flv: bytes) -> None:
    store = MemoryStore()
    live, _ = make(store, window_segments=20)
    live.begin_session(0.0)
    for tag in tags(av_flv):
        live.feed(tag, 0.0)
    pl = ll(live)  # while live: parts listed, a preload hint for the next one
    assert pl.preload_hint is not None and pl.preload_hint.hint_type == "PART"
    stored = media_playlist(store)  # the store's copy: whole segments, no LL-HLS tags
    assert "EXT-X-SERVER-CONTROL" not in get(store, CMAF_PLAYLIST_NAME).decode()
    assert not any(s.parts for s in stored.segments)
    assert store.get(f"{PATH}/{pl.segments[0].parts[0].uri}") is None
    live.end_session(1.0)
    pl = ll(live)
    init = get(store, pl.segments[0].init_section.uri)
    # PART-TARGET: 200 ms plus a frame (outputs.CmafOutput, the grid rule).
    assert pl.part_inf.part_target == 0.234 and pl.target_duration == 2
    assert pl.server_control.part_hold_back == 0.6  # three 200 ms parts
    expected: dict[int, int] | None = None  # tfdt of the part before
    part_duration = 0.0  # and its duration
    total_video = 0
    for segment in pl.segments:
        parts = [part(live, p.uri) for p in segment.parts]
        assert parts, "every segment of the last 3 target durations lists its parts"
        assert b"".join(parts) == get(store, segment.uri)
        assert segment.parts[0].independent == "YES"
        assert round(sum(p.duration for p in segment.parts), 3) == segment.duration
        assert nearest_int(segment.duration) <= pl.target_duration
        for entry, data in zip(segment.parts, parts, strict=True):
            # Only at the end of the media can a part run over (or hold audio alone): AAC's
            # tail goes on after the last video frame, which nothing can tell is the last one.
            tail = entry in pl.segments[-1].parts[-2:]
            assert entry.duration <= pl.part_inf.part_target or tail
            # 30 fps, 1 s keyframes: the parts fall on the 200 ms grid despite FLV's jitter.
            assert entry.duration == 0.2 or tail
            video, audio, first_key, packets = decode_fmp4(init + data)
            assert audio > 0 and (packets > 0 or tail)
            assert bool(first_key) is (entry.independent == "YES")
            if first_key:
                assert video > 0  # an independent part decodes alone
            times = tfdts(data)
            # Decode times run on: video by the part's duration exactly, audio by whole
            # frames, and the tracks stay in sync (within a few audio frames).
            if expected is not None and 1 in times:
                assert times[1] == expected[1] + round(part_duration * VIDEO_TIMESCALE)
            if expected is not None:
                assert times[2] > expected[2] and (times[2] - expected[2]) % AAC_FRAME_SAMPLES == 0
            if 1 in times:
                assert abs(times[2] / 44100 - times[1] / VIDEO_TIMESCALE) < 0.1
            expected, part_duration = times, entry.duration
        video, audio, first_key, _ = decode_fmp4(init + get(store, segment.uri))
        assert first_key and audio > 0
        total_video += video
    assert total_video == 180  # 6 s at 30 fps: every frame in exactly one segment


def test_republish_continues_decode_times_with_a_new_init_and_discontinuity(
    av_flv: bytes, small_flv: bytes
) -> None:
    store = MemoryStore()
    live, _ = make(store, window_segments=20)
    publish(live, tags(av_flv), 0.0)
    publish(live, shifted(tags(small_flv), 50_000), 5.0)  # a new publisher, a new resolution
    live.close(6.0)
    pl = ll(live)
    inits = [s.init_section.uri for s in pl.segments]
    first_new = next(i for i, s in enumerate(pl.segments) if s.discontinuity)
    assert len(set(inits)) == 2 and inits[first_new] != inits[first_new - 1]
    before: dict[int, int] = {}
    for entry in pl.segments[first_new - 1].parts:
        before.update(tfdts(part(live, entry.uri)))
    after = tfdts(part(live, pl.segments[first_new].parts[0].uri))
    for track, time in after.items():  # (a session may start with audio before its keyframe)
        assert time > before[track]  # tfdt never goes back, also across sessions
    assert pl.segments[first_new].program_date_time is not None
    video, _, first_key, _ = decode_fmp4(get(store, inits[-1]) + get(store, pl.segments[-1].uri))
    assert first_key and video > 0


def test_republish_with_the_same_settings_keeps_the_init_segment(
    av_flv: bytes, tmp_path: Path
) -> None:
    store = MemoryStore()
    live, _ = make(store, window_segments=20)
    publish(live, tags(av_flv), 0.0)
    publish(live, tags(av_flv), 5.0)  # the encoder reconnects: new timeline, same parameters
    live.close(6.0)
    pl = media_playlist(store)
    assert len({s.init_section.uri for s in pl.segments}) == 1
    assert sum(s.discontinuity for s in pl.segments) == 1
    dump_store(store, tmp_path)
    for name in (CMAF_PLAYLIST_NAME, TS_PLAYLIST_NAME, MULTIVARIANT_NAME):
        assert ffmpeg_read_warnings(tmp_path / PATH / name) == ""
    # Old segments expire; the init the listed segments still use stays.
    live.poll(1000.0)
    assert store.get(f"{PATH}/{pl.segments[-1].init_section.uri}") is not None


def test_multivariant_names_codecs_resolution_and_measured_bandwidth(av_flv: bytes) -> None:
    store = MemoryStore()
    live, _ = make(store)
    publish(live, tags(av_flv), 0.0)
    variant = m3u8.loads(get(store, MULTIVARIANT_NAME).decode())
    assert variant.is_variant
    (entry,) = variant.playlists
    info = entry.stream_info
    assert entry.uri == CMAF_PLAYLIST_NAME
    assert info.codecs == "avc1.4d400d,mp4a.40.2" or info.codecs.startswith("avc1.")
    assert info.resolution == (320, 240) and info.frame_rate == 30
    assert 0 < info.average_bandwidth <= info.bandwidth
    stats = live.stats()
    assert stats["formats"] == ["ts", "cmaf"] and stats["part_target"] == 0.234
    # The two media playlists list the same segments under the same numbers.
    ts, cmaf = media_playlist(store, TS_PLAYLIST_NAME), media_playlist(store)
    assert ts.media_sequence == cmaf.media_sequence and len(ts.segments) == len(cmaf.segments)


def test_ts_only_multivariant_points_at_the_ts_playlist(av_flv: bytes) -> None:
    store = MemoryStore()
    live, _ = make(store, formats=("ts",))
    publish(live, tags(av_flv), 0.0)
    variant = m3u8.loads(get(store, MULTIVARIANT_NAME).decode())
    assert [p.uri for p in variant.playlists] == [TS_PLAYLIST_NAME]
    assert store.get(f"{PATH}/{CMAF_PLAYLIST_NAME}") is None


def test_every_segment_carries_program_date_time(av_flv: bytes) -> None:
    store = MemoryStore()
    live, _ = make(store, window_segments=3)
    live.begin_session(0.0)
    for tag in tags(av_flv) + shifted(tags(av_flv), 6000):  # 12 s, arriving in real time
        live.feed(tag, tag.timestamp / 1000)
    live.end_session(12.0)
    for name in (CMAF_PLAYLIST_NAME, TS_PLAYLIST_NAME):
        pl = media_playlist(store, name)
        assert pl.media_sequence > 0  # the first segments slid out of the window
        dates = [s.program_date_time for s in pl.segments]
        assert all(dates)
        assert (dates[1] - dates[0]).total_seconds() == pl.segments[0].duration


def test_low_latency_playlist_rules(av_flv: bytes) -> None:
    store = MemoryStore()
    live, _ = make(store, window_segments=20)
    live.begin_session(0.0)
    for tag in tags(av_flv) + shifted(tags(av_flv), 6000) + shifted(tags(av_flv), 12000):
        live.feed(tag, 0.0)  # 18 s
    assert live.lowlatency is not None
    text = live.lowlatency.render()
    pl = m3u8.loads(text)
    control = pl.server_control
    assert control.can_block_reload == "YES"
    assert control.part_hold_back >= 2 * pl.part_inf.part_target - 1e-9  # rfc8216bis 4.4.3.8
    assert control.part_hold_back == 0.6  # and three nominal parts
    assert control.hold_back >= 3 * pl.target_duration
    assert control.can_skip_until >= 6 * pl.target_duration
    assert pl.version >= 6
    # Parts only for the last 3 target durations; the open segment's parts follow the last one.
    # (m3u8 reads the open segment's parts as a segment without URI and duration.)
    listed = sum(s.duration for s in pl.segments if s.parts and s.duration)
    assert listed <= 3 * pl.target_duration + pl.target_duration
    assert not pl.segments[0].parts
    hint = pl.preload_hint.uri
    position = live.lowlatency.position if live.lowlatency else None
    assert position is not None and hint.endswith(f"-{position.msn}.{position.parts}.m4s")
    # A delta update skips what is older than CAN-SKIP-UNTIL.
    assert live.lowlatency is not None
    delta = m3u8.loads(live.lowlatency.render(skip=True))
    assert delta.skip.skipped_segments == len(pl.segments) - len(delta.segments) > 0
    assert delta.version == 9 and delta.segments[0].init_section is not None
    assert sum(s.duration or 0 for s in delta.segments) >= control.can_skip_until - 2


def test_parts_of_a_republished_segment_follow_its_discontinuity(av_flv: bytes) -> None:
    store = MemoryStore()
    live, _ = make(store, window_segments=20)
    publish(live, tags(av_flv), 0.0)
    live.begin_session(5.0)  # the encoder reconnects; its first segment is still being made
    for tag in tags(av_flv)[:60]:
        live.feed(tag, 5.0)
    assert live.lowlatency is not None
    lines = live.lowlatency.render().splitlines()
    last_segment = max(i for i, line in enumerate(lines) if line.startswith("#EXTINF"))
    tail = lines[last_segment + 2 :]
    assert tail[0] == "#EXT-X-DISCONTINUITY" and tail[1].startswith("#EXT-X-PART:")
    assert "INDEPENDENT=YES" in tail[1]
    assert any(line.startswith("#EXT-X-DISCONTINUITY-SEQUENCE") for line in lines)


def test_audio_only_and_video_only_streams(media_dir: Path, tmp_path: Path) -> None:
    audio_only = make_flv(
        media_dir / "audio_only.flv",
        *("-f", "lavfi", "-i", "sine=sample_rate=48000", "-c:a", "aac", "-t", "5"),
    )
    video_only = make_flv(
        media_dir / "video_only.flv",
        *("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25"),
        *("-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-t", "5"),
    )
    for name, flv in (("audio", audio_only), ("video", video_only)):
        store = MemoryStore()
        live, _ = make(store, window_segments=20)
        publish(live, tags(flv), 0.0)
        live.close(10.0)  # EXT-X-ENDLIST: FFmpeg reads it as a whole, not as a live stream
        pl = ll(live)
        assert len(pl.segments) >= 2, name
        for segment in pl.segments:
            assert segment.parts[0].independent == "YES"
            assert all(p.duration <= pl.part_inf.part_target for p in segment.parts[:-1])
        out = tmp_path / name
        dump_store(store, out)
        assert ffmpeg_read_warnings(out / PATH / CMAF_PLAYLIST_NAME) == "", name


def test_restart_resumes_the_cmaf_playlist_and_deletes_what_the_dead_run_left(
    av_flv: bytes, tmp_path: Path
) -> None:
    store = DiskStore(tmp_path / "hls")
    dead, _ = make(store)
    dead.begin_session(0.0)
    for tag in tags(av_flv)[:-40]:  # killed mid-segment: open parts and a hint are listed
        dead.feed(tag, 0.0)
    left = media_playlist(store)
    old = [s.uri for s in left.segments if s.uri] + [p.uri for s in left.segments for p in s.parts]
    assert end_stale_playlists(store) == [f"{PATH}/{CMAF_PLAYLIST_NAME}", f"{PATH}/ts.m3u8"]
    again, _ = make(store)  # the next run
    publish(again, tags(av_flv), 100.0)
    pl = media_playlist(store)
    ts = media_playlist(store, TS_PLAYLIST_NAME)
    first = next(s for s in pl.segments if s.uri)
    assert first.discontinuity and pl.media_sequence == ts.media_sequence
    assert pl.media_sequence == left.media_sequence + len([s for s in left.segments if s.uri])
    again.poll(200.0)  # past the grace: the dead run's segments and parts are gone
    remaining = {name.rsplit("/", 1)[1] for name in store.names(PATH)}
    assert not remaining & set(old)
    assert first.init_section.uri in remaining  # the same settings: the init stays in use


def test_program_date_time_is_when_the_media_arrived_despite_a_late_start(
    av_flv: bytes,
) -> None:
    # The encoder's first frames reach the gateway 0.4 s late, the rest on time (wall clock
    # 1.7e9 at monotonic 0): PDT follows the on-time arrivals, not the late first sample.
    store = MemoryStore()
    live, _ = make(store, window_segments=10)
    live.begin_session(0.0)
    for index, tag in enumerate(tags(av_flv)):
        live.feed(tag, tag.timestamp / 1000 + (0.4 if index < 10 else 0.0))
    live.end_session(6.0)
    pl = media_playlist(store)
    first = pl.segments[0].program_date_time.timestamp()
    assert abs(first - 1.7e9) < 0.05  # its media started at monotonic 0, wall clock 1.7e9


def test_multivariant_is_rewritten_only_when_it_changes_materially(av_flv: bytes) -> None:
    class Counting(MemoryStore):
        def __init__(self) -> None:
            super().__init__()
            self.puts: list[str] = []

        def put(self, name: str, data: Data, *, fresh: bool = False) -> None:
            self.puts.append(name)
            super().put(name, data, fresh=fresh)

    store = Counting()
    live, _ = make(store, window_segments=20)
    publish(live, tags(av_flv) + shifted(tags(av_flv), 6000), 0.0)  # a steady 12 s
    segments = len(media_playlist(store).segments)
    writes = store.puts.count(f"{PATH}/{MULTIVARIANT_NAME}")
    assert segments >= 6 and 1 <= writes <= 2  # not once per segment
