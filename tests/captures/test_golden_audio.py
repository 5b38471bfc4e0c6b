"""Golden captures of Enhanced RTMP audio: FFmpeg 9 publishing H.264 with FLAC (`fLaC`) and with
AC-3 (`ac-3`), 1.5 s of 160x120@15 and a 44.1 kHz sine, recorded by `tests/captures/record.py`.
However the bytes are split (one at a time, or at random), the sans-IO connection gives the same
messages, and their audio bodies are, in order, what FFmpeg 9 sends for these FourCCs."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from gateway.rtmp import events as ev
from segmenter.flv import (
    AudioFrame,
    ChannelLayout,
    FlvTag,
    Ignored,
    SequenceHeader,
    TagType,
    parse_audio,
)
from segmenter.live import LiveStream, SegmenterConfig
from segmenter.store import MemoryStore
from tests.captures.test_golden import replay, splits

HERE = Path(__file__).parent
# capture: (FourCC, packet types of the first audio messages, CODECS entry)
CAPTURES = {
    "ffmpeg9-publish-flac.rtmp": ("fLaC", [SequenceHeader, ChannelLayout, AudioFrame], "fLaC"),
    "ffmpeg9-publish-ac3.rtmp": ("ac-3", [Ignored, ChannelLayout, AudioFrame], "ac-3"),
}


def _media(events: list[object]) -> list[ev.Media]:
    return [e for e in events if isinstance(e, ev.Media)]


@pytest.mark.parametrize("name", list(CAPTURES))
def test_audio_capture_replay_is_split_invariant(name: str) -> None:
    data = (HERE / name).read_bytes()
    whole = replay([data])
    assert type(whole[-1]).__name__ == "ConnectionClosed"
    assert replay([data[i : i + 1] for i in range(len(data))]) == whole
    rng = random.Random(name)
    for _ in range(3):
        assert replay(splits(data, rng)) == whole


@pytest.mark.parametrize("name", list(CAPTURES))
def test_audio_capture_messages_and_segments(name: str) -> None:
    fourcc, first, codec = CAPTURES[name]
    media = _media(replay([(HERE / name).read_bytes()]))
    audio = [parse_audio(m.body) for m in media if m.type == TagType.AUDIO]
    assert [type(p) for p in audio[:3]] == first
    assert isinstance(audio[1], ChannelLayout) and audio[1] == ChannelLayout(fourcc, 1, ("FC",))
    frames = [p for p in audio if isinstance(p, AudioFrame)]
    assert all(f.codec == fourcc for f in frames) and len(frames) >= 1.5 * 44100 / 1536

    live = LiveStream("live/golden", MemoryStore(), SegmenterConfig())
    live.begin_session(0.0, "127.0.0.1:1")
    for m in media:
        live.feed(FlvTag(TagType(m.type), m.timestamp, m.body), m.timestamp / 1000)
    live.close(5.0)
    stats = live.stats()
    assert stats["codecs"][1] == codec and stats["audio_sample_rate"] == 44100
    assert stats["malformed"] == 0 and stats["uncarried"] == [] and stats["segment_count"] >= 1
