"""One transcoding rung (segmenter.transcode) on real media made by FFmpeg 9: the output tags are
Multitrack OneTrack avc1 tags that decode to the requested size, with keyframes at the source's
timestamps and the sequence header first."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import pytest

from segmenter.codecs import MediaError, parse_avcc
from segmenter.flv import (
    AVC,
    HEVC,
    FlvTag,
    SequenceHeader,
    TagType,
    VideoFrame,
    parse_video,
    split_multitrack,
)
from segmenter.transcode import (
    RungSpec,
    RungTranscoder,
    annexb_to_avcc_record,
    annexb_to_lengths,
    fit,
)
from tests.segmenter.media import av_args, make_flv, shifted, tags

SPS = bytes.fromhex("6742c01e d9005005ba10000003 0010000003 03c8f162e480".replace(" ", ""))
PPS = bytes.fromhex("68cb83cb20")


@dataclass
class Picture:
    dts: int
    pts: int
    key: bool


def video(data: bytes) -> list[FlvTag]:
    return [t for t in tags(data) if t.type is TagType.VIDEO]


def source_pictures(items: list[FlvTag]) -> list[Picture]:
    out = []
    for t in items:
        packet = parse_video(t.body)
        if isinstance(packet, VideoFrame):
            out.append(Picture(t.timestamp, t.timestamp + packet.composition_time, packet.keyframe))
    return out


def run(spec: RungSpec, items: list[FlvTag]) -> tuple[RungTranscoder, list[FlvTag]]:
    rung = RungTranscoder(spec)
    out: list[FlvTag] = []
    for t in items:
        out += rung.feed(t)
    return rung, out + rung.flush()


def decode_rung(out: list[FlvTag], track_id: int) -> tuple[list[Picture], list[tuple[int, int]]]:
    """Check every tag is a OneTrack avc1 tag of ``track_id``, decode the pictures with PyAV and
    return them (decode order) and the decoded sizes; a sequence header must come first."""
    decoder = None
    pictures: list[Picture] = []
    sizes: list[tuple[int, int]] = []
    for t in out:
        assert t.type is TagType.VIDEO
        tracks = split_multitrack(t.type, t.body)
        assert tracks is not None and len(tracks) == 1
        assert (tracks[0].track_id, tracks[0].fourcc) == (track_id, AVC)
        # OneTrack layout (AvMultitrackType 0 in the high nibble of byte 1).
        assert t.body[0] & 0x0F == 6 and t.body[1] >> 4 == 0
        packet = parse_video(tracks[0].body)
        if isinstance(packet, SequenceHeader):
            assert packet.codec == AVC
            parse_avcc(packet.config)  # a valid avcC
            decoder = av.CodecContext.create("h264", "r")
            decoder.extradata = packet.config
            continue
        assert isinstance(packet, VideoFrame)
        assert decoder is not None, "a frame before the sequence header"
        pts = t.timestamp + packet.composition_time
        pictures.append(Picture(t.timestamp, pts, packet.keyframe))
        av_packet = av.Packet(packet.data)
        av_packet.pts, av_packet.dts, av_packet.time_base = pts, t.timestamp, Fraction(1, 1000)
        sizes += [(f.width, f.height) for f in decoder.decode(av_packet)]
    assert decoder is not None
    sizes += [(f.width, f.height) for f in decoder.decode(None)]
    return pictures, sizes


def check_aligned(source: list[Picture], rung: list[Picture]) -> None:
    assert len(rung) == len(source)
    keys = [(p.dts, p.pts) for p in source if p.key]
    assert [(p.dts, p.pts) for p in rung if p.key] == keys
    # The output's decode timestamps are the source's, its presentation times too (as a set:
    # the rung has no B-frames, so its decode order is the presentation order).
    assert [p.dts for p in rung] == [p.dts for p in source]
    assert [p.pts for p in rung] == sorted(p.pts for p in source)
    assert all(p.pts >= p.dts for p in rung)


def test_h264_rung_decodes_at_its_size_with_the_source_keyframes(tmp_path: Path) -> None:
    # B-frames in the source (-bf 2): its DTS and PTS differ, the rung's keyframes must not.
    source = video(make_flv(tmp_path / "src.flv", *av_args(2, 15)))
    spec = RungSpec(1, 160, 120, 200_000, "ultrafast")
    rung, out = run(spec, source)
    first = parse_video(split_multitrack(TagType.VIDEO, out[0].body)[0].body)  # type: ignore[index]
    assert isinstance(first, SequenceHeader) and out[0].timestamp == 0
    pictures, sizes = decode_rung(out, 1)
    assert sizes == [(160, 120)] * 60
    assert isinstance(first, SequenceHeader) and first.config[1] == 66  # ultrafast: Baseline
    src = source_pictures(source)
    assert any(p.pts != p.dts for p in src) and sum(p.key for p in src) == 4
    check_aligned(src, pictures)
    assert (rung.frames_in, rung.frames_out, rung.output_size) == (60, 60, (160, 120))


def test_aspect_is_kept_and_sizes_are_even(tmp_path: Path) -> None:
    source = video(make_flv(tmp_path / "src.flv", *av_args(1, 15, size="320x180")))
    _, out = run(RungSpec(2, 160, 160, 200_000, "ultrafast"), source)
    _, sizes = decode_rung(out, 2)
    assert set(sizes) == {(160, 90)}


def test_a_new_source_size_sends_a_new_sequence_header(tmp_path: Path) -> None:
    first = video(make_flv(tmp_path / "a.flv", *av_args(1, 15)))
    second = video(make_flv(tmp_path / "b.flv", *av_args(1, 15, size="240x320")))
    _, out = run(RungSpec(1, 160, 160, 200_000, "ultrafast"), first + shifted(second, 1000))
    headers = [
        t.timestamp
        for t in out
        if isinstance(parse_video(split_multitrack(t.type, t.body)[0].body), SequenceHeader)  # type: ignore[index]
    ]
    assert headers == [0, 1000]
    pictures, sizes = decode_rung(out[: len(out) // 2], 1)
    assert sizes == [(160, 120)] * len(pictures)
    _, later = decode_rung(out[len(out) // 2 :], 1)
    assert set(later) == {(120, 160)}


def test_frames_before_the_first_keyframe_and_audio_are_skipped(tmp_path: Path) -> None:
    items = tags(make_flv(tmp_path / "src.flv", *av_args(1, 10)))
    header = next(t for t in items if t.type is TagType.VIDEO)
    frames = [t for t in items if t.type is TagType.VIDEO][1:]
    # Start in the middle of the first GOP, with audio and metadata around (ignored).
    rest = [t for t in items if t.type is not TagType.VIDEO] + [header] + frames[3:]
    _, out = run(RungSpec(1, 160, 120, 200_000, "ultrafast"), rest)
    pictures, _ = decode_rung(out, 1)
    assert pictures[0].key and pictures[0].dts == frames[10].timestamp
    check_aligned(source_pictures(frames[10:]), pictures)


def test_hevc_source(tmp_path: Path) -> None:
    # FFmpeg 9's FLV muxer writes HEVC as Enhanced RTMP hvc1.
    args = av_args(1, 15)
    args[args.index("libx264")] = "libx265"
    args[args.index("-bf") : args.index("-bf") + 2] = ["-x265-params", "log-level=error:open-gop=0"]
    source = video(make_flv(tmp_path / "src.flv", *args))
    header = parse_video(source[0].body)
    assert isinstance(header, SequenceHeader) and header.codec == HEVC
    _, out = run(RungSpec(1, 160, 120, 200_000, "ultrafast"), source)
    pictures, sizes = decode_rung(out, 1)
    assert set(sizes) == {(160, 120)}
    check_aligned(source_pictures(source), pictures)


@pytest.mark.parametrize(
    ("src", "box", "expected"),
    [
        ((1280, 720), (640, 360), (640, 360)),
        ((1280, 720), (640, 640), (640, 360)),
        ((720, 1280), (640, 360), (202, 360)),
        ((1920, 1080), (853, 480), (852, 480)),
        ((320, 240), (1280, 720), (320, 240)),  # never upscaled
        ((321, 241), (1000, 1000), (320, 240)),  # even, never above the source
    ],
)
def test_fit(src: tuple[int, int], box: tuple[int, int], expected: tuple[int, int]) -> None:
    assert fit(*src, *box) == expected


def test_annexb_to_avcc_record_and_lengths() -> None:
    extradata = b"\x00\x00\x00\x01" + SPS + b"\x00\x00\x01" + PPS
    record = annexb_to_avcc_record(extradata)
    assert record == (
        bytes((1, 0x42, 0xC0, 0x1E, 0xFF, 0xE1))
        + len(SPS).to_bytes(2, "big")
        + SPS
        + b"\x01"
        + len(PPS).to_bytes(2, "big")
        + PPS
    )
    assert annexb_to_avcc_record(record) == record
    config = parse_avcc(record)
    assert (config.sps, config.pps) == ((SPS,), (PPS,))
    # A High profile SPS (profile_idc 100): the record ends with chroma_format 1 (4:2:0), 8-bit
    # luma and chroma, no SPS extensions (ISO/IEC 14496-15 §5.3.3.1.2).
    high = b"\x67\x64\x00\x1e" + SPS[4:]
    record = annexb_to_avcc_record(b"\x00\x00\x00\x01" + high + b"\x00\x00\x00\x01" + PPS)
    assert record[1:4] == b"\x64\x00\x1e" and record.endswith(PPS + b"\xfd\xf8\xf8\x00")
    # Trailing zero bytes before a 4-byte start code belong to the start code.
    au = b"\x00\x00\x00\x01\x09\xf0\x00\x00\x00\x01\x65\x88\x84"
    assert annexb_to_lengths(au) == b"\x00\x00\x00\x02\x09\xf0\x00\x00\x00\x03\x65\x88\x84"
    assert annexb_to_lengths(b"\x00\x00\x00\x02\x09\xf0") == b"\x00\x00\x00\x02\x09\xf0"


def test_malformed_tags_are_skipped_and_other_codecs_refused(tmp_path: Path) -> None:
    source = video(make_flv(tmp_path / "src.flv", *av_args(1, 15)))
    broken = FlvTag(TagType.VIDEO, 40, b"\x27\x01")  # AVC frame cut before its composition time
    spec = RungSpec(1, 160, 120, 200_000, "ultrafast")
    _, out = run(spec, [*source[:5], broken, *source[5:]])
    pictures, _ = decode_rung(out, 1)
    assert len(pictures) == 30
    av1 = FlvTag(TagType.VIDEO, 0, b"\x90av01\x81\x00\x0c\x00")  # ExHeader av01 SequenceStart
    with pytest.raises(MediaError, match="cannot transcode av01 video"):
        RungTranscoder(spec).feed(av1)


def enhanced(tag: FlvTag) -> FlvTag:
    """A legacy AVC tag as Enhanced RTMP sends it: ExHeader avc1 SequenceStart / CodedFrames."""
    body = tag.body
    frame_type, packet_type = body[0] >> 4, body[1]
    if packet_type == 0:
        out = bytes((0x80 | frame_type << 4 | 0,)) + b"avc1" + body[5:]
    elif packet_type == 1:
        out = bytes((0x80 | frame_type << 4 | 1,)) + b"avc1" + body[2:]
    else:
        out = bytes((0x80 | frame_type << 4 | 2,)) + b"avc1"
    return FlvTag(tag.type, tag.timestamp, out)


def test_enhanced_rtmp_avc1_source(tmp_path: Path) -> None:
    source = [enhanced(t) for t in video(make_flv(tmp_path / "src.flv", *av_args(1, 15)))]
    assert isinstance(parse_video(source[0].body), SequenceHeader)
    _, out = run(RungSpec(1, 160, 120, 200_000, "ultrafast"), source)
    pictures, sizes = decode_rung(out, 1)
    assert sizes == [(160, 120)] * 30
    check_aligned(source_pictures(source), pictures)


def test_veryfast_rung_is_high_profile_with_a_full_avcc(tmp_path: Path) -> None:
    source = video(make_flv(tmp_path / "src.flv", *av_args(1, 15)))
    _, out = run(RungSpec(1, 160, 120, 200_000, "veryfast"), source)
    header = parse_video(split_multitrack(TagType.VIDEO, out[0].body)[0].body)  # type: ignore[index]
    assert isinstance(header, SequenceHeader) and header.config[1] == 100  # High
    config = parse_avcc(header.config)
    assert header.config.endswith(config.pps[-1] + b"\xfd\xf8\xf8\x00")
    pictures, sizes = decode_rung(out, 1)
    assert sizes == [(160, 120)] * 30
    check_aligned(source_pictures(source), pictures)
