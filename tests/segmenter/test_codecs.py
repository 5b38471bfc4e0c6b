from __future__ import annotations

import io

import av
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segmenter.codecs import (
    AacConfig,
    BitReader,
    MediaError,
    adts_header,
    avcc_to_annexb,
    iter_nal_units,
    parse_asc,
    parse_avcc,
    parse_sps,
    unescape_rbsp,
)
from segmenter.flv import AudioFrame, SequenceHeader, VideoFrame, parse_tag
from tests.segmenter.media import tags


class BitWriter:
    """Builds hand-made bitstreams (H.264 §9.1 Exp-Golomb) for edge cases."""

    def __init__(self) -> None:
        self.bits: list[int] = []

    def u(self, n: int, value: int) -> BitWriter:
        self.bits += [(value >> (n - 1 - i)) & 1 for i in range(n)]
        return self

    def ue(self, value: int) -> BitWriter:
        code = value + 1
        return self.u(code.bit_length() - 1, 0).u(code.bit_length(), code)

    def se(self, value: int) -> BitWriter:
        return self.ue(2 * value - 1 if value > 0 else -2 * value)

    def bytes(self) -> bytes:
        bits = [*self.bits, 1]  # rbsp_stop_one_bit
        bits += [0] * (-len(bits) % 8)
        return bytes(int("".join(map(str, bits[i : i + 8])), 2) for i in range(0, len(bits), 8))


def configs(data: bytes) -> dict[str, bytes]:
    out = {}
    for tag in tags(data):
        packet = parse_tag(tag)
        if isinstance(packet, SequenceHeader):
            out[packet.media] = packet.config
    return out


def avcc_record(sps: bytes, pps: bytes = b"\x68\xce\x06\xe2") -> bytes:
    return (
        bytes((1, sps[1], sps[2], sps[3], 0xFF, 0xE1))
        + len(sps).to_bytes(2, "big")
        + sps
        + b"\x01"
        + len(pps).to_bytes(2, "big")
        + pps
    )


# --- real sequence headers -----------------------------------------------------------------------


def test_real_avcc_main_profile(av_flv: bytes) -> None:
    record = configs(av_flv)["video"]
    config = parse_avcc(record)
    assert (config.info.width, config.info.height, config.info.frame_rate) == (320, 240, 30.0)
    assert config.nal_length_size == 4
    assert len(config.sps) == 1 and len(config.pps) == 1
    assert config.codec_string == "avc1." + record[1:4].hex()
    assert config.codec_string == config.codec_string.lower()


def test_real_high_profile_scaling_matrix_and_cropping(high_cropped_flv: bytes) -> None:
    config = parse_avcc(configs(high_cropped_flv)["video"])
    assert config.profile == 100
    assert (config.info.width, config.info.height, config.info.frame_rate) == (318, 178, 25.0)
    assert config.codec_string.startswith("avc1.64")


def test_real_asc_and_adts_frames_decode(av_flv: bytes) -> None:
    config = parse_asc(configs(av_flv)["audio"])
    assert (config.object_type, config.sample_rate, config.channels) == (2, 44100, 1)
    assert config.codec_string == "mp4a.40.2"
    frames = [p.data for t in tags(av_flv) if isinstance(p := parse_tag(t), AudioFrame)]
    stream = b"".join(adts_header(config, len(f)) + f for f in frames)
    decoded = 0
    with av.open(io.BytesIO(stream), "r", format="aac") as container:
        for packet in container.demux(audio=0):
            decoded += sum(f.samples for f in packet.decode())
    assert decoded >= (len(frames) - 2) * 1024  # the decoder may hold back the priming frames


def test_real_avcc_to_annexb_decodes(av_flv: bytes) -> None:
    config = parse_avcc(configs(av_flv)["video"])
    chunks, idrs = [], 0
    for tag in tags(av_flv):
        frame = parse_tag(tag)
        if isinstance(frame, VideoFrame):
            annexb, has_idr = avcc_to_annexb(frame.data, config)
            assert has_idr == frame.keyframe
            idrs += has_idr
            chunks.append(annexb)
    assert idrs == 6
    frames = 0
    with av.open(io.BytesIO(b"".join(chunks)), "r", format="h264") as container:
        for packet in container.demux(video=0):
            frames += len(packet.decode())
    assert frames == 180


# --- hand-built SPS edge cases -------------------------------------------------------------------


def sps(
    profile: int = 66,
    *,
    chroma: int = 1,
    scaling: bool = False,
    poc_type: int = 0,
    width_mbs: int = 20,
    height_units: int = 15,
    frame_mbs_only: bool = True,
    crop: tuple[int, int, int, int] | None = None,
    timing: tuple[int, int] | None = None,
    sar_extended: bool = False,
) -> bytes:
    w = BitWriter().u(8, profile).u(8, 0).u(8, 31).ue(0)
    if profile in (100, 110, 122, 244):
        w.ue(chroma)
        if chroma == 3:
            w.u(1, 0)
        w.ue(0).ue(0).u(1, 0).u(1, int(scaling))
        if scaling:
            for i in range(12 if chroma == 3 else 8):
                present = i in (0, 6)
                w.u(1, int(present))
                if present:
                    for _ in range(16 if i < 6 else 64):
                        w.se(1)
    w.ue(0).ue(poc_type)
    if poc_type == 0:
        w.ue(2)
    elif poc_type == 1:
        w.u(1, 0).se(-1).se(2).ue(2).se(1).se(-3)
    w.ue(1).u(1, 0).ue(width_mbs - 1).ue(height_units - 1).u(1, int(frame_mbs_only))
    if not frame_mbs_only:
        w.u(1, 0)
    w.u(1, 1).u(1, int(crop is not None))
    if crop:
        for c in crop:
            w.ue(c)
    w.u(1, int(timing is not None or sar_extended))
    if timing is not None or sar_extended:
        w.u(1, int(sar_extended))
        if sar_extended:
            w.u(8, 255).u(16, 4).u(16, 3)
        w.u(1, 0).u(1, 0).u(1, 0).u(1, int(timing is not None))
        if timing:
            w.u(32, timing[0]).u(32, timing[1]).u(1, 1)
    return b"\x67" + w.bytes()


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, (320, 240, None)),
        ({"crop": (0, 0, 0, 4)}, (320, 232, None)),  # 4:2:0 progressive: 2 lines per unit
        ({"frame_mbs_only": False, "height_units": 17, "crop": (0, 0, 0, 2)}, (320, 536, None)),
        ({"profile": 100, "chroma": 3, "crop": (1, 1, 0, 0)}, (318, 240, None)),  # 4:4:4: unit 1
        ({"profile": 100, "scaling": True, "timing": (1001, 60000)}, (320, 240, 29.97)),
        ({"profile": 244, "chroma": 3, "scaling": True, "timing": (1, 50)}, (320, 240, 25.0)),
        ({"poc_type": 1, "timing": (1, 60)}, (320, 240, 30.0)),
        ({"poc_type": 2, "sar_extended": True}, (320, 240, None)),
        ({"timing": (0, 60)}, (320, 240, None)),
    ],
)
def test_sps_edge_cases(kwargs: dict[str, object], expected: tuple[int, int, object]) -> None:
    info = parse_sps(sps(**kwargs))  # type: ignore[arg-type]
    assert (info.width, info.height, info.frame_rate) == expected


def test_sps_errors() -> None:
    with pytest.raises(MediaError):
        parse_sps(b"\x68\x00\x00\x00")  # a PPS
    with pytest.raises(MediaError):
        parse_sps(sps()[:6])  # truncated before the size
    with pytest.raises(MediaError, match="cropping"):
        parse_sps(sps(width_mbs=1, crop=(4, 4, 0, 0)))


def test_sps_with_emulation_prevention() -> None:
    raw = sps(profile=100, timing=(1, 60))
    escaped = bytearray()
    zeros = 0
    for b in raw:  # H.264 §7.4.1: insert 03 after two zeros before a byte <= 3
        if zeros >= 2 and b <= 3:
            escaped.append(3)
            zeros = 0
        escaped.append(b)
        zeros = zeros + 1 if b == 0 else 0
    assert bytes(escaped) != raw  # the timing fields contain 00 00 00 01
    assert unescape_rbsp(bytes(escaped)) == raw
    assert parse_sps(bytes(escaped)).frame_rate == 30.0


@given(st.integers(0, 2**31 - 2), st.integers(-(2**30), 2**30))
@settings(max_examples=200, deadline=None)
def test_exp_golomb_round_trip(u: int, s: int) -> None:
    r = BitReader(BitWriter().ue(u).se(s).bytes())
    assert (r.ue(), r.se()) == (u, s)


def test_bit_reader_truncated() -> None:
    with pytest.raises(MediaError):
        BitReader(b"\x00\x00").ue()


# --- avcC ----------------------------------------------------------------------------------------


def test_avcc_codec_string_and_lists() -> None:
    s = sps(profile=100)
    config = parse_avcc(avcc_record(s))
    assert config.codec_string == f"avc1.64{s[2]:02x}{s[3]:02x}"
    assert config.sps == (s,) and config.pps == (b"\x68\xce\x06\xe2",)


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (b"\x01\x42", "too short"),
        (b"\x02\x42\x00\x1f\xff\xe1\x00", "configurationVersion"),
        (b"\x01\x42\x00\x1f\xfe\xe1\x00\x04\x67", "lengthSizeMinusOne"),
        (b"\x01\x42\x00\x1f\xff\xe1\x00\x40\x67\x42", "overruns"),
        (b"\x01\x42\x00\x1f\xff\xe0\x00", "no SPS"),
        (b"\x01\x42\x00\x1f\xff\xe1\x00", "truncated"),
    ],
)
def test_avcc_errors(record: bytes, reason: str) -> None:
    with pytest.raises(MediaError, match=reason):
        parse_avcc(record)


def test_annexb_inserts_parameter_sets_only_when_missing() -> None:
    config = parse_avcc(avcc_record(sps()))
    idr, slice_ = b"\x65\x88\x84", b"\x41\x9a\x02"
    frame = b"".join(len(n).to_bytes(4, "big") + n for n in (b"\x09\xf0", idr))
    out, has_idr = avcc_to_annexb(frame, config)
    start = b"\x00\x00\x00\x01"
    assert has_idr
    assert out == start + b"\x09\xf0" + start + config.sps[0] + start + config.pps[0] + start + idr
    inband = b"".join(len(n).to_bytes(4, "big") + n for n in (config.sps[0], config.pps[0], idr))
    assert avcc_to_annexb(inband, config)[0].count(config.sps[0]) == 1
    assert avcc_to_annexb(len(slice_).to_bytes(4, "big") + slice_, config) == (
        start + slice_,
        False,
    )
    with pytest.raises(MediaError):
        avcc_to_annexb(b"\x00\x00\x00\x09\x65", config)
    with pytest.raises(MediaError):
        list(iter_nal_units(b"\x00\x00", 4))


# --- AudioSpecificConfig and ADTS ----------------------------------------------------------------


def asc(*fields: tuple[int, int]) -> bytes:
    w = BitWriter()
    for n, v in fields:
        w.u(n, v)
    data = w.bits + [0] * (-len(w.bits) % 8)
    return bytes(int("".join(map(str, data[i : i + 8])), 2) for i in range(0, len(data), 8))


def test_asc_variants() -> None:
    lc = parse_asc(asc((5, 2), (4, 3), (4, 2), (3, 0)))
    assert (lc.sample_rate, lc.channels, lc.codec_string) == (48000, 2, "mp4a.40.2")
    escaped = parse_asc(asc((5, 31), (6, 10), (4, 4), (4, 1)))  # AOT 42 (USAC) via escape
    assert escaped.object_type == 42 and escaped.codec_string == "mp4a.40.42"
    explicit = parse_asc(asc((5, 2), (4, 15), (24, 44100), (4, 1)))
    assert (explicit.frequency_index, explicit.sample_rate) == (15, 44100)
    he = parse_asc(asc((5, 5), (4, 6), (4, 2), (4, 3), (5, 2)))  # SBR: core 24 kHz, out 48 kHz
    assert (he.codec_string, he.core_object_type, he.sample_rate) == ("mp4a.40.5", 2, 24000)
    hev2 = parse_asc(asc((5, 29), (4, 6), (4, 1), (4, 15), (24, 48000), (5, 2)))
    assert (hev2.codec_string, hev2.core_object_type) == ("mp4a.40.29", 2)


@pytest.mark.parametrize(
    "data", [b"\x12", asc((5, 0), (4, 3), (4, 2)), asc((5, 2), (4, 13), (4, 2), (8, 0))]
)
def test_asc_errors(data: bytes) -> None:
    with pytest.raises(MediaError):
        parse_asc(data)


def test_adts_header_fields() -> None:
    config = parse_asc(asc((5, 2), (4, 15), (24, 44100), (4, 2)))  # explicit rate maps to 4
    header = adts_header(config, 300)
    bits = int.from_bytes(header, "big")
    assert bits >> 44 == 0xFFF  # syncword
    assert (bits >> 40) & 1 == 1  # protection_absent
    assert (bits >> 38) & 3 == 1  # profile = AOT - 1 (LC)
    assert (bits >> 34) & 0xF == 4  # 44100
    assert (bits >> 30) & 7 == 2  # channels
    assert (bits >> 13) & 0x1FFF == 307  # frame length includes the header


@pytest.mark.parametrize(
    ("config", "size"),
    [
        (AacConfig(b"", 42, 42, 4, 44100, 2), 10),  # USAC has no ADTS profile
        (AacConfig(b"", 2, 2, 15, 12345, 2), 10),  # explicit rate not in the table
        (AacConfig(b"", 2, 2, 4, 44100, 0), 10),  # channel config 0 needs a PCE
        (AacConfig(b"", 2, 2, 4, 44100, 2), 9000),  # 13-bit frame length
    ],
)
def test_adts_refuses_what_it_cannot_carry(config: AacConfig, size: int) -> None:
    with pytest.raises(MediaError):
        adts_header(config, size)
