"""A publisher whose codec parameters change mid-session: once is legitimate (a segment cut and a
discontinuity); flapping between two configurations before every frame (here lying about half of
the frames, which then cannot decode) must not raise, still yields well-formed TS segments, and is
named in one warning per distinct change."""

from __future__ import annotations

import logging

import pytest

from segmenter.flv import FlvTag, TagType
from segmenter.live import WARN_BURST
from segmenter.store import MemoryStore
from tests.segmenter.media import tags
from tests.segmenter.test_live import PATH, make, playlist


def sequence_header(items: list[FlvTag]) -> FlvTag:
    return next(t for t in items if t.type == TagType.VIDEO and t.body[1] == 0)


def test_config_flapping_before_every_frame(
    av_flv: bytes, small_flv: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    items = tags(av_flv)
    headers = [sequence_header(items).body, sequence_header(tags(small_flv)).body]
    store = MemoryStore()
    live, _ = make(store, max_segment_duration=4)
    with caplog.at_level(logging.WARNING):
        live.begin_session(0.0)
        frames = 0
        for tag in items:
            if tag.type == TagType.VIDEO and tag.body[1] == 1:
                frames += 1
                live.feed(FlvTag(TagType.VIDEO, tag.timestamp, headers[frames % 2]), 0.0)
            live.feed(tag, 0.0)
        live.close(1.0)
    warnings = live.stats()["warnings"]
    assert any(
        "video codec parameters changed mid-session (320x240 -> 160x120)" in w for w in warnings
    )
    assert any("(160x120 -> 320x240)" in w for w in warnings)
    assert len([r for r in caplog.records if r.name.startswith("segmenter")]) <= WARN_BURST
    pl = playlist(store)
    assert pl.segments and all(s.discontinuity for s in pl.segments[1:])
    for seg in pl.segments:
        data = store.get(f"{PATH}/{seg.uri}")
        assert (
            data is not None and len(data) % 188 == 0 and data[::188] == b"G" * (len(data) // 188)
        )
