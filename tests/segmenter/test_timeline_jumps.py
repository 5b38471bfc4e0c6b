"""Publisher clocks that jump: back by seconds (an encoder restarting its clock, concatenated
inputs), forward, or one track pausing. Nothing may be dropped, tracks stay in sync, and the
output timeline stays continuous; the operator is told in a warning."""

from __future__ import annotations

import logging
from itertools import pairwise
from pathlib import Path

import pytest

from segmenter.cutter import (
    AUDIO,
    MAX_TIMESTAMP_BACKSTEP_MS,
    STRAGGLER_MS,
    VIDEO,
    Kind,
    Timeline,
)
from segmenter.flv import FlvTag, TagType
from segmenter.live import WARN_BURST, WARN_WINDOW, LiveStream, SegmenterConfig
from segmenter.store import MemoryStore
from tests.segmenter.media import tags
from tests.segmenter.test_live import check_media, make, publish


def av(t0: int, t1: int) -> list[tuple[Kind, int]]:
    """Interleaved video (30 fps) and audio (~43 fps, AAC at 44.1 kHz) timestamps in [t0, t1)."""
    video: list[tuple[Kind, int]] = [(VIDEO, t) for t in range(t0, t1, 33)]
    audio: list[tuple[Kind, int]] = [(AUDIO, t + 5) for t in range(t0, t1, 23)]
    return sorted(video + audio, key=lambda item: item[1])


def steps(mapped: list[tuple[Kind, int]], kind: Kind) -> list[int]:
    dts = [d for k, d in mapped if k == kind]
    return [b - a for a, b in pairwise(dts)]


def test_clock_reset_back_by_seconds_is_rebased_with_a_straggler_of_the_old_clock() -> None:
    jumps: list[tuple[Kind, int]] = []
    tl = Timeline(start=0, on_jump=lambda kind, ms: jumps.append((kind, ms)))
    before = av(10_000, 13_000)
    after = av(8_000, 11_000)  # the clock went back 5 s
    # Video is first on the new clock; one audio frame of the old clock arrives after it.
    straggler = before.pop()
    assert straggler[0] == AUDIO
    order = [*before, after[0], straggler, *after[1:]]
    mapped: list[tuple[Kind, int]] = []
    for kind, t in order:
        out = tl.map(kind, t)
        assert out is not None, (kind, t)
        mapped.append((kind, out[0]))
    assert tl.late == 0 and tl.jumps == 1
    assert len(jumps) == 1 and jumps[0][0] == VIDEO and -5_100 < jumps[0][1] < -4_900
    # No gap and no step back in either track: the cadence only.
    assert max(steps(mapped, VIDEO)) <= 66 and min(steps(mapped, VIDEO)) > 0
    assert max(steps(mapped, AUDIO)) <= 46 and min(steps(mapped, AUDIO)) > 0
    # In sync: the last video and audio frames are as far apart as in the input.
    last_v = max(d for k, d in mapped if k == VIDEO)
    last_a = max(d for k, d in mapped if k == AUDIO)
    in_v = max(t for k, t in after if k == VIDEO)
    in_a = max(t for k, t in after if k == AUDIO)
    assert abs((last_a - last_v) - (in_a - in_v)) <= 33


def test_small_steps_back_are_late_not_jumps() -> None:
    tl = Timeline(start=0)
    for kind, t in av(0, 2_000):
        tl.map(kind, t)
    assert tl.map(VIDEO, 2_000 - MAX_TIMESTAMP_BACKSTEP_MS) is None
    assert tl.late == 1 and tl.jumps == 0


def test_one_track_resuming_after_a_long_gap_keeps_sync() -> None:
    """Audio pauses 15 s (longer than a forward jump) while video goes on: not a clock jump."""
    tl = Timeline(start=0)
    for kind, t in av(0, 2_000):
        tl.map(kind, t)
    for t in range(2_000, 17_000, 33):
        assert tl.map(VIDEO, t) == (t, t)
    assert tl.map(AUDIO, 17_005) == (17_005, 17_005)
    assert tl.map(VIDEO, 17_006) == (17_006, 17_006)
    assert tl.jumps == 0 and tl.late == 0


def test_previous_offset_serves_stragglers_only_briefly() -> None:
    tl = Timeline(start=0)
    for kind, t in av(10_000, 12_000):
        tl.map(kind, t)
    rebased = tl.map(VIDEO, 4_000)  # back 6 s: rebased
    assert rebased is not None and tl.jumps == 1
    offset = rebased[0] - 4_000
    assert tl.map(AUDIO, 4_005) == (4_005 + offset,) * 2  # audio follows on the new clock
    for t in range(4_033, 4_033 + STRAGGLER_MS + 500, 33):
        tl.map(VIDEO, t)
    # Long after the rebase, an old-clock timestamp is no straggler: the current offset maps it
    # (here a forward gap within the jump limit).
    assert tl.map(AUDIO, 12_100) == (12_100 + offset,) * 2


def test_live_stream_over_a_clock_reset_keeps_all_media(
    av_flv: bytes, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """6 s of real media whose clock goes back 2.5 s at 3 s: 6 s of segments, nothing late."""
    items = [
        FlvTag(t.type, t.timestamp - 2_500 if t.timestamp >= 3_000 else t.timestamp, t.body)
        for t in tags(av_flv)
    ]
    store = MemoryStore()
    live, _ = make(store, max_segment_duration=4)
    with caplog.at_level(logging.WARNING):
        publish(live, items, 0.0)
        live.close(1.0)
    pl = check_media(store, tmp_path)
    assert sum(s.duration for s in pl.segments) == pytest.approx(6.0, abs=0.1)
    stats = live.stats()
    assert stats["late"] == 0 and stats["jumps"] >= 1
    assert any("publisher clock jumped -2.5 s" in w for w in stats["warnings"])
    assert "publisher clock jumped -2.5 s" in caplog.text


def test_warnings_are_rate_limited_per_stream(caplog: pytest.LogCaptureFixture) -> None:
    """A publisher sending a broken frame after another: each warning text differs (it names the
    sizes), but the log gets WARN_BURST lines per window and one summing up the rest."""
    live = LiveStream("live/bad", MemoryStore(), SegmenterConfig())
    with caplog.at_level(logging.WARNING):
        live.begin_session(0.0)
        for i in range(500):
            # A video tag with an unknown AVCPacketType (i varies the text).
            live.feed(FlvTag(TagType.VIDEO, i, bytes([0x17, 3 + i % 200, 0, 0, 0])), 1.0 + i * 0.01)
        lines = [r for r in caplog.records if r.name.startswith("segmenter")]
        assert len(lines) == WARN_BURST
        live.poll(1.0 + WARN_WINDOW)
    summary = caplog.records[-1].getMessage()
    assert "more warnings not logged" in summary and "/api/streams/live/bad" in summary
    assert live.stats()["malformed"] == 500
    assert len(live.stats()["warnings"]) <= 20
