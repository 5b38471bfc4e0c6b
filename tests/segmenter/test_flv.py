from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segmenter.codecs import MediaError
from segmenter.flv import (
    AudioFrame,
    ChannelLayout,
    FlvTag,
    Ignored,
    SequenceEnd,
    SequenceHeader,
    TagType,
    Unsupported,
    VideoFrame,
    iter_flv_file,
    parse_audio,
    parse_tag,
    parse_video,
)
from tests.segmenter.media import tags

PACKET_TYPES = (
    SequenceHeader, VideoFrame, AudioFrame, SequenceEnd, ChannelLayout, Unsupported, Ignored,
)  # fmt: skip
AVCC = bytes.fromhex("0142c01fffe100046742c01f01000468ce3c80")


def flv_file(*items: tuple[int, int, bytes]) -> bytes:
    """A hand-built FLV file (FLV v10.1 §E.2, §E.3) with (type, timestamp32, body) tags."""
    out = bytearray(b"FLV\x01\x05\x00\x00\x00\x09" + b"\x00" * 4)
    for tag_type, ts, body in items:
        header = bytes((tag_type,)) + len(body).to_bytes(3, "big")
        header += (ts & 0xFFFFFF).to_bytes(3, "big") + bytes((ts >> 24 & 0xFF,)) + b"\x00" * 3
        out += header + body + (len(header) + len(body)).to_bytes(4, "big")
    return bytes(out)


# --- the FLV file reader -------------------------------------------------------------------------


def test_reads_ffmpeg_flv(av_flv: bytes) -> None:
    items = tags(av_flv)
    assert items[0].type == TagType.SCRIPT and b"onMetaData" in items[0].body
    kinds = [type(parse_tag(t)) for t in items]
    assert kinds.count(VideoFrame) == 180 and kinds.count(AudioFrame) >= 250
    assert kinds.count(SequenceHeader) == 2 and kinds.count(SequenceEnd) == 1
    for kind in (TagType.AUDIO, TagType.VIDEO):
        stamps = [t.timestamp for t in items if t.type == kind]
        assert stamps == sorted(stamps) and stamps[-1] > 5900
    frames = [p for t in items if isinstance(p := parse_tag(t), VideoFrame)]
    assert sum(f.keyframe for f in frames) == 6
    assert any(f.composition_time > 0 for f in frames)  # B-frames


def test_file_reader_unwraps_extended_timestamps_and_stops_at_truncation() -> None:
    data = flv_file((8, 2**32 - 10, b"\xaf\x01\x00"), (8, 13, b"\xaf\x01\x00"), (7, 20, b"x"))
    stamps = [t.timestamp for t in iter_flv_file(data)]
    assert stamps == [2**32 - 10, 2**32 + 13]  # the unknown tag type 7 is skipped
    assert [t.timestamp for t in iter_flv_file(data[:-10])] == stamps  # a partial last tag
    assert len(list(iter_flv_file(data[:30]))) == 1
    with pytest.raises(MediaError):
        list(iter_flv_file(b"FLX\x01\x05\x00\x00\x00\x09"))
    with pytest.raises(MediaError, match="encrypted"):
        list(iter_flv_file(flv_file((0x28, 0, b"\xaf\x01\x00"))))


# --- legacy tag bodies (FLV v10.1 §E.4.2, §E.4.3) ------------------------------------------------


def test_legacy_avc_and_aac() -> None:
    assert parse_video(b"\x17\x00\x00\x00\x00" + AVCC) == SequenceHeader("video", "avc1", AVCC)
    frame = parse_video(b"\x27\x01\xff\xff\xfe" + b"\x00\x00\x00\x01\x41")
    assert frame == VideoFrame("avc1", False, -2, b"\x00\x00\x00\x01\x41")  # signed 24-bit CTS
    assert parse_video(b"\x17\x01\x00\x00\x21" + b"\x00").composition_time == 33  # type: ignore[union-attr]
    assert parse_video(b"\x17\x02\x00\x00\x00") == SequenceEnd("video", "avc1")
    assert parse_audio(b"\xaf\x00\x12\x10") == SequenceHeader("audio", "mp4a", b"\x12\x10")
    assert parse_audio(b"\xaf\x01\x21\x10") == AudioFrame("mp4a", b"\x21\x10")
    assert isinstance(parse_video(b"\x57\x00"), Ignored)  # video info/command frame
    assert isinstance(parse_video(b""), Ignored) and isinstance(parse_audio(b""), Ignored)
    assert isinstance(parse_tag(FlvTag(TagType.SCRIPT, 0, b"\x02")), Ignored)


@pytest.mark.parametrize(
    ("body", "codec"),
    [
        (b"\x22\x00", "Sorenson H.263"),
        (b"\x14\x00", "On2 VP6"),
        (b"\x1c\x00\x00\x00\x00", "HEVC (legacy id 12)"),
        (b"\x1d\x00", "AV1 (legacy id 13)"),
        (b"\x1e\x00", "CodecID 14"),
    ],
)
def test_legacy_unsupported_video(body: bytes, codec: str) -> None:
    packet = parse_video(body)
    assert packet == Unsupported("video", codec, f"unsupported video codec {codec}")


@pytest.mark.parametrize(
    ("byte0", "codec"),
    [(0xB6, "Speex"), (0xD0, "Opus (legacy id 13)"), (0x72, "G.711 A-law"), (0x12, "ADPCM")],
)
def test_legacy_unsupported_audio(byte0: int, codec: str) -> None:
    packet = parse_audio(bytes((byte0, 0, 0)))
    assert isinstance(packet, Unsupported) and packet.codec == codec and codec in packet.reason


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\x17\x00\x00", "too short"),
        (b"\x17\x05\x00\x00\x00", "AVCPacketType"),
        (b"\x17\x00\x00\x00\x00", "empty AVC sequence header"),
        (b"\xaf", "too short"),
        (b"\xaf\x07\x00", "AACPacketType"),
        (b"\xaf\x00", "empty AAC sequence header"),
    ],
)
def test_malformed_legacy_bodies(body: bytes, reason: str) -> None:
    parse = parse_video if body[0] == 0x17 else parse_audio
    with pytest.raises(MediaError, match=reason):
        parse(body)


# --- Enhanced RTMP (veovera v1/v2) ---------------------------------------------------------------


def ex_video(frame_type: int, packet_type: int, fourcc: bytes, rest: bytes = b"") -> bytes:
    return bytes((0x80 | frame_type << 4 | packet_type,)) + fourcc + rest


def test_enhanced_avc1_matches_legacy() -> None:
    assert parse_video(ex_video(1, 0, b"avc1", AVCC)) == SequenceHeader("video", "avc1", AVCC)
    nalu = b"\x00\x00\x00\x02\x65\x88"
    coded = parse_video(ex_video(1, 1, b"avc1", b"\xff\xff\xf0" + nalu))
    assert coded == VideoFrame("avc1", True, -16, nalu)
    assert parse_video(ex_video(2, 3, b"avc1", nalu)) == VideoFrame("avc1", False, 0, nalu)
    assert parse_video(ex_video(1, 2, b"avc1")) == SequenceEnd("video", "avc1")
    # ModEx (packet type 7): one byte size-1, data, then modExType|next packet type.
    modex = bytes((0x80 | 1 << 4 | 7, 2, 0xAA, 0xBB, 0xCC, 0x03)) + b"avc1" + nalu
    assert parse_video(modex) == VideoFrame("avc1", True, 0, nalu)


@pytest.mark.parametrize("fourcc", [b"hvc1", b"av01", b"vp09"])
def test_enhanced_video_codecs_parsed(fourcc: bytes) -> None:
    name = fourcc.decode()
    record = b"\x01\x02"
    assert parse_video(ex_video(1, 0, fourcc, record)) == SequenceHeader("video", name, record)
    frame = b"\x00\x00\x00\x02\x26\x01"
    # CodedFrames: an SI24 composition time for hvc1 only (E-RTMP v1 ExVideoTagBody).
    coded = parse_video(ex_video(1, 1, fourcc, b"\x00\x00\x21" + frame))
    if fourcc == b"hvc1":
        assert coded == VideoFrame(name, True, 33, frame)
    else:
        assert coded == VideoFrame(name, True, 0, b"\x00\x00\x21" + frame)
    assert parse_video(ex_video(2, 3, fourcc, frame)) == VideoFrame(name, False, 0, frame)
    assert parse_video(ex_video(1, 2, fourcc)) == SequenceEnd("video", name)
    with pytest.raises(MediaError, match="sequence start"):
        parse_video(ex_video(1, 0, fourcc))
    assert isinstance(parse_video(ex_video(1, 3, fourcc)), Ignored)  # a frame without data


def test_enhanced_video_other_fourcc_reported() -> None:
    packet = parse_video(ex_video(1, 0, b"vvc1", b"\x01"))
    assert packet == Unsupported("video", "vvc1", "unsupported video codec vvc1")


def test_enhanced_hvc1_byte_by_byte_prefixes() -> None:
    # Every prefix of a CodedFrames tag parses or raises MediaError (a tag split anywhere).
    body = ex_video(1, 1, b"hvc1", b"\xff\xff\xfe\x00\x00\x00\x02\x26\x01")
    assert parse_video(body) == VideoFrame("hvc1", True, -2, b"\x00\x00\x00\x02\x26\x01")
    for end in range(len(body)):
        with contextlib.suppress(MediaError):
            assert isinstance(parse_video(body[:end]), PACKET_TYPES)


def test_enhanced_video_other_packets() -> None:
    assert isinstance(parse_video(ex_video(5, 4, b"hvc1", b"\x02")), Ignored)  # metadata
    assert isinstance(parse_video(bytes((0x80 | 5 << 4 | 1, 0))), Ignored)  # command frame
    multitrack = parse_video(bytes((0x80 | 1 << 4 | 6, 0x00)) + b"avc1")
    assert isinstance(multitrack, Unsupported) and "multitrack" in multitrack.reason
    with pytest.raises(MediaError, match="FourCC"):
        parse_video(b"\x91av")
    with pytest.raises(MediaError, match="composition time"):
        parse_video(ex_video(1, 1, b"avc1", b"\x00"))
    with pytest.raises(MediaError, match="ModEx"):
        parse_video(bytes((0x80 | 1 << 4 | 7, 5, 0)))


def test_enhanced_audio() -> None:
    assert parse_audio(b"\x90mp4a\x12\x10") == SequenceHeader("audio", "mp4a", b"\x12\x10")
    assert parse_audio(b"\x91mp4a\x21\x00") == AudioFrame("mp4a", b"\x21\x00")
    assert parse_audio(b"\x92mp4a") == SequenceEnd("audio", "mp4a")
    with pytest.raises(MediaError, match="MultichannelConfig truncated"):
        parse_audio(b"\x94mp4a\x00")
    head = bytes.fromhex("4f707573486561640101380180bb0000000000")  # OpusHead, FFmpeg 9
    assert parse_audio(b"\x90Opus" + head) == SequenceHeader("audio", "Opus", head)
    assert parse_audio(b"\x91Opus\xf8\xff") == AudioFrame("Opus", b"\xf8\xff")
    assert parse_audio(b"\x92Opus") == SequenceEnd("audio", "Opus")
    assert parse_audio(b"\x94Opus\x01\x01\x00\x00\x00\x04") == ChannelLayout("Opus", 1, ("FC",))
    with pytest.raises(MediaError, match="sequence start"):
        parse_audio(b"\x90Opus")
    for fourcc in ("ac-4", "alac"):  # not E-RTMP audio FourCCs
        packet = parse_audio(b"\x90" + fourcc.encode() + b"\x00")
        assert packet == Unsupported("audio", fourcc, f"unsupported audio codec {fourcc}")
    assert isinstance(parse_audio(b"\x95\x00Opus"), Unsupported)  # multitrack
    with pytest.raises(MediaError):
        parse_audio(b"\x90mp")


def test_real_enhanced_rtmp_hevc_from_ffmpeg(hevc_flv: bytes) -> None:
    packets = [parse_tag(t) for t in tags(hevc_flv)]
    assert not any(isinstance(p, Unsupported) for p in packets)
    headers = [p for p in packets if isinstance(p, SequenceHeader) and p.media == "video"]
    assert [p.codec for p in headers] == ["hvc1"]
    frames = [p for p in packets if isinstance(p, VideoFrame)]
    assert frames and all(f.codec == "hvc1" for f in frames) and frames[0].keyframe
    assert any(isinstance(p, AudioFrame) for p in packets)


@given(st.binary(max_size=64))
@settings(max_examples=300, deadline=None)
def test_any_body_parses_or_raises_media_error(body: bytes) -> None:
    # Anything but a MediaError (IndexError, UnicodeError, ...) fails the test.
    for parse in (parse_video, parse_audio):
        try:
            assert isinstance(parse(body), PACKET_TYPES)
        except MediaError as exc:
            assert exc.reason


@given(st.binary(max_size=80))
@settings(max_examples=200, deadline=None)
def test_any_file_parses_or_raises_media_error(tail: bytes) -> None:
    try:
        assert all(isinstance(t, FlvTag) for t in iter_flv_file(b"FLV\x01\x05\0\0\0\x09" + tail))
    except MediaError as exc:
        assert exc.reason
