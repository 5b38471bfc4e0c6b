"""PlayerFeed: what an RTMP player is sent, and with which timestamp (pure)."""

from __future__ import annotations

from gateway.player import SESSION_GAP_MS, PlayerFeed
from segmenter.flv import FlvTag, TagType


def video(ts: int, key: bool = False) -> FlvTag:
    return FlvTag(TagType.VIDEO, ts, bytes([0x17 if key else 0x27, 0x01, 0, 0, 0]))


def audio(ts: int) -> FlvTag:
    return FlvTag(TagType.AUDIO, ts, b"\xaf\x01\x21")


HEADER = FlvTag(TagType.VIDEO, 0, b"\x17\x00\x00\x00\x00\x01")
META = FlvTag(TagType.SCRIPT, 0, b"\x02\x00\x0aonMetaData\x05")


def test_starts_at_a_keyframe_with_rebased_clock() -> None:
    feed = PlayerFeed()
    assert feed.accept(META) == 0 and feed.accept(HEADER) == 0  # config goes out first
    assert feed.accept(audio(5000)) is None  # nothing before the first picture
    assert feed.accept(video(5033)) is None
    assert feed.accept(video(5066, key=True)) == 0
    assert feed.accept(audio(5070)) == 4
    assert feed.accept(video(5100)) == 34
    assert feed.dropped == 2


def test_gap_resyncs_at_next_keyframe_and_clock_runs_on() -> None:
    feed = PlayerFeed()
    feed.accept(video(0, key=True))
    feed.gap(10)
    assert feed.accept(video(400)) is None and feed.accept(audio(410)) is None
    assert feed.accept(video(1000, key=True)) == 1000
    assert feed.dropped == 12


def test_new_publisher_session_continues_the_clock() -> None:
    feed = PlayerFeed()
    feed.accept(video(90_000, key=True))
    assert feed.accept(video(92_000)) == 2000
    feed.new_session()  # the publisher reconnected: its clock restarts near 0
    assert feed.accept(HEADER) == 2000 + SESSION_GAP_MS
    assert feed.accept(video(10)) is None
    assert feed.accept(video(40, key=True)) == 2000 + SESSION_GAP_MS
    assert feed.accept(video(73)) == 2000 + SESSION_GAP_MS + 33


def test_audio_only_stream_starts_at_once() -> None:
    feed = PlayerFeed(has_video=False)
    assert feed.accept(audio(700)) == 0
    assert feed.accept(audio(723)) == 23


def test_pause_drops_everything_and_resume_waits_for_a_keyframe() -> None:
    feed = PlayerFeed()
    feed.accept(video(0, key=True))
    feed.pause(True)
    assert feed.accept(video(33)) is None and feed.accept(HEADER) is None
    feed.pause(False)
    assert feed.accept(video(66)) is None
    assert feed.accept(video(1000, key=True)) == 1000
