from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segmenter.codecs import AacConfig, AvcConfig, MediaError, parse_asc, parse_avcc
from segmenter.cutter import AUDIO, VIDEO, Cutter, Interleaver, Sample, Timeline
from segmenter.flv import AudioFrame, SequenceHeader, TagType, VideoFrame, parse_tag
from segmenter.mux import TS_PACKET, ContinuityRewriter, TsMuxer, _Sink
from tests.segmenter.media import decode, flv_file, tags


def parse_samples(data: bytes) -> tuple[AvcConfig | None, AacConfig | None, list[Sample]]:
    """FLV -> the last sequence headers and every frame as a Sample on the TS timeline."""
    video: AvcConfig | None = None
    audio: AacConfig | None = None
    timeline = Timeline(start=1000)
    samples = []
    for tag in tags(data):
        packet = parse_tag(tag)
        if isinstance(packet, SequenceHeader):
            if packet.media == VIDEO:
                video = parse_avcc(packet.config)
            else:
                audio = parse_asc(packet.config)
        elif isinstance(packet, VideoFrame):
            mapped = timeline.map(VIDEO, tag.timestamp, packet.composition_time)
            assert mapped is not None
            samples.append(Sample(VIDEO, *mapped, packet.keyframe, packet.data))
        elif isinstance(packet, AudioFrame):
            mapped = timeline.map(AUDIO, tag.timestamp)
            assert mapped is not None
            samples.append(Sample(AUDIO, *mapped, True, packet.data))
    return video, audio, samples


def segment(data: bytes, target_ms: int = 2000) -> list[tuple[tuple[int, int], bytes]]:
    """FLV -> ((start, end) ms, TS bytes) per segment, through the real pipeline pieces."""
    video, audio, samples = parse_samples(data)
    cutter = Cutter(target_ms, 10, has_video=video is not None)
    interleaver = Interleaver({k for k, c in ((VIDEO, video), (AUDIO, audio)) if c})
    muxer = TsMuxer()
    muxer.start(video, audio)
    out = []

    def cut_and_write(ready: Sample) -> None:
        decision = cutter.decide(ready)
        if decision.closed:
            out.append((decision.closed, b"".join(muxer.cut())))
        if decision.keep:
            muxer.write(ready)

    for sample in samples:
        for ready in interleaver.push(sample):
            cut_and_write(ready)
    for ready in interleaver.flush():
        cut_and_write(ready)
    closed = cutter.finish()
    assert closed is not None
    out.append((closed, b"".join(muxer.cut())))
    return out


def packets(ts: bytes) -> list[bytes]:
    assert len(ts) % TS_PACKET == 0
    return [ts[i : i + TS_PACKET] for i in range(0, len(ts), TS_PACKET)]


def pid(packet: bytes) -> int:
    return ((packet[1] & 0x1F) << 8) | packet[2]


@pytest.fixture(scope="module")
def av_segments(av_flv: bytes) -> list[tuple[tuple[int, int], bytes]]:
    return segment(av_flv)


def test_segments_start_with_pat_pmt_and_an_idr(
    av_segments: list[tuple[tuple[int, int], bytes]],
) -> None:
    assert len(av_segments) == 3
    for _, ts in av_segments:
        first = packets(ts)
        assert pid(first[0]) == 0  # PAT first (ISO/IEC 13818-1 §2.4.4.3)
        pmt_pid = ((first[0][15] & 0x1F) << 8) | first[0][16]  # first program's PMT PID
        assert pmt_pid in {pid(p) for p in first[:3]}
        decoded = decode(ts)
        assert decoded.first_video_key is True


def test_each_segment_decodes_alone(av_segments: list[tuple[tuple[int, int], bytes]]) -> None:
    total_video = total_audio = 0
    for (start, end), ts in av_segments:
        decoded = decode(ts)
        assert decoded.video_frames == round((end - start) / 1000 * 30)
        assert decoded.audio_frames >= (end - start) / 1000 * 44100 / 1024 - 2
        total_video += decoded.video_frames
        total_audio += decoded.audio_frames
    assert total_video == 180


def test_timestamps_continuous_across_segments(
    av_segments: list[tuple[tuple[int, int], bytes]],
) -> None:
    frame = 1 / 30
    decoded = [decode(ts) for _, ts in av_segments]
    for (closed, _), seg in zip(av_segments, decoded, strict=True):
        assert min(seg.video_pts) == pytest.approx(closed[0] / 1000, abs=0.001)
    for a, b in itertools.pairwise(decoded):
        gap = min(b.video_pts) - max(a.video_pts)
        assert gap == pytest.approx(frame, abs=0.002)  # within one frame, no overlap
        agap = min(b.audio_pts) - max(a.audio_pts)
        assert 0 < agap < 1024 / 44100 + 0.002


def test_continuity_counters_continue_across_segments(
    av_segments: list[tuple[tuple[int, int], bytes]],
) -> None:
    last: dict[int, int] = {}
    for _, ts in av_segments:
        for p in packets(ts):
            cc, has_payload = p[3] & 0x0F, bool(p[3] & 0x10)
            if pid(p) in last:
                assert cc == (last[pid(p)] + has_payload) % 16
            last[pid(p)] = cc
    assert len(last) >= 4  # PAT, PMT, video, audio


def test_continuity_rewriter_skips_packets_without_payload() -> None:
    def ts_packet(p: int, flags: int) -> bytes:
        return bytes((0x47, p >> 8, p & 0xFF, flags)) + b"\xff" * 184

    rewriter = ContinuityRewriter()
    first = rewriter.rewrite(ts_packet(256, 0x10) + ts_packet(256, 0x30))
    second = rewriter.rewrite(ts_packet(256, 0x20) + ts_packet(256, 0x10) + ts_packet(0, 0x10))
    assert [b[3] & 0x0F for b in packets(first + second)] == [0, 1, 1, 2, 0]
    with pytest.raises(MediaError):
        rewriter.rewrite(b"\x47" * 10)
    with pytest.raises(MediaError):
        rewriter.rewrite(b"\x00" * TS_PACKET)


def renumber_one_by_one(counters: dict[int, int], drop: frozenset[int], ts: bytes) -> bytes:
    """The rewrite spelled out per packet (ISO/IEC 13818-1 §2.4.3.3), as the reference."""
    out = []
    for p in packets(ts):
        if pid(p) in drop:
            continue
        cc = counters.get(pid(p), 15)
        if p[3] & 0x10:
            cc = (cc + 1) % 16
        counters[pid(p)] = cc
        out.append(p[:3] + bytes([(p[3] & 0xF0) | cc]) + p[4:])
    return b"".join(out)


# Header byte 1 keeps its error/start/priority bits; PIDs as FFmpeg writes them and the extremes.
_headers = st.tuples(
    st.sampled_from([0x0000, 0x0011, 0x0100, 0x0101, 0x1000, 0x1FFF]),
    st.integers(0, 7),
    st.integers(0, 255),
)


def ts_stream(headers: list[tuple[int, int, int]]) -> bytes:
    return b"".join(
        bytes((0x47, (bits << 5) | (p >> 8), p & 0xFF, flags)) + bytes([i % 251]) * 184
        for i, (p, bits, flags) in enumerate(headers)
    )


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.lists(_headers, max_size=60), max_size=6),
    st.dictionaries(st.sampled_from([0x0000, 0x0100, 0x1FFF]), st.integers(0, 15)),
)
def test_continuity_rewriter_matches_per_packet_renumbering(
    chunks: list[list[tuple[int, int, int]]], start: dict[int, int]
) -> None:
    drop = frozenset({0x11})
    rewriter = ContinuityRewriter(drop)
    rewriter.counters = dict(start)
    expected_counters = dict(start)
    for chunk in chunks:
        ts = ts_stream(chunk)
        assert rewriter.rewrite(ts) == renumber_one_by_one(expected_counters, drop, ts)
    assert rewriter.counters == expected_counters


@settings(max_examples=100, deadline=None)
@given(
    st.lists(_headers, min_size=1, max_size=40),
    st.lists(st.integers(1, 2_000)),
    st.integers(1, 3_000),
)
def test_sink_renumbers_writes_split_anywhere(
    headers: list[tuple[int, int, int]], sizes: list[int], batch: int
) -> None:
    """FFmpeg's writes end anywhere in a packet; batches of them must renumber like the whole."""
    ts = ts_stream(headers)
    sink = _Sink(ContinuityRewriter(frozenset({0x11})), batch)
    at = 0
    for size in [*sizes, len(ts)]:
        assert sink.write(ts[at : at + size]) == len(ts[at : at + size])
        at += size
    assert b"".join(sink.take()) == renumber_one_by_one({}, frozenset({0x11}), ts)
    torn = _Sink(ContinuityRewriter())
    torn.write(ts[:-1])
    with pytest.raises(MediaError):
        torn.take()


@pytest.mark.parametrize("drop", [TagType.VIDEO, TagType.AUDIO])
def test_audio_only_and_video_only(av_flv: bytes, drop: TagType) -> None:
    result = segment(flv_file(tags(av_flv, drop=[drop])))
    assert len(result) == 3
    for _, ts in result:
        decoded = decode(ts)
        assert (decoded.video_frames > 0) == (drop == TagType.AUDIO)
        assert (decoded.audio_frames > 0) == (drop == TagType.VIDEO)


def test_write_without_configuration_is_a_media_error() -> None:
    muxer = TsMuxer()
    muxer.start(None, None)
    with pytest.raises(MediaError):
        muxer.write(Sample(VIDEO, 0, 0, True, b"\0\0\0\1\x65"))
    with pytest.raises(MediaError):
        muxer.write(Sample(AUDIO, 0, 0, True, b"\x21"))
    assert muxer.cut() == ()


def test_a_dropped_segment_leaves_continuity_counters_as_published(av_flv: bytes) -> None:
    """Counters are renumbered while muxing; a segment abandoned by start() must not count."""
    video, audio, samples = parse_samples(av_flv)
    muxer = TsMuxer()
    muxer.start(video, audio)
    for s in samples[:100]:
        muxer.write(s)
    first = b"".join(muxer.cut())
    for s in samples[100:200]:
        muxer.write(s)
    muxer.start(video, audio)  # drops the unfinished segment
    for s in samples[200:300]:
        muxer.write(s)
    second = b"".join(muxer.cut())
    last: dict[int, int] = {}
    for p in packets(first + second):
        cc, has_payload = p[3] & 0x0F, bool(p[3] & 0x10)
        if pid(p) in last:
            assert cc == (last[pid(p)] + has_payload) % 16
        last[pid(p)] = cc
    assert len(last) >= 4
