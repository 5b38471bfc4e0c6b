"""Enhanced RTMP v2 Multitrack in the hub and for RTMP players: every track's configuration is
cached for a late player, the GOP cache and players start at default-track keyframes, a legacy
player gets track 0 only (Multitrack rewritten or dropped), a multitrack player every track."""

from __future__ import annotations

from gateway.hub import Hub, is_keyframe, is_sequence_header
from gateway.player import PlayerFeed, legacy_view
from segmenter.flv import (
    NOT_CONFIG,
    FlvTag,
    TagType,
    Track,
    config_type,
    default_track_body,
    is_default_keyframe,
    join_tracks,
)

V, A = TagType.VIDEO, TagType.AUDIO


def seq(track: int, cfg: bytes = b"") -> Track:
    """An hvc1 SequenceStart (key frame, PacketType 0) of one track."""
    return Track(track, "hvc1", b"\x90hvc1" + (cfg or b"cfg%d" % track))


def frame(track: int, key: bool, n: int = 0) -> Track:
    """An hvc1 CodedFrames (PacketType 1, CTS 0) naming its track and number."""
    return Track(
        track, "hvc1", bytes([0x91 if key else 0xA1]) + b"hvc1\x00\x00\x00t%dn%d" % (track, n)
    )


def mt(kind: TagType, ts: int, *tracks: Track) -> FlvTag:
    return FlvTag(kind, ts, join_tracks(kind, list(tracks)))


def one(ts: int, track: Track) -> FlvTag:
    return FlvTag(V, ts, track.body)


def test_config_type_of_every_configuration_packet() -> None:
    assert config_type(V, bytes.fromhex("1700000000 0164")) == 0  # legacy AVC header
    assert config_type(A, bytes.fromhex("af00 1210")) == 0  # legacy AAC header
    assert config_type(V, b"\x90hvc1cfg") == 0  # SequenceStart
    assert config_type(V, b"\xd4hvc1" + b"\x02\x00\x09colorInfo") == 4  # command frame Metadata
    assert config_type(V, b"\x95avc1desc") == 5  # MPEG2TSSequenceStart
    assert config_type(A, b"\x90OpusOpusHead") == 0
    assert config_type(A, b"\x94Opus\x01\x02") == 4  # MultichannelConfig
    assert config_type(V, join_tracks(V, [seq(0), seq(1)])) == 0  # Multitrack SequenceStart
    assert config_type(A, b"\x95\x00Opus\x03OpusHead") == 0  # audio Multitrack SequenceStart
    # ModEx (size 3, type 0) before the Multitrack header.
    assert config_type(V, bytes.fromhex("97 02 000001 06 10") + b"hvc1\x00\x00\x00\x01c") == 0
    for body in (
        b"\x91hvc1\x00\x00\x00x",  # frames
        bytes.fromhex("1701000000 65"),
        bytes.fromhex("af01 21"),
        join_tracks(V, [frame(0, True), frame(1, True)]),
        b"\x96",  # Multitrack truncated: not configuration (and no crash)
        b"\x97\xff",  # ModEx truncated
        b"\x17",
    ):
        assert config_type(V if body[0] != 0xAF else A, body) == NOT_CONFIG, body


def test_default_track_keyframes() -> None:
    assert is_default_keyframe(V, frame(0, True).body)
    assert is_default_keyframe(V, bytes.fromhex("1701000000 65"))
    assert not is_default_keyframe(V, frame(0, False).body)
    assert not is_default_keyframe(V, seq(0).body)  # a header is not where a picture starts
    assert is_default_keyframe(V, join_tracks(V, [frame(0, True), frame(1, True)]))
    assert not is_default_keyframe(V, join_tracks(V, [frame(1, True)]))  # track 1 only
    assert not is_default_keyframe(A, b"\x91mp4a\x21")
    assert not is_default_keyframe(V, b"\x96\x01hvc1")  # truncated Multitrack


def test_default_track_body() -> None:
    plain = frame(0, True).body
    assert default_track_body(V, plain) is plain  # not Multitrack: the very same bytes
    both = join_tracks(V, [frame(0, True), frame(2, True)])
    assert default_track_body(V, both) == plain
    assert default_track_body(V, join_tracks(V, [frame(2, True)])) is None
    # ManyTracks whose track 0 claims 9 bytes of 0: malformed, dropped.
    assert default_track_body(V, b"\x96\x11hvc1\x00\x00\x00\x09") is None
    assert default_track_body(A, b"\x95\x00Opus\x00OpusHead") == b"\x90OpusOpusHead"


def test_hub_caches_every_tracks_latest_configuration() -> None:
    stream = Hub(gop_cache_bytes=1 << 20)._stream("live", "mt")
    stream.publish(mt(V, 0, seq(0), seq(1)))  # ManyTracks: tracks 0 and 1
    stream.publish(mt(V, 0, seq(2)))  # OBS style: an extra track as a OneTrack tag
    stream.publish(FlvTag(A, 0, b"\x95\x00Opus\x01OpusHead"))  # audio track 1
    stream.publish(FlvTag(A, 0, b"\x90mp4a\x12\x10"))  # audio track 0 (one-track)
    assert is_sequence_header(mt(V, 0, seq(2)))
    assert stream.video_header == one(0, seq(0))  # track 0: its one-track body
    assert stream.audio_header == FlvTag(A, 0, b"\x90mp4a\x12\x10")
    assert list(stream.headers) == [(9, 0, 0), (9, 1, 0), (9, 2, 0), (8, 1, 0), (8, 0, 0)]
    assert stream.headers[(9, 1, 0)] == mt(V, 0, seq(1))  # others: OneTrack Multitrack tags
    assert stream.headers[(8, 1, 0)] == FlvTag(A, 0, b"\x95\x00Opus\x01OpusHead")
    # A new configuration of track 1 replaces track 1's only; Metadata has a slot of its own.
    stream.publish(mt(V, 40, seq(1, b"new")))
    stream.publish(FlvTag(V, 40, b"\xd4hvc1\x02\x00\x09colorInfo"))
    assert stream.headers[(9, 1, 0)] == mt(V, 40, seq(1, b"new"))
    assert stream.headers[(9, 0, 0)] == one(0, seq(0))
    assert stream.headers[(9, 0, 4)].timestamp == 40

    # The GOP cache restarts at key frames of track 0, not at those of other tracks alone.
    key0 = mt(V, 100, frame(0, True), frame(1, True))
    stream.publish(key0)
    inter = mt(V, 133, frame(0, False, 1), frame(1, False, 1))
    stream.publish(inter)
    key1_only = mt(V, 166, frame(1, True, 2))
    stream.publish(key1_only)
    assert is_keyframe(key0) and not is_keyframe(key1_only)
    assert stream.gop == [key0, inter, key1_only]
    assert stream.start_items() == [*stream.headers.values(), key0, inter, key1_only]


def test_legacy_player_gets_track_0_and_multitrack_player_everything() -> None:
    tags = [
        mt(V, 0, seq(0), seq(1)),
        mt(V, 0, seq(2)),
        mt(V, 0, frame(1, True)),  # no track 0: a legacy player cannot start here
        mt(V, 10, frame(0, True), frame(1, True)),
        one(20, frame(0, False, 1)),
        mt(V, 20, frame(1, False, 1)),
        FlvTag(A, 25, b"\x95\x11mp4a\x01\x21\x00"),  # audio OneTrack CodedFrames of track 1
    ]
    legacy, multi = PlayerFeed(), PlayerFeed(multitrack=True)
    got_legacy = []
    for tag in tags:
        view = legacy.view(tag)
        if view is not None and (ts := legacy.accept(view)) is not None:
            got_legacy.append((view.body, ts))
    assert got_legacy == [
        (seq(0).body, 0),
        (frame(0, True).body, 0),
        (frame(0, False, 1).body, 10),
    ]
    got_multi = [(t, multi.accept(t)) for t in tags if multi.view(t) is t]
    assert [t for t, ts in got_multi if ts is not None] == [tags[0], tags[1], *tags[3:]]
    # legacy_view leaves one-track tags and script data alone (the same object).
    assert legacy_view(tags[4]) is tags[4]
    script = FlvTag(TagType.SCRIPT, 0, b"\x02\x00\x0aonMetaData")
    assert legacy_view(script) is script


def test_other_tracks_configuration_is_bounded_by_track_headers_bytes() -> None:
    stream = Hub(track_headers_bytes=40)._stream("live", "many")
    big = b"x" * 1000
    stream.publish(mt(V, 0, seq(0, big)))  # track 0: always kept, whatever its size
    for track in range(1, 6):  # OneTrack tags of 11 bytes (2 + hvc1 + id + "cfgN")
        stream.publish(mt(V, 0, seq(track)))
    assert [k[1] for k in stream.headers] == [0, 1, 2, 3]  # 33 bytes fit in 40, 44 would not
    assert stream.headers[(9, 0, 0)].body.endswith(big)
    assert stream.track_headers_bytes == 33
    # A newer configuration of track 2 that does not fit: the stale one goes too.
    stream.publish(mt(V, 40, seq(2, b"y" * 30)))
    assert (9, 2, 0) not in stream.headers and stream.track_headers_bytes == 22
    stream.publish(mt(V, 40, seq(5)))  # room again
    assert (9, 5, 0) in stream.headers and stream.track_headers_bytes == 33
