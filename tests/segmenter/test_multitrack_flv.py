"""Enhanced RTMP v2 Multitrack tag bodies: split into one-track bodies and joined back."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from segmenter.codecs import MediaError
from segmenter.flv import TagType, Track, join_tracks, parse_audio, parse_video, split_multitrack

V, A = TagType.VIDEO, TagType.AUDIO


def test_one_track_video_golden() -> None:
    # Key frame (1), Multitrack (6); OneTrack (0) | CodedFrames (1); hvc1; track 1; CTS 0; data.
    body = bytes.fromhex("96 01") + b"hvc1" + bytes.fromhex("01 000000 00000002 2601")
    tracks = split_multitrack(V, body)
    assert tracks == [
        Track(1, "hvc1", bytes.fromhex("91") + b"hvc1" + bytes.fromhex("000000 00000002 2601"))
    ]
    assert parse_video(tracks[0].body) == parse_video(
        b"\x91hvc1\x00\x00\x00\x00\x00\x00\x02\x26\x01"
    )
    assert join_tracks(V, tracks) == body


def test_many_tracks_video_golden() -> None:
    # Inter frame (2), ManyTracks (1) | CodedFramesX (3), avc1 once, then id + u24 size + data.
    body = bytes.fromhex("a6 13") + b"avc1" + bytes.fromhex("00 000002 aabb 02 000001 cc")
    assert split_multitrack(V, body) == [
        Track(0, "avc1", b"\xa3avc1\xaa\xbb"),
        Track(2, "avc1", b"\xa3avc1\xcc"),
    ]
    assert join_tracks(V, split_multitrack(V, body) or []) == body


def test_many_codecs_audio_golden() -> None:
    # Audio ExHeader (9) | Multitrack (5); ManyTracksManyCodecs (2) | CodedFrames (1).
    body = b"\x95\x21" + b"mp4a\x00\x00\x00\x02\x21\x00" + b"Opus\x01\x00\x00\x01\xf8"
    tracks = split_multitrack(A, body)
    assert tracks == [Track(0, "mp4a", b"\x91mp4a\x21\x00"), Track(1, "Opus", b"\x91Opus\xf8")]
    assert [parse_audio(t.body) for t in tracks] == [
        parse_audio(b"\x91mp4a\x21\x00"),
        parse_audio(b"\x91Opus\xf8"),
    ]
    assert join_tracks(A, tracks) == body


def test_sequence_start_audio_one_track() -> None:
    body = b"\x95\x00Opus\x03" + b"OpusHead\x01\x02"
    assert split_multitrack(A, body) == [Track(3, "Opus", b"\x90OpusOpusHead\x01\x02")]


def test_mod_ex_before_multitrack_is_kept_on_each_track() -> None:
    # ModEx (7): size-1 = 2 (3 bytes of data), ModExType 0 (timestamp offset nano) | Multitrack.
    body = (
        bytes.fromhex("97 02 000001 06 11") + b"vp09" + bytes.fromhex("00 000001 aa 01 000001 bb")
    )
    tracks = split_multitrack(V, body)
    assert tracks == [
        Track(0, "vp09", bytes.fromhex("97 02 000001 01") + b"vp09\xaa"),
        Track(1, "vp09", bytes.fromhex("97 02 000001 01") + b"vp09\xbb"),
    ]
    assert parse_video(tracks[1].body) == parse_video(b"\x91vp09\xbb")


def test_not_multitrack() -> None:
    assert split_multitrack(V, b"\x17\x01\x00\x00\x00") is None  # legacy AVC
    assert split_multitrack(V, b"\x91avc1\x00\x00\x00") is None
    assert split_multitrack(A, b"\xaf\x01\x21") is None  # legacy AAC
    assert split_multitrack(A, b"\x91mp4a\x21") is None
    assert split_multitrack(V, b"") is None
    assert split_multitrack(TagType.SCRIPT, b"\x96\x00avc1\x00") is None
    # Audio ExHeader bytes (0x9X) in a video tag are a video ExHeader: PacketType 5, not Multitrack.
    assert split_multitrack(V, b"\x95\x00Opus\x00") is None


@pytest.mark.parametrize(
    ("kind", "body", "match"),
    [
        (V, b"\x96", "header truncated"),
        (V, b"\x96\x31avc1\x00", "AvMultitrackType 3"),
        (V, b"\x96\x06avc1\x00", "cannot carry PacketType 6"),
        (A, b"\x95\x07mp4a\x00", "cannot carry PacketType 7"),
        (V, b"\x96\x01av", "FourCC"),
        (V, b"\x96\x01avc1", "before trackId"),
        (V, b"\x96\x11avc1\x00\x00", "before track 0 size"),
        (V, b"\x96\x11avc1\x00\x00\x00\x05\xaa", "overruns"),
        (V, b"\x96\x11avc1\x00\x00\x00\x00\x00\x00\x00\x00", "twice"),
        (A, b"\x95\x21mp4a\x00\x00\x00\x00Op", "FourCC"),
    ],
)
def test_malformed(kind: TagType, body: bytes, match: str) -> None:
    with pytest.raises(MediaError, match=match):
        split_multitrack(kind, body)


def test_every_prefix_splits_or_raises() -> None:
    body = b"\x95\x21" + b"mp4a\x00\x00\x00\x02\x21\x00" + b"Opus\x01\x00\x00\x01\xf8"
    for end in range(len(body) + 1):
        with contextlib.suppress(MediaError):
            tracks = split_multitrack(A, body[:end])
            assert tracks is None or all(t.body[0] == 0x91 for t in tracks)


def test_join_refuses_mixed_or_nested_tracks() -> None:
    with pytest.raises(ValueError, match="at least one"):
        join_tracks(V, [])
    with pytest.raises(ValueError, match="share"):
        join_tracks(
            V,
            [Track(0, "avc1", b"\x91avc1\x00\x00\x00"), Track(1, "avc1", b"\xa1avc1\x00\x00\x00")],
        )
    with pytest.raises(ValueError, match="FourCC"):
        join_tracks(V, [Track(0, "hvc1", b"\x91avc1\x00\x00\x00")])
    with pytest.raises(ValueError, match="without ModEx"):
        join_tracks(V, [Track(0, "avc1", b"\x96avc1\x00\x00\x00")])


_FOURCCS = {V: ["avc1", "hvc1", "av01", "vp09"], A: ["mp4a", "Opus", "fLaC", "ac-3"]}


@st.composite
def _tracks(draw: st.DrawFn) -> tuple[TagType, list[Track]]:
    kind = draw(st.sampled_from([V, A]))
    b0 = (
        0x80 | draw(st.integers(1, 4)) << 4 | draw(st.sampled_from([0, 1, 2, 3]))
        if kind == V
        else 0x90 | draw(st.sampled_from([0, 1, 2, 4]))
    )
    ids = draw(st.lists(st.integers(0, 255), min_size=1, max_size=6, unique=True))
    tracks = []
    for track_id in ids:
        fourcc = draw(st.sampled_from(_FOURCCS[kind]))
        data = draw(st.binary(max_size=40))
        tracks.append(Track(track_id, fourcc, bytes((b0,)) + fourcc.encode() + data))
    return kind, tracks


@given(_tracks())
def test_join_then_split_round_trips(case: tuple[TagType, list[Track]]) -> None:
    kind, tracks = case
    assert split_multitrack(kind, join_tracks(kind, tracks)) == tracks


@given(st.sampled_from([V, A]), st.binary(max_size=64))
def test_arbitrary_bytes_split_or_raise(kind: TagType, tail: bytes) -> None:
    head = b"\x96" if kind == V else b"\x95"
    with contextlib.suppress(MediaError):
        split_multitrack(kind, head + tail)


def test_mod_ex_timestamp_offset_nano_rounds_to_the_millisecond_clock() -> None:
    from segmenter.flv import FlvTag, timestamp_offset_ms

    # ModEx (7): 3 bytes of data = 600000 ns, ModExType 0 (TimestampOffsetNano) | CodedFramesX.
    late = bytes.fromhex("97 02 0927c0 03") + b"avc1\x00\x00\x00\x01\x65"
    early = bytes.fromhex("97 02 061a80 03") + b"avc1\x00\x00\x00\x01\x65"  # 400000 ns
    assert timestamp_offset_ms(FlvTag(V, 1000, late)) == 1
    assert timestamp_offset_ms(FlvTag(V, 1000, early)) == 0
    assert parse_video(late) == parse_video(b"\x93avc1\x00\x00\x00\x01\x65")
    # Audio, and a ModEx of another type (1) which carries no offset.
    assert timestamp_offset_ms(FlvTag(A, 0, bytes.fromhex("97 02 0f423f 01") + b"Opus\xf8")) == 1
    assert timestamp_offset_ms(FlvTag(A, 0, bytes.fromhex("97 02 0f423f 11") + b"Opus\xf8")) == 0
    assert timestamp_offset_ms(FlvTag(V, 0, b"\x91avc1\x00\x00\x00")) == 0  # no ModEx
    assert timestamp_offset_ms(FlvTag(A, 0, b"\xaf\x01\x21")) == 0  # legacy AAC
