from __future__ import annotations

import itertools
import math

from hypothesis import example, given, settings
from hypothesis import strategies as st

from segmenter.cutter import (
    AUDIO,
    FORCED_CUT_HEADROOM_MS,
    VIDEO,
    Cutter,
    Decision,
    Interleaver,
    Sample,
    Timeline,
)


def video(dts: int, key: bool = False, cts: int = 0) -> Sample:
    return Sample(VIDEO, dts, dts + cts, key, b"v")


def audio(t: int) -> Sample:
    return Sample(AUDIO, t, t, True, b"a")


def av_stream(
    seconds: float, fps: float, key_every: float, with_audio: bool = True
) -> list[Sample]:
    """Synthetic A/V in DTS order: video with 2 B-frames per P (PTS reordered), 1024-sample AAC."""
    samples = []
    frame = 1000 / fps
    n = int(seconds * fps)
    per_gop = max(1, round(key_every * fps))
    for i in range(n):
        dts = round(i * frame)
        # Decode order I P B B P B B ... shown as I B B P B B P (one frame of B-frame delay):
        # I and a GOP's last P show 1 frame after decoding, other P 3 frames, B at once.
        pos = i % per_gop
        if pos % 3 == 1 and pos + 2 < per_gop:
            cts = round((i + 3) * frame) - dts
        elif pos % 3 == 1 or pos == 0:
            cts = round((i + 1) * frame) - dts
        else:
            cts = 0
        samples.append(video(dts, key=pos == 0, cts=cts))
    if with_audio:
        samples += [audio(round(k * 1024_000 / 44100)) for k in range(int(seconds * 44100 / 1024))]
    return sorted(samples, key=lambda s: s.dts)


def run(cutter: Cutter, samples: list[Sample]) -> tuple[list[tuple[int, int]], list[list[Sample]]]:
    """Feed samples; return the closed (start, end) ranges and the kept samples per segment."""
    closed: list[tuple[int, int]] = []
    segments: list[list[Sample]] = [[]]
    for sample in samples:
        decision = cutter.decide(sample)
        if decision.closed is not None:
            closed.append(decision.closed)
            segments.append([])
        if decision.keep:
            segments[-1].append(sample)
    last = cutter.finish()
    if last is not None:
        closed.append(last)
    return closed, [s for s in segments if s]


def test_cuts_at_keyframes_once_target_reached() -> None:
    closed, segments = run(Cutter(2000, 10, has_video=True), av_stream(7, 30, 1))
    assert [end - start for start, end in closed[:-1]] == [2000, 2000, 2000]
    for segment in segments:
        first_video = next(s for s in segment if s.kind == VIDEO)
        assert first_video.keyframe
    assert all(a[1] == b[0] for a, b in itertools.pairwise(closed))  # contiguous


def test_first_segment_keeps_leading_audio_and_its_video_waits_for_idr() -> None:
    """FFmpeg's first AAC frame comes ~23 ms before its first video frame: it was dropped, so
    every clean publish showed dropped 1. It now opens the segment; video still starts at an IDR."""
    cutter = Cutter(2000, 10, has_video=True)
    assert cutter.decide(audio(0)) == Decision(keep=True)
    assert cutter.start == 0
    assert cutter.decide(video(10)) == Decision(keep=False)
    assert cutter.decide(audio(23)) == Decision(keep=True)
    assert cutter.decide(video(43, key=True)) == Decision(keep=True)
    # The first cut still waits for a keyframe past the target, measured from the audio.
    assert not cutter.decide(video(2000)).cut
    assert cutter.decide(video(2043, key=True)).closed == (0, 2043)


def test_keyframe_interval_longer_than_target() -> None:
    closed, _ = run(Cutter(2000, 10, has_video=True), av_stream(16, 30, 3))
    assert [end - start for start, end in closed[:-1]] == [3000] * 5  # 3 s GOPs, one per segment


def test_audio_only_cuts_on_time() -> None:
    frames = [audio(round(k * 1024_000 / 48000)) for k in range(500)]
    closed, segments = run(Cutter(2000, 10, has_video=False), frames)
    assert len(closed) == 6
    for start, end in closed[:-1]:
        assert 2000 <= end - start < 2000 + 22
    assert sum(len(s) for s in segments) == 500


def test_video_only() -> None:
    closed, segments = run(Cutter(2000, 10, has_video=True), av_stream(6, 25, 2, with_audio=False))
    assert [end - start for start, end in closed] == [2000, 2000, 2000]
    assert all(seg[0].keyframe for seg in segments)


def test_long_gop_is_force_cut_and_video_waits_for_next_keyframe() -> None:
    cutter = Cutter(2000, 4, has_video=True)
    assert cutter.limit_ms == 4500 - FORCED_CUT_HEADROOM_MS
    samples = av_stream(20, 30, 10)
    decisions = [(s, cutter.decide(s)) for s in samples]
    forced = [(s, d) for s, d in decisions if d.forced]
    assert len(forced) == 4  # at ~4.3 s and ~8.6 s into each 10 s GOP
    for _, decision in forced:
        assert decision.closed is not None
        start, end = decision.closed
        assert math.floor((end - start) / 1000 + 0.5) <= 4  # EXTINF rounds to <= TARGETDURATION
    # After a forced cut, video is dropped until the next keyframe; audio is kept.
    first_forced = samples.index(forced[0][0])
    after = decisions[first_forced + 1 :]
    next_key = next(i for i, (s, _) in enumerate(after) if s.kind == VIDEO and s.keyframe)
    assert all(not d.keep for s, d in after[:next_key] if s.kind == VIDEO)
    assert all(d.keep for s, d in after[:next_key] if s.kind == AUDIO)
    assert after[next_key][1].keep


@given(
    fps=st.sampled_from([5, 15, 24, 25, 30, 50, 60]),
    key_every=st.floats(0.2, 14),
    target=st.sampled_from([1000, 2000, 4000]),
    ceiling=st.integers(4, 12),
    with_audio=st.booleans(),
)
# A keyframe decoded just below the limit but shown past it (5 fps, one B-frame delay).
@example(fps=5, key_every=12.625, target=1000, ceiling=12, with_audio=False)
@settings(max_examples=150, deadline=None)
def test_cut_invariants(
    fps: int, key_every: float, target: int, ceiling: int, with_audio: bool
) -> None:
    cutter = Cutter(target, ceiling, has_video=True)
    closed, segments = run(cutter, av_stream(30, fps, key_every, with_audio))
    assert closed, "something was segmented"
    for (start, end), segment in zip(closed, segments, strict=True):
        assert end > start
        assert math.floor((end - start) / 1000 + 0.5) <= ceiling
        videos = [s for s in segment if s.kind == VIDEO]
        assert not videos or videos[0].keyframe  # every segment's video starts with an IDR
        assert all(start <= s.pts for s in videos)
    # Contiguous, except that a stretch with no media at all (video dropped after a forced cut in
    # a video-only stream) is left out.
    for a, b in itertools.pairwise(closed):
        assert a[1] == b[0] or (not with_audio and a[1] < b[0])


# --- Timeline ------------------------------------------------------------------------------------


def test_timeline_rebases_each_session() -> None:
    tl = Timeline(start=1000)
    assert tl.map(VIDEO, 123_456, 0) == (1000, 1000)
    assert tl.map(AUDIO, 123_470) == (1014, 1014)
    assert tl.map(VIDEO, 123_489, 67) == (1033, 1100)
    assert tl.end >= 1100


def test_timeline_negative_composition_offsets_keep_pts_above_dts() -> None:
    tl = Timeline(start=0)
    assert tl.map(VIDEO, 0, -33) == (0, 0)  # shifted by 33 ms
    assert tl.cts_shift == 33
    dts, pts = tl.map(VIDEO, 33, 0)  # type: ignore[misc]
    assert pts >= dts and pts == 66
    adts, apts = tl.map(AUDIO, 40)  # type: ignore[misc]
    assert adts == apts == 73  # audio follows the same shift: A/V stay in sync


def test_timeline_refuses_late_samples() -> None:
    tl = Timeline(start=1000)
    assert tl.map(VIDEO, 100) is not None
    assert tl.map(VIDEO, 100) is None
    assert tl.map(VIDEO, 90) is None
    assert tl.map(AUDIO, 95) is not None  # per-track monotonicity only
    assert tl.late == 2


def test_timeline_rebases_over_jumps_and_32_bit_wrap() -> None:
    tl = Timeline(start=0)
    base = 2**32 - 100
    for t in range(0, 90, 30):
        tl.map(VIDEO, base + t)
        tl.map(AUDIO, base + t + 5)
    # A feeder that did not unwrap: the 32-bit clock restarts near 0.
    assert tl.map(VIDEO, 20) == (90, 90)  # continues with the last step
    assert tl.map(AUDIO, 25) == (95, 95)  # the other track follows the same rebase
    assert tl.jumps == 1
    assert tl.map(VIDEO, 3_600_000) == (120, 120)  # a one-hour forward jump
    assert tl.jumps == 2


# --- Interleaver ---------------------------------------------------------------------------------


def test_interleaver_orders_by_dts() -> None:
    il = Interleaver({VIDEO, AUDIO}, max_delay_ms=500)
    out: list[Sample] = []
    for s in [video(0, True), video(33), video(66), audio(10), audio(33), video(100), audio(57)]:
        out += il.push(s)
    out += il.flush()
    assert [s.dts for s in out] == [0, 10, 33, 33, 57, 66, 100]
    assert len(il) == 0


def test_interleaver_releases_at_once_when_the_other_track_is_predicted_later() -> None:
    """A publisher interleaving in DTS order: once each track showed its cadence, every sample -
    the keyframe that closes a segment included - comes out when it arrives."""
    il = Interleaver({VIDEO, AUDIO}, max_delay_ms=500)
    for s in [video(0, True), audio(10), video(33), audio(33), audio(56), video(66), audio(79)]:
        il.push(s)
    assert len(il) == 0
    assert il.push(video(100, True)) == [video(100, True)]  # audio next at >= 79 + 23
    assert il.push(audio(102)) == [audio(102)]  # video next at >= 100 + 33


def test_interleaver_waits_when_a_track_lags_behind_its_prediction() -> None:
    il = Interleaver({VIDEO, AUDIO}, max_delay_ms=500)
    out = [r for s in [audio(0), audio(23), video(100, True), video(133)] for r in il.push(s)]
    assert out == [audio(0), audio(23)]  # audio could still bring 24..100: the keyframe waits
    assert il.push(audio(46)) == [audio(46)]
    assert il.push(audio(69)) == [audio(69)]
    assert il.push(audio(92)) == [audio(92), video(100, True)]  # next audio >= 115 > 100
    # A gap is not a cadence: after 0 -> 400 the next audio is not assumed to be >= 800.
    il2 = Interleaver({VIDEO, AUDIO}, max_delay_ms=500)
    assert il2.push(audio(0)) == [] and il2.push(audio(400)) == []
    assert [r for s in [video(0, True), video(33), video(66)] for r in il2.push(s)] == [
        audio(0),
        video(0, True),
        video(33),
        video(66),
    ]
    assert il2.push(video(450)) == [audio(400)]


def test_interleaver_releases_a_stalled_track_after_the_delay() -> None:
    il = Interleaver({VIDEO, AUDIO}, max_delay_ms=500, max_samples=1000)
    released = [s for t in range(0, 700, 33) for s in il.push(video(t))]
    assert released and max(s.dts for s in released) <= 693 - 500
    il2 = Interleaver({VIDEO, AUDIO}, max_delay_ms=10_000, max_samples=4)
    assert [s for t in range(6) for s in il2.push(video(t))] == [video(0), video(1)]
