"""Enhanced RTMP codec configurations (issue 15): golden byte vectors taken from FFmpeg 9's FLV
muxer (libx265, libsvtav1, libvpx-vp9, libopus at 320x240 / 48 kHz mono), the sample entries
and CODECS strings made from them, and the sync-sample and duration rules per codec."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from segmenter.codecs import (
    MediaError,
    av1_is_key,
    hevc_has_irap,
    hevc_to_annexb,
    opus_samples,
    parse_av1c,
    parse_hvcc,
    parse_opus_head,
    parse_vpcc,
    vp9_frame_size,
    vp9_is_key,
)
from segmenter.flv import FlvTag, TagType
from segmenter.fmp4 import init_segment
from segmenter.live import LiveStream, SegmenterConfig
from segmenter.store import MemoryStore

# hvcC of libx265 (Main, level 2, 320x240) with its VPS, SPS and PPS (the SEI array left out).
HVCC = bytes.fromhex(
    "0101600000009000000000003cf000fcfdf8f800000f03200001001840010c01ffff0160000003009000000300"
    "0003003c959409210001002a42010101600000030090000003000003003ca00a080f16595952930bc05a02000003"
    "0002000003003c1022000100064401c073c189"
)
AV1C = bytes.fromhex("81000c000a0b0200000521e7fde017c002")  # Main, level 2.0, 8 bit, seq header
VPCC = bytes.fromhex("010000000014820202020000")  # version 1, profile 0, level 2.0, 8 bit 4:2:0
OPUS_HEAD = bytes.fromhex("4f707573486561640101380180bb0000000000")  # 1 ch, pre-skip 312
VP9_KEY = bytes.fromhex("824983420013f00ef6")  # a key frame's uncompressed header start


def test_hvcc_codec_string_and_picture() -> None:
    config = parse_hvcc(HVCC)
    # ISO/IEC 14496-15 E.3: profile 1, compatibility 0x60000000 reversed = 0x6, L60, byte 0x90.
    assert config.codec_string == "hvc1.1.6.L60.90"
    assert (config.info.width, config.info.height) == (320, 240)
    assert config.nal_length_size == 4 and len(config.parameter_sets) == 3
    with pytest.raises(MediaError):
        parse_hvcc(HVCC[:30])  # cut inside the VPS


def test_av1c_codec_string_and_picture() -> None:
    config = parse_av1c(AV1C)
    assert config.codec_string == "av01.0.00M.08"  # AV1-ISOBMFF: seq_level_idx 0 = level 2.0
    assert (config.info.width, config.info.height) == (320, 240)
    bare = parse_av1c(AV1C[:4])  # no configOBUs: the size comes from the first key frame
    assert bare.info.width == 0
    with pytest.raises(MediaError):
        parse_av1c(b"\x01\x00\x0c\x00")


def test_vpcc_codec_string_and_key_frame_size() -> None:
    config = parse_vpcc(VPCC)
    assert config.codec_string == "vp09.00.20.08"
    assert config.info.width == 0  # vpcC has no picture size
    assert vp9_frame_size(VP9_KEY) == (320, 240) and vp9_is_key(VP9_KEY)
    inter = bytes((0x86,)) + VP9_KEY[1:]  # frame_type 1
    assert vp9_frame_size(inter) is None and not vp9_is_key(inter)


def test_opus_head_to_dops() -> None:
    config = parse_opus_head(OPUS_HEAD)
    assert (config.channels, config.pre_skip, config.input_rate) == (1, 312, 48000)
    # Opus in ISOBMFF §4.3.2: version 0, channels, PreSkip, InputSampleRate, OutputGain (big
    # endian), ChannelMappingFamily 0.
    assert config.dops() == bytes.fromhex("000101380000bb80000000")
    assert config.codec_string == "Opus"
    with pytest.raises(MediaError):
        parse_opus_head(b"OpusTags" + OPUS_HEAD[8:])


def test_opus_packet_durations() -> None:
    # RFC 6716 §3.1: config 31 (CELT 20 ms) code 0 = 960; config 1 (SILK 20 ms) code 1 = 2 frames.
    assert opus_samples(bytes((31 << 3,))) == 960
    assert opus_samples(bytes((1 << 3 | 1,))) == 1920
    assert opus_samples(bytes((16 << 3 | 3, 4))) == 480  # 4 frames of 2.5 ms


def test_sync_samples_from_the_bitstream() -> None:
    idr = b"\x00\x00\x00\x03\x26\x01\xaf"  # NAL type 19 (IDR_W_RADL)
    trail = b"\x00\x00\x00\x03\x02\x01\xd0"  # NAL type 1 (TRAIL_R)
    assert hevc_has_irap(idr, 4) and not hevc_has_irap(trail, 4)
    # Temporal delimiter, then a frame OBU: show_existing_frame 0, frame_type 0 (KEY_FRAME).
    assert av1_is_key(b"\x12\x00\x32\x02\x10\x00")
    assert not av1_is_key(b"\x12\x00\x32\x02\x30\x00")  # frame_type 1 (INTER_FRAME)


@pytest.mark.parametrize(
    ("entry", "config_box", "video"),
    [(b"hvc1", b"hvcC", parse_hvcc(HVCC)), (b"av01", b"av1C", parse_av1c(AV1C))],
)
def test_init_segment_sample_entries(entry: bytes, config_box: bytes, video: object) -> None:
    init = init_segment(video, parse_opus_head(OPUS_HEAD))  # type: ignore[arg-type]
    assert entry in init and config_box in init and b"Opus" in init and b"dOps" in init
    at = init.index(config_box) + 4
    assert init[at : at + len(video.record)] == video.record  # type: ignore[attr-defined]
    assert b"\x00\xbb\x80" in init  # the Opus track's 48 kHz timescale


def test_a_codec_no_output_carries_is_logged_naming_the_publisher(
    caplog: pytest.LogCaptureFixture,
) -> None:
    live = LiveStream("live/x", MemoryStore(), SegmenterConfig(formats=("ts",)))
    live.begin_session(0.0, "127.0.0.1:5555")
    with caplog.at_level(logging.ERROR):
        live.feed(FlvTag(TagType.VIDEO, 0, b"\x90av01" + AV1C), 0.0)
        live.feed(FlvTag(TagType.VIDEO, 0, b"\x91av01\x12\x00\x32\x02\x10\x00"), 0.0)
        live.feed(FlvTag(TagType.AUDIO, 0, b"\xb6\x00"), 0.0)  # Speex (legacy SoundFormat 11)
    stats = live.stats()
    assert stats["ts"] is not None and "AV1" in stats["ts"]
    assert len(stats["uncarried"]) == 2
    assert "Speex" in stats["uncarried"][1] and "AV1" in stats["uncarried"][0]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2 and all("127.0.0.1:5555" in e for e in errors)
    assert live.missing_reason("ts.m3u8") == (
        "ts.m3u8 of live/x: MPEG-TS here carries H.264, HEVC, AAC, MP3, AC-3 and E-AC-3, not AV1; "
        "play index.m3u8"
    )


# The parameter sets of HVCC as Annex-B NAL units (H.265 §7.3.1.2 headers: types 32, 33, 34).
VPS, SPS, PPS = HVCC[28:52], HVCC[57:99], HVCC[104:110]
SC = b"\x00\x00\x00\x01"
IDR_NAL = b"\x26\x01\xaf"  # IDR_W_RADL (type 19)
TRAIL_NAL = b"\x02\x01\xd0"  # TRAIL_R (type 1)
AUD_NAL = b"\x46\x01\x50"  # AUD (type 35), pic_type 2


def _prefixed(*nals: bytes, size: int = 4) -> bytes:
    return b"".join(len(n).to_bytes(size, "big") + n for n in nals)


def test_hvcc_parameter_sets_are_vps_sps_pps() -> None:
    assert [(n[0] >> 1) & 0x3F for n in (VPS, SPS, PPS)] == [32, 33, 34]
    assert parse_hvcc(HVCC).parameter_sets == (VPS, SPS, PPS)
    assert VPS.hex() == "40010c01ffff01600000030090000003000003003c959409"
    assert PPS.hex() == "4401c073c189"


def test_hevc_to_annexb_puts_parameter_sets_before_an_irap() -> None:
    config = parse_hvcc(HVCC)
    out, irap = hevc_to_annexb(_prefixed(IDR_NAL), config)
    assert irap and out == SC + VPS + SC + SPS + SC + PPS + SC + IDR_NAL
    out, irap = hevc_to_annexb(_prefixed(TRAIL_NAL, TRAIL_NAL), config)
    assert not irap and out == SC + TRAIL_NAL + SC + TRAIL_NAL
    # An access unit delimiter stays first (H.265 §7.4.2.4.4).
    out, irap = hevc_to_annexb(_prefixed(AUD_NAL, IDR_NAL), config)
    assert irap and out == SC + AUD_NAL + SC + VPS + SC + SPS + SC + PPS + SC + IDR_NAL
    # In-band parameter sets are not doubled.
    out, _ = hevc_to_annexb(_prefixed(VPS, SPS, PPS, IDR_NAL), config)
    assert out == SC + VPS + SC + SPS + SC + PPS + SC + IDR_NAL
    # A CRA (type 21) is an IRAP too; a 2-byte NAL length size (hvcC lengthSizeMinusOne 1).
    cra = b"\x2a\x01\xaf"
    two = dataclasses.replace(config, nal_length_size=2)
    out, irap = hevc_to_annexb(_prefixed(cra, size=2), two)
    assert irap and out == SC + VPS + SC + SPS + SC + PPS + SC + cra


def test_hevc_to_annexb_leaves_out_the_records_sei_arrays() -> None:
    sei = b"\x4e\x01\x05\x01\x00\x80"  # PREFIX_SEI (type 39)
    config = dataclasses.replace(parse_hvcc(HVCC), parameter_sets=(sei, VPS, SPS, PPS))
    out, _ = hevc_to_annexb(_prefixed(IDR_NAL), config)
    assert out == SC + VPS + SC + SPS + SC + PPS + SC + IDR_NAL


def test_hevc_to_annexb_refuses_a_truncated_sample() -> None:
    with pytest.raises(MediaError, match="overruns"):
        hevc_to_annexb(_prefixed(IDR_NAL)[:-1], parse_hvcc(HVCC))
    with pytest.raises(MediaError, match="truncated"):
        hevc_to_annexb(b"\x00\x00", parse_hvcc(HVCC))


def test_hevc_session_goes_to_ts() -> None:
    store = MemoryStore()
    live = LiveStream("live/x", store, SegmenterConfig(formats=("ts",)))
    live.begin_session(0.0, "127.0.0.1:5555")
    live.feed(FlvTag(TagType.VIDEO, 0, b"\x90hvc1" + HVCC), 0.0)
    for ms in range(0, 4000, 500):
        nal = IDR_NAL if ms % 2000 == 0 else TRAIL_NAL
        header = b"\x91hvc1" if nal == IDR_NAL else b"\xa1hvc1"
        live.feed(FlvTag(TagType.VIDEO, ms, header + b"\x00\x00\x00" + _prefixed(nal)), 0.0)
    live.end_session(4.0)
    stats = live.stats()
    assert stats["ts"] is None and stats["uncarried"] == [] and live.counters["malformed"] == 0
    assert live.missing_reason("ts.m3u8") is None
    playlist = (store.get("live/x/ts.m3u8") or b"").decode()
    uris = [line for line in playlist.splitlines() if line.endswith(".ts")]
    assert len(uris) == 2, playlist
    for uri in uris:  # each segment begins with its parameter sets before the IDR
        data = store.get(f"live/x/{uri}") or b""
        assert SC + VPS in data
    index = (store.get("live/x/index.m3u8") or b"").decode()
    assert index.rstrip().endswith("ts.m3u8") and 'CODECS="hvc1.' in index
