"""Codec configuration parsing and bitstream rewrites. Pure functions, no I/O.

- avcC: AVCDecoderConfigurationRecord (ISO/IEC 14496-15 §5.3.3.1).
- SPS: width/height with cropping and VUI frame rate (ITU-T H.264 §7.3.2.1.1, E.1.1).
- AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1) and the ADTS header (§1.A.2.2).
- RFC 6381 §3.3 codec strings, and AVCC (length-prefixed) -> Annex-B (start codes, §B.1).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass


class MediaError(ValueError):
    """Malformed media data; ``reason`` says what was wrong (shown in stats and logs)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# H.264 NAL unit types (ITU-T H.264 Table 7-1).
NAL_IDR = 5
NAL_SEI = 6
NAL_SPS = 7
NAL_PPS = 8
NAL_AUD = 9

START_CODE = b"\x00\x00\x00\x01"

# Profiles whose SPS carries chroma_format_idc and scaling lists (H.264 §7.3.2.1.1).
_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})

# AAC sampling frequencies by index (ISO/IEC 14496-3 Table 1.18); 13, 14 reserved, 15 explicit.
AAC_FREQUENCIES = (
    *(96000, 88200, 64000, 48000, 44100, 32000, 24000),
    *(22050, 16000, 12000, 11025, 8000, 7350),
)

# SBR/PS object types: their ASC adds an extension rate and the core AOT (§1.6.2.1).
_AOT_SBR = 5
_AOT_PS = 29


class BitReader:
    """MSB-first bit reader with Exp-Golomb codes (H.264 §9.1). Running out raises MediaError."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def bits(self, n: int) -> int:
        value = 0
        for _ in range(n):
            byte_index = self._pos >> 3
            if byte_index >= len(self._data):
                raise MediaError("bitstream truncated")
            value = (value << 1) | ((self._data[byte_index] >> (7 - (self._pos & 7))) & 1)
            self._pos += 1
        return value

    def flag(self) -> bool:
        return self.bits(1) == 1

    def ue(self) -> int:
        zeros = 0
        while self.bits(1) == 0:
            zeros += 1
            if zeros > 31:  # a 32-bit ue(v) is the largest H.264 uses
                raise MediaError("exp-Golomb code too long")
        return (1 << zeros) - 1 + self.bits(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


def unescape_rbsp(nal: bytes) -> bytes:
    """Drop emulation-prevention bytes (00 00 03 -> 00 00), H.264 §7.4.1."""
    if b"\x00\x00\x03" not in nal:
        return nal
    out = bytearray()
    zeros = 0
    for b in nal:
        if zeros >= 2 and b == 3:
            zeros = 0
            continue
        out.append(b)
        zeros = zeros + 1 if b == 0 else 0
    return bytes(out)


@dataclass(frozen=True, slots=True)
class SpsInfo:
    profile_idc: int
    level_idc: int
    width: int
    height: int
    frame_rate: float | None  # only when the VUI carries timing info


def _skip_scaling_list(r: BitReader, size: int) -> None:
    last = next_scale = 8
    for _ in range(size):
        if next_scale != 0:
            next_scale = (last + r.se() + 256) % 256
        last = next_scale if next_scale != 0 else last


def parse_sps(nal: bytes) -> SpsInfo:
    """Parse the fields of a sequence parameter set NAL unit we report (H.264 §7.3.2.1.1)."""
    if len(nal) < 4 or nal[0] & 0x1F != NAL_SPS:
        raise MediaError("not an SPS NAL unit")
    r = BitReader(unescape_rbsp(nal[1:]))
    profile = r.bits(8)
    r.bits(8)  # constraint flags
    level = r.bits(8)
    r.ue()  # seq_parameter_set_id
    chroma_format_idc = 1
    separate_colour_plane = False
    if profile in _HIGH_PROFILES:
        chroma_format_idc = r.ue()
        if chroma_format_idc == 3:
            separate_colour_plane = r.flag()
        r.ue()  # bit_depth_luma_minus8
        r.ue()  # bit_depth_chroma_minus8
        r.flag()  # qpprime_y_zero_transform_bypass_flag
        if r.flag():  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma_format_idc != 3 else 12):
                if r.flag():
                    _skip_scaling_list(r, 16 if i < 6 else 64)
    r.ue()  # log2_max_frame_num_minus4
    poc_type = r.ue()
    if poc_type == 0:
        r.ue()
    elif poc_type == 1:
        r.flag()
        r.se()
        r.se()
        for _ in range(r.ue()):
            r.se()
    r.ue()  # max_num_ref_frames
    r.flag()  # gaps_in_frame_num_value_allowed_flag
    width_mbs = r.ue() + 1
    height_map_units = r.ue() + 1
    frame_mbs_only = r.flag()
    if not frame_mbs_only:
        r.flag()  # mb_adaptive_frame_field_flag
    r.flag()  # direct_8x8_inference_flag
    width = width_mbs * 16
    height = (2 - frame_mbs_only) * height_map_units * 16
    if r.flag():  # frame_cropping_flag; crop units from Table 6-1 and eq. 7-19..7-22
        left, right, top, bottom = r.ue(), r.ue(), r.ue(), r.ue()
        chroma_array_type = 0 if separate_colour_plane else chroma_format_idc
        if chroma_array_type == 0:
            crop_x, crop_y = 1, 2 - frame_mbs_only
        else:
            sub_w = 1 if chroma_format_idc == 3 else 2
            sub_h = 2 if chroma_format_idc == 1 else 1
            crop_x, crop_y = sub_w, sub_h * (2 - frame_mbs_only)
        width -= (left + right) * crop_x
        height -= (top + bottom) * crop_y
    if width <= 0 or height <= 0:
        raise MediaError("SPS cropping exceeds the picture size")
    return SpsInfo(profile, level, width, height, _vui_frame_rate(r))


def _vui_frame_rate(r: BitReader) -> float | None:
    """Frame rate from VUI timing (H.264 §E.1.1); None when absent or unreadable."""
    try:
        if not r.flag():  # vui_parameters_present_flag
            return None
        if r.flag() and r.bits(8) == 255:  # aspect_ratio_info, Extended_SAR
            r.bits(32)
        if r.flag():  # overscan_info_present_flag
            r.flag()
        if r.flag():  # video_signal_type_present_flag
            r.bits(4)
            if r.flag():
                r.bits(24)
        if r.flag():  # chroma_loc_info_present_flag
            r.ue()
            r.ue()
        if not r.flag():  # timing_info_present_flag
            return None
        num_units_in_tick = r.bits(32)
        time_scale = r.bits(32)
    except MediaError:
        return None
    if num_units_in_tick == 0 or time_scale == 0:
        return None
    # One frame is two field ticks (E.2.1, eq. C-1 with the usual field-based timing).
    return round(time_scale / (2 * num_units_in_tick), 3)


@dataclass(frozen=True, slots=True)
class AvcConfig:
    """A parsed AVCDecoderConfigurationRecord plus what its first SPS tells us."""

    record: bytes
    profile: int
    compatibility: int
    level: int
    nal_length_size: int
    sps: tuple[bytes, ...]
    pps: tuple[bytes, ...]
    info: SpsInfo
    fourcc: str = "avc1"

    @property
    def codec_string(self) -> str:
        """RFC 6381 §3.3: avc1.PPCCLL from avcC bytes 1..3, lowercase hex."""
        return f"avc1.{self.profile:02x}{self.compatibility:02x}{self.level:02x}"


def parse_avcc(record: bytes) -> AvcConfig:
    """Parse an AVCDecoderConfigurationRecord (ISO/IEC 14496-15 §5.3.3.1.2)."""
    if len(record) < 7:
        raise MediaError(f"avcC too short ({len(record)} bytes)")
    if record[0] != 1:
        raise MediaError(f"avcC configurationVersion {record[0]} is not 1")
    nal_length_size = (record[4] & 0x03) + 1
    if nal_length_size == 3:
        raise MediaError("avcC lengthSizeMinusOne 2 is invalid")
    pos = 5
    lists: list[tuple[bytes, ...]] = []
    for count_mask in (0x1F, 0xFF):
        if pos >= len(record):
            raise MediaError("avcC truncated in parameter set list")
        count = record[pos] & count_mask
        pos += 1
        items = []
        for _ in range(count):
            if pos + 2 > len(record):
                raise MediaError("avcC truncated in parameter set length")
            size = int.from_bytes(record[pos : pos + 2], "big")
            pos += 2
            if size == 0 or pos + size > len(record):
                raise MediaError("avcC parameter set overruns the record")
            items.append(bytes(record[pos : pos + size]))
            pos += size
        lists.append(tuple(items))
    sps, pps = lists
    if not sps or not pps:
        raise MediaError("avcC has no SPS or no PPS")
    return AvcConfig(
        record=bytes(record),
        profile=record[1],
        compatibility=record[2],
        level=record[3],
        nal_length_size=nal_length_size,
        sps=sps,
        pps=pps,
        info=parse_sps(sps[0]),
    )


def _nal_spans(data: bytes, nal_length_size: int) -> Iterator[tuple[int, int]]:
    """(start, end) of each length-prefixed (AVCC) NAL unit (ISO/IEC 14496-15 §5.3.4.2)."""
    pos, end = 0, len(data)
    while pos < end:
        if pos + nal_length_size > end:
            raise MediaError("NAL length prefix truncated")
        size = int.from_bytes(data[pos : pos + nal_length_size], "big")
        pos += nal_length_size
        if size == 0 or pos + size > end:
            raise MediaError(f"NAL unit of {size} bytes overruns the frame")
        yield pos, pos + size
        pos += size


def iter_nal_units(data: bytes, nal_length_size: int) -> Iterator[bytes]:
    """Split length-prefixed (AVCC) NAL units (ISO/IEC 14496-15 §5.3.4.2)."""
    for start, end in _nal_spans(data, nal_length_size):
        yield data[start:end]


def avcc_to_annexb(data: bytes, config: AvcConfig) -> tuple[bytes, bool]:
    """AVCC frame -> Annex-B, inserting SPS/PPS before an IDR that lacks them in-band.

    Returns (annex_b_bytes, has_idr). MPEG-TS carries H.264 as Annex-B (ISO/IEC 13818-1 §2.14) and a
    segment must be decodable alone, so every IDR needs its parameter sets in front.
    """
    # One join over views of the frame: each NAL unit is copied once (frames are ~10-150 kB).
    view = memoryview(data)
    parts: list[bytes | memoryview] = []
    seen_sps = False
    has_idr = False
    for start, end in _nal_spans(data, config.nal_length_size):
        nal_type = data[start] & 0x1F
        if nal_type == NAL_SPS:
            seen_sps = True
        elif nal_type == NAL_IDR and not has_idr:
            has_idr = True
            if not seen_sps:
                for ps in (*config.sps, *config.pps):
                    parts += (START_CODE, ps)
        parts += (START_CODE, view[start:end])
    return b"".join(parts), has_idr


@dataclass(frozen=True, slots=True)
class AacConfig:
    """A parsed AudioSpecificConfig; ``object_type`` is the core AOT ADTS can carry."""

    config: bytes
    object_type: int  # signalled AOT (5 = SBR, 29 = PS, 2 = LC, ...) used in the codec string
    core_object_type: int  # AOT of the AAC core (differs from object_type for SBR/PS)
    frequency_index: int  # 15 = explicit (no ADTS index exists for it unless it maps to the table)
    sample_rate: int
    channels: int
    fourcc: str = "mp4a"

    @property
    def codec_string(self) -> str:
        """RFC 6381 §3.3 with the MP4 registration: mp4a.40.<audio object type>."""
        return f"mp4a.40.{self.object_type}"


def _read_aot(r: BitReader) -> int:
    aot = r.bits(5)
    return 32 + r.bits(6) if aot == 31 else aot  # escape value (§1.6.2.1 GetAudioObjectType)


def _read_frequency(r: BitReader) -> tuple[int, int]:
    index = r.bits(4)
    if index == 15:
        return index, r.bits(24)
    if index >= len(AAC_FREQUENCIES):
        raise MediaError(f"reserved AAC sampling frequency index {index}")
    return index, AAC_FREQUENCIES[index]


def parse_asc(config: bytes) -> AacConfig:
    """Parse the head of an AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1)."""
    if len(config) < 2:
        raise MediaError(f"AudioSpecificConfig too short ({len(config)} bytes)")
    r = BitReader(config)
    aot = _read_aot(r)
    if aot == 0:
        raise MediaError("AudioSpecificConfig object type 0 is invalid")
    index, rate = _read_frequency(r)
    channels = r.bits(4)
    core = aot
    if aot in (_AOT_SBR, _AOT_PS):  # explicit hierarchical signalling: the core runs at `rate`
        if r.bits(4) == 15:  # extensionSamplingFrequencyIndex: the output rate, not needed
            r.bits(24)
        core = _read_aot(r)
    if rate == 0:
        raise MediaError("AudioSpecificConfig sample rate 0")
    return AacConfig(bytes(config), aot, core, index, rate, channels)


ADTS_HEADER_SIZE = 7
_ADTS_MAX_FRAME = (1 << 13) - 1  # aac_frame_length is 13 bits and includes the header


def adts_header(config: AacConfig, payload_size: int) -> bytes:
    """7-byte ADTS header (no CRC) for one raw AAC frame (ISO/IEC 14496-3 §1.A.2.2.1)."""
    if not 1 <= config.core_object_type <= 4:
        raise MediaError(f"AAC object type {config.core_object_type} cannot be carried in ADTS")
    index = config.frequency_index
    if index == 15:  # explicit rate: ADTS has only the index table
        if config.sample_rate not in AAC_FREQUENCIES:
            raise MediaError(f"AAC sample rate {config.sample_rate} has no ADTS index")
        index = AAC_FREQUENCIES.index(config.sample_rate)
    if not 1 <= config.channels <= 7:
        # channel_configuration 0 needs an in-band PCE, which a raw FLV frame does not carry.
        raise MediaError(f"AAC channel configuration {config.channels} cannot be carried in ADTS")
    length = payload_size + ADTS_HEADER_SIZE
    if length > _ADTS_MAX_FRAME:
        raise MediaError(f"AAC frame of {payload_size} bytes too long for ADTS")
    profile = config.core_object_type - 1
    return bytes(
        (
            0xFF,
            0xF1,  # syncword, MPEG-4, layer 0, protection_absent
            (profile << 6) | (index << 2) | (config.channels >> 2),
            ((config.channels & 3) << 6) | (length >> 11),
            (length >> 3) & 0xFF,
            ((length & 7) << 5) | 0x1F,  # buffer fullness 0x7FF (VBR)
            0xFC,  # buffer fullness low bits, one raw data block
        )
    )


# --- Enhanced RTMP video and audio codecs (veovera E-RTMP v1/v2 FourCCs) ----------------------
#
# Each configuration keeps the record of the sequence start as is: the fMP4 sample entry holds it
# unchanged (hvcC, av1C, vpcC); Opus gets a dOps built from its OpusHead.

HEVC_NAL_VPS = 32
HEVC_NAL_SPS = 33
HEVC_NAL_PPS = 34


@dataclass(frozen=True, slots=True)
class HevcConfig:
    """A parsed HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 §8.3.3.1) and its first SPS."""

    record: bytes
    profile_space: int
    tier: int
    profile: int
    compatibility: int  # general_profile_compatibility_flags, 32 bits
    constraints: bytes  # general_constraint_indicator_flags, 6 bytes
    level: int
    nal_length_size: int
    parameter_sets: tuple[bytes, ...]  # VPS, SPS, PPS NAL units in record order
    info: SpsInfo
    fourcc: str = "hvc1"

    @property
    def codec_string(self) -> str:
        """ISO/IEC 14496-15 Annex E.3: hvc1.[ABC]P.<compat reversed, hex>.<L|H>LEVEL.<bytes>."""
        space = ("", "A", "B", "C")[self.profile_space]
        reversed_flags = int(f"{self.compatibility:032b}"[::-1], 2)
        constraints = self.constraints.rstrip(b"\x00")
        tail = "".join(f".{b:02X}" for b in constraints)
        tier = "H" if self.tier else "L"
        return f"hvc1.{space}{self.profile}.{reversed_flags:X}.{tier}{self.level}{tail}"


def parse_hvcc(record: bytes) -> HevcConfig:
    """Parse an HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 §8.3.3.1.2)."""
    if len(record) < 23:
        raise MediaError(f"hvcC too short ({len(record)} bytes)")
    if record[0] != 1:
        raise MediaError(f"hvcC configurationVersion {record[0]} is not 1")
    nal_length_size = (record[21] & 0x03) + 1
    if nal_length_size == 3:
        raise MediaError("hvcC lengthSizeMinusOne 2 is invalid")
    pos, sets, sps = 23, [], None
    for _ in range(record[22]):  # numOfArrays
        if pos + 3 > len(record):
            raise MediaError("hvcC truncated in NAL unit array")
        nal_type, count = record[pos] & 0x3F, int.from_bytes(record[pos + 1 : pos + 3], "big")
        pos += 3
        for _ in range(count):
            if pos + 2 > len(record):
                raise MediaError("hvcC truncated in NAL unit length")
            size = int.from_bytes(record[pos : pos + 2], "big")
            pos += 2
            if size == 0 or pos + size > len(record):
                raise MediaError("hvcC NAL unit overruns the record")
            nal = bytes(record[pos : pos + size])
            pos += size
            sets.append(nal)
            if nal_type == HEVC_NAL_SPS and sps is None:
                sps = nal
    if sps is None:
        raise MediaError("hvcC has no SPS")
    b1 = record[1]
    return HevcConfig(
        record=bytes(record),
        profile_space=b1 >> 6,
        tier=(b1 >> 5) & 1,
        profile=b1 & 0x1F,
        compatibility=int.from_bytes(record[2:6], "big"),
        constraints=bytes(record[6:12]),
        level=record[12],
        nal_length_size=nal_length_size,
        parameter_sets=tuple(sets),
        info=parse_hevc_sps(sps, int.from_bytes(record[19:21], "big")),
    )


def parse_hevc_sps(nal: bytes, avg_frame_rate: int = 0) -> SpsInfo:
    """Picture size of an HEVC SPS (ITU-T H.265 §7.3.2.2.1, profile_tier_level §7.3.3).

    The frame rate is the hvcC's avgFrameRate (frames per 256 s) when set; the VUI is not read.
    """
    if len(nal) < 3 or (nal[0] >> 1) & 0x3F != HEVC_NAL_SPS:
        raise MediaError("not an HEVC SPS NAL unit")
    r = BitReader(unescape_rbsp(nal[2:]))
    r.bits(4)  # sps_video_parameter_set_id
    sub_layers = r.bits(3)  # sps_max_sub_layers_minus1
    r.bits(1)  # sps_temporal_id_nesting_flag
    r.bits(8)  # general_profile_space, tier, profile_idc
    r.bits(32)  # general_profile_compatibility_flags
    r.bits(48)  # progressive .. inbld flags (4 + 43 + 1)
    level = r.bits(8)
    present = [(r.flag(), r.flag()) for _ in range(sub_layers)]
    if sub_layers > 0:
        r.bits(2 * (8 - sub_layers))  # reserved_zero_2bits
    for profile_present, level_present in present:
        r.bits((88 if profile_present else 0) + (8 if level_present else 0))
    r.ue()  # sps_seq_parameter_set_id
    chroma = r.ue()
    separate = r.flag() if chroma == 3 else False
    width, height = r.ue(), r.ue()
    if r.flag():  # conformance_window_flag; offsets in chroma units (§7.4.3.2.1)
        left, right, top, bottom = r.ue(), r.ue(), r.ue(), r.ue()
        sub_w = 2 if chroma in (1, 2) and not separate else 1
        sub_h = 2 if chroma == 1 and not separate else 1
        width -= (left + right) * sub_w
        height -= (top + bottom) * sub_h
    if width <= 0 or height <= 0:
        raise MediaError("HEVC SPS picture size is empty")
    rate = round(avg_frame_rate / 256, 3) if avg_frame_rate else None
    return SpsInfo(0, level, width, height, rate)


def hevc_has_irap(data: bytes, nal_length_size: int) -> bool:
    """Whether a length-prefixed access unit holds an IRAP picture (H.265 §7.4.2.2: types 16-23)."""
    return any(16 <= (data[s] >> 1) & 0x3F <= 23 for s, _ in _nal_spans(data, nal_length_size))


HEVC_NAL_AUD = 35


def hevc_to_annexb(data: bytes, config: HevcConfig) -> tuple[bytes, bool]:
    """hvcC-style access unit -> Annex-B, VPS/SPS/PPS in front of an IRAP that lacks them in-band.

    Returns (annex_b_bytes, has_irap). MPEG-TS carries HEVC as Annex-B byte stream (ISO/IEC 13818-1
    §2.17, H.265 Annex B) and a segment must be decodable alone. The parameter sets go after a
    leading AUD and before everything else (H.265 §7.4.2.4.4 order within an access unit).
    """
    view = memoryview(data)
    spans = list(_nal_spans(data, config.nal_length_size))
    types = [(data[start] >> 1) & 0x3F for start, _ in spans]
    has_irap = any(16 <= t <= 23 for t in types)  # §7.4.2.2: BLA, IDR, CRA and reserved IRAP
    parts: list[bytes | memoryview] = []
    if has_irap and HEVC_NAL_SPS not in types:
        at = 1 if types[0] == HEVC_NAL_AUD else 0
        for start, end in spans[:at]:
            parts += (START_CODE, view[start:end])
        sets = config.parameter_sets
        for nal_type in (HEVC_NAL_VPS, HEVC_NAL_SPS, HEVC_NAL_PPS):  # not the record's SEI arrays
            for ps in sets:
                if (ps[0] >> 1) & 0x3F == nal_type:
                    parts += (START_CODE, ps)
        spans = spans[at:]
    for start, end in spans:
        parts += (START_CODE, view[start:end])
    return b"".join(parts), has_irap


# AV1 OBU types (AV1 bitstream spec §6.2.2).
_OBU_SEQUENCE_HEADER = 1
_OBU_TEMPORAL_DELIMITER = 2
_OBU_FRAME_HEADER = 3
_OBU_FRAME = 6


def _leb128(data: bytes, pos: int) -> tuple[int, int]:
    """AV1 §4.10.5 leb128(): (value, position after it)."""
    value = 0
    for i in range(8):
        if pos >= len(data):
            raise MediaError("AV1 leb128 truncated")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, pos
    raise MediaError("AV1 leb128 too long")


def iter_obus(data: bytes) -> Iterator[tuple[int, int, int]]:
    """(obu_type, payload start, payload end) of each OBU of a low-overhead stream (AV1 §5.3)."""
    pos = 0
    while pos < len(data):
        header = data[pos]
        obu_type, extension, has_size = (header >> 3) & 0x0F, header & 0x04, header & 0x02
        pos += 2 if extension else 1
        if not has_size:  # the last OBU runs to the end (AV1-ISOBMFF §2.4 wants sizes)
            yield obu_type, pos, len(data)
            return
        size, pos = _leb128(data, pos)
        if pos + size > len(data):
            raise MediaError("AV1 OBU overruns the frame")
        yield obu_type, pos, pos + size
        pos += size


def _uvlc(r: BitReader) -> int:
    zeros = 0
    while not r.flag():
        zeros += 1
        if zeros >= 32:
            raise MediaError("AV1 uvlc too long")
    return (1 << zeros) - 1 + r.bits(zeros) if zeros else 0


def parse_av1_sequence_header(payload: bytes) -> SpsInfo:
    """Profile, level, picture size and frame rate of a sequence header OBU (AV1 §5.5.1)."""
    r = BitReader(payload)
    profile = r.bits(3)
    r.bits(1)  # still_picture
    rate = None
    if r.flag():  # reduced_still_picture_header
        level = r.bits(5)
    else:
        decoder_model = False
        buffer_delay_bits = 0
        if r.flag():  # timing_info_present_flag (§5.5.3)
            units, scale = r.bits(32), r.bits(32)
            ticks = _uvlc(r) + 1 if r.flag() else 0  # equal_picture_interval
            if units and scale and ticks:
                rate = round(scale / (units * ticks), 3)
            decoder_model = r.flag()
            if decoder_model:  # decoder_model_info (§5.5.4)
                buffer_delay_bits = r.bits(5) + 1
                r.bits(32 + 5 + 5)
        display_delay = r.flag()  # initial_display_delay_present_flag
        level = 0
        for i in range(r.bits(5) + 1):  # operating points
            r.bits(12)  # operating_point_idc
            seq_level = r.bits(5)
            if i == 0:
                level = seq_level
            if seq_level > 7:
                r.bits(1)  # seq_tier
            if decoder_model and r.flag():
                r.bits(2 * buffer_delay_bits + 1)
            if display_delay and r.flag():
                r.bits(4)
    width_bits, height_bits = r.bits(4) + 1, r.bits(4) + 1
    width, height = r.bits(width_bits) + 1, r.bits(height_bits) + 1
    return SpsInfo(profile, level, width, height, rate)


def av1_sequence_info(data: bytes) -> SpsInfo | None:
    """The sequence header of an OBU stream (configOBUs or a key frame), if it has one."""
    for obu_type, start, end in iter_obus(data):
        if obu_type == _OBU_SEQUENCE_HEADER:
            return parse_av1_sequence_header(data[start:end])
    return None


def av1_is_key(data: bytes) -> bool:
    """Whether a temporal unit shows a key frame (AV1 §5.9.2: show_existing_frame 0, frame_type 0).

    Streams with reduced_still_picture_header (every frame a key frame) are not sent live.
    """
    for obu_type, start, end in iter_obus(data):
        if obu_type in (_OBU_FRAME, _OBU_FRAME_HEADER) and start < end:
            return data[start] & 0xE0 == 0  # show_existing_frame f(1), frame_type f(2)
    return False


def strip_temporal_delimiter(data: bytes) -> bytes:
    """AV1-ISOBMFF §2.4: samples should carry no temporal delimiter OBU (FLV ones start so)."""
    return data[2:] if data[:2] == b"\x12\x00" else data


@dataclass(frozen=True, slots=True)
class Av1Config:
    """An AV1CodecConfigurationRecord (AV1-ISOBMFF §2.3.3) and its sequence header's picture."""

    record: bytes
    profile: int
    level: int
    tier: int
    bit_depth: int
    info: SpsInfo  # width/height 0 until a sequence header was seen (none in configOBUs)
    fourcc: str = "av01"

    @property
    def codec_string(self) -> str:
        """AV1-ISOBMFF "Codecs Parameter String": av01.P.LLT.DD (optional fields left out)."""
        tier = "H" if self.tier else "M"
        return f"av01.{self.profile}.{self.level:02d}{tier}.{self.bit_depth:02d}"


def parse_av1c(record: bytes) -> Av1Config:
    """Parse an AV1CodecConfigurationRecord (AV1-ISOBMFF §2.3.3)."""
    if len(record) < 4:
        raise MediaError(f"av1C too short ({len(record)} bytes)")
    if record[0] != 0x81:
        raise MediaError(f"av1C marker/version byte {record[0]:#04x} is not 0x81")
    b2 = record[2]
    bit_depth = (12 if b2 & 0x20 else 10) if b2 & 0x40 else 8  # high_bitdepth, twelve_bit
    info = av1_sequence_info(record[4:]) or SpsInfo(record[1] >> 5, record[1] & 0x1F, 0, 0, None)
    return Av1Config(bytes(record), record[1] >> 5, record[1] & 0x1F, b2 >> 7, bit_depth, info)


@dataclass(frozen=True, slots=True)
class Vp9Config:
    """A VPCodecConfigurationRecord, version 1 (VP Codec ISO Media File Format §2.2).

    It has no picture size: that comes from the first key frame's header (``vp9_frame_size``).
    """

    record: bytes  # the vpcC FullBox payload: version, flags, then the record
    profile: int
    level: int
    bit_depth: int
    info: SpsInfo
    fourcc: str = "vp09"

    @property
    def codec_string(self) -> str:
        """VP codec ISO media file format "Codecs Parameter String": vp09.PP.LL.DD."""
        return f"vp09.{self.profile:02d}.{self.level:02d}.{self.bit_depth:02d}"


def parse_vpcc(record: bytes) -> Vp9Config:
    """Parse the vpcC payload an E-RTMP vp09 SequenceStart carries (version 1, §2.2)."""
    if len(record) < 12:
        raise MediaError(f"vpcC too short ({len(record)} bytes)")
    if record[0] != 1:
        raise MediaError(f"vpcC version {record[0]} is not 1")
    profile, level = record[4], record[5]
    return Vp9Config(
        bytes(record), profile, level, record[6] >> 4, SpsInfo(profile, level, 0, 0, None)
    )


def vp9_frame_size(data: bytes) -> tuple[int, int] | None:
    """Picture size of a VP9 key frame (VP9 spec §6.2 uncompressed_header); None if not a key
    frame. A superframe starts with its first frame, so the start of the data is enough."""
    r = BitReader(data)
    if r.bits(2) != 2:  # frame_marker
        raise MediaError("VP9 frame marker missing")
    profile = r.bits(1) | (r.bits(1) << 1)
    if profile == 3:
        r.bits(1)
    if r.flag() or r.flag():  # show_existing_frame; frame_type 1 = NON_KEY_FRAME
        return None
    r.bits(2)  # show_frame, error_resilient_mode
    if r.bits(24) != 0x498342:
        raise MediaError("VP9 key frame sync code missing")
    if profile >= 2:
        r.bits(1)  # ten_or_twelve_bit
    if r.bits(3) != 7:  # color_space != CS_RGB
        r.bits(1)  # color_range
        if profile in (1, 3):
            r.bits(3)  # subsampling_x, subsampling_y, reserved_zero
    elif profile in (1, 3):
        r.bits(1)
    return r.bits(16) + 1, r.bits(16) + 1


def vp9_is_key(data: bytes) -> bool:
    """VP9 §6.2: a frame not showing an existing one with frame_type 0 (KEY_FRAME)."""
    r = BitReader(data[:2])
    try:
        if r.bits(2) != 2:  # frame_marker
            return False
        if r.bits(1) | (r.bits(1) << 1) == 3:  # profile 3 has a reserved bit
            r.bits(1)
        return not r.flag() and not r.flag()  # show_existing_frame, frame_type
    except MediaError:
        return False


OPUS_RATE = 48_000  # Opus in ISOBMFF §4.3: the media timescale is 48 kHz


@dataclass(frozen=True, slots=True)
class OpusConfig:
    """An OpusHead (RFC 7845 §5.1) from the E-RTMP Opus SequenceStart."""

    config: bytes
    channels: int
    pre_skip: int
    input_rate: int
    gain: int
    mapping: bytes  # ChannelMappingFamily and, for family != 0, its table
    sample_rate: int = OPUS_RATE
    fourcc: str = "Opus"

    @property
    def codec_string(self) -> str:
        """The mp4 registration's codecs value for Opus (Opus in ISOBMFF §4.5): "Opus"."""
        return "Opus"

    def dops(self) -> bytes:
        """dOps payload (Opus in ISOBMFF §4.3.2): the OpusHead's fields, big endian, version 0."""
        return (
            bytes((0, self.channels))
            + self.pre_skip.to_bytes(2, "big")
            + self.input_rate.to_bytes(4, "big")
            + self.gain.to_bytes(2, "big", signed=True)
            + self.mapping
        )


def parse_opus_head(head: bytes) -> OpusConfig:
    """Parse an OpusHead identification header (RFC 7845 §5.1; fields little endian)."""
    if len(head) < 19 or head[:8] != b"OpusHead":
        raise MediaError("Opus sequence start is not an OpusHead")
    if head[8] >> 4:
        raise MediaError(f"OpusHead version {head[8]} not supported")
    channels, family = head[9], head[18]
    if channels == 0:
        raise MediaError("OpusHead has 0 channels")
    mapping = head[18:19]
    if family != 0:
        if len(head) < 21 + channels:
            raise MediaError("OpusHead channel mapping table truncated")
        mapping = head[18 : 21 + channels]
    return OpusConfig(
        config=bytes(head),
        channels=channels,
        pre_skip=int.from_bytes(head[10:12], "little"),
        input_rate=int.from_bytes(head[12:16], "little"),
        gain=int.from_bytes(head[16:18], "little", signed=True),
        mapping=bytes(mapping),
    )


# Frame sizes at 48 kHz by TOC config (RFC 6716 §3.1 Table 2): SILK, hybrid, CELT.
_OPUS_FRAME = (*(480, 960, 1920, 2880) * 3, *(480, 960) * 2, *(120, 240, 480, 960) * 4)


def opus_samples(packet: bytes) -> int:
    """Samples (48 kHz) of an Opus packet from its TOC byte (RFC 6716 §3.1); 960 if empty."""
    if not packet:
        return 960
    toc = packet[0]
    code = toc & 0x03
    frames = 1 if code == 0 else 2 if code < 3 else (packet[1] & 0x3F if len(packet) > 1 else 1)
    return _OPUS_FRAME[toc >> 3] * max(frames, 1)


# --- FLAC, AC-3, E-AC-3 and MP3 (E-RTMP v2 FourCCs fLaC, ac-3, ec-3, .mp3; MP3 also legacy) ---
#
# FLAC's sequence start is its STREAMINFO; AC-3, E-AC-3 and MP3 have none (E-RTMP v2: their frames
# describe themselves), so their configuration is read off each frame's header. ``config`` is the
# part of it that defines the track: a change there is a new configuration, while per-frame fields
# (CRCs, MP3 bitrate and padding, FLAC's running totals) are left out.

FLAC_STREAMINFO_SIZE = 34
_FLAC_STREAMINFO = 0  # BLOCK_TYPE of STREAMINFO (FLAC format §METADATA_BLOCK_HEADER)


@dataclass(frozen=True, slots=True)
class FlacConfig:
    """A FLAC STREAMINFO (xiph FLAC format §METADATA_BLOCK_STREAMINFO) from the fLaC sequence
    start, with the fields that change while encoding (frame sizes, total samples, MD5) zeroed:
    0 is their "unknown" value, and FFmpeg resends STREAMINFO with them filled at the end."""

    config: bytes  # the 34-byte STREAMINFO as kept (see above)
    min_block: int
    max_block: int
    sample_rate: int
    channels: int
    bits_per_sample: int
    fourcc: str = "fLaC"

    @property
    def codec_string(self) -> str:
        """FLAC in ISOBMFF §3.3 (and the MP4 registration): "fLaC"."""
        return "fLaC"

    def dfla(self) -> bytes:
        """dfLa payload after the FullBox header (FLAC in ISOBMFF §3.3.2): the STREAMINFO
        metadata block, flagged as the last one (last-metadata-block 1, BLOCK_TYPE 0)."""
        return bytes((0x80 | _FLAC_STREAMINFO,)) + len(self.config).to_bytes(3, "big") + self.config


def parse_flac_streaminfo(data: bytes) -> FlacConfig:
    """Parse the STREAMINFO an E-RTMP fLaC SequenceStart carries (34 bytes; a leading "fLaC"
    marker and metadata block header are accepted too)."""
    if data[:4] == b"fLaC":
        data = data[4:]
    if len(data) >= 4 + FLAC_STREAMINFO_SIZE and data[0] & 0x7F == _FLAC_STREAMINFO:
        data = data[4:]  # METADATA_BLOCK_HEADER
    if len(data) < FLAC_STREAMINFO_SIZE:
        raise MediaError(f"FLAC STREAMINFO too short ({len(data)} bytes)")
    info = data[:FLAC_STREAMINFO_SIZE]
    min_block, max_block = int.from_bytes(info[0:2], "big"), int.from_bytes(info[2:4], "big")
    packed = int.from_bytes(info[10:13], "big")  # rate 20 bits, channels-1 3, (bps-1) high bit
    rate = packed >> 4
    channels = ((packed >> 1) & 0x07) + 1
    bits = (((packed & 1) << 4) | (info[13] >> 4)) + 1
    if rate == 0:
        raise MediaError("FLAC STREAMINFO sample rate 0")
    if min_block < 16 or max_block < min_block:
        raise MediaError(f"FLAC STREAMINFO block sizes {min_block}..{max_block} invalid")
    kept = info[:4] + bytes(6) + info[10:13] + bytes(((info[13] & 0xF0),)) + bytes(20)
    return FlacConfig(kept, min_block, max_block, rate, channels, bits)


def flac_block_size(frame: bytes) -> int:
    """Samples of a FLAC frame from its header (FLAC format §FRAME_HEADER)."""
    if len(frame) < 5 or frame[0] != 0xFF or frame[1] & 0xFE != 0xF8:
        raise MediaError("FLAC frame sync code missing")
    code = frame[2] >> 4
    if code == 1:
        return 192
    if 2 <= code <= 5:
        return 576 << (code - 2)
    if code >= 8:
        return 256 << (code - 8)
    if code == 0:
        raise MediaError("FLAC frame block size code 0 is reserved")
    # 6, 7: (block size - 1) in 8 or 16 bits after the UTF-8 coded frame/sample number.
    lead = frame[4]
    extra = 0
    while extra < 7 and lead & (0x80 >> extra):
        extra += 1
    pos = 4 + max(extra, 1)
    size = 1 if code == 6 else 2
    if len(frame) < pos + size:
        raise MediaError("FLAC frame header truncated")
    return int.from_bytes(frame[pos : pos + size], "big") + 1


# AC-3 (ATSC A/52 §5.4.1): sample rate by fscod; channels by acmod (Table 5.8), plus the LFE.
_AC3_RATES = (48_000, 44_100, 32_000)
_ACMOD_CHANNELS = (2, 1, 2, 3, 3, 4, 4, 5)
AC3_FRAME_SAMPLES = 1536  # six blocks of 256 samples (A/52 §5.1)
_AC3_SYNC = b"\x0b\x77"


@dataclass(frozen=True, slots=True)
class Ac3Config:
    """An AC-3 stream's parameters, as the dac3 box holds them (ETSI TS 102 366 §F.4)."""

    config: bytes  # the dac3 payload (3 bytes)
    sample_rate: int
    channels: int
    fourcc: str = "ac-3"

    @property
    def codec_string(self) -> str:
        """ETSI TS 102 366 §F.2 / the MP4 registration: "ac-3"."""
        return "ac-3"


def parse_ac3_frame(frame: bytes) -> Ac3Config:
    """The configuration of an AC-3 syncframe: syncinfo and bsi's head (A/52 §5.4.1, §5.4.2)."""
    if len(frame) < 8 or frame[:2] != _AC3_SYNC:
        raise MediaError("AC-3 syncword missing")
    fscod, frmsizecod = frame[4] >> 6, frame[4] & 0x3F
    if fscod == 3 or frmsizecod > 37:
        raise MediaError(f"AC-3 fscod {fscod} / frmsizecod {frmsizecod} reserved")
    r = BitReader(frame[5:8])
    bsid, bsmod, acmod = r.bits(5), r.bits(3), r.bits(3)
    if bsid > 10:  # 16 is E-AC-3 (A/52 Annex E)
        raise MediaError(f"AC-3 bsid {bsid} is not AC-3")
    if acmod & 1 and acmod != 1:
        r.bits(2)  # cmixlev
    if acmod & 4:
        r.bits(2)  # surmixlev
    if acmod == 2:
        r.bits(2)  # dsurmod
    lfeon = r.bits(1)
    # dac3: fscod(2) bsid(5) bsmod(3) acmod(3) lfeon(1) bit_rate_code(5) reserved(5).
    packed = (fscod << 22) | (bsid << 17) | (bsmod << 14) | (acmod << 11) | (lfeon << 10)
    packed |= (frmsizecod >> 1) << 5
    return Ac3Config(packed.to_bytes(3, "big"), _AC3_RATES[fscod], _ACMOD_CHANNELS[acmod] + lfeon)


_EAC3_BLOCKS = (1, 2, 3, 6)  # by numblkscod (A/52 Table E1.3)
_EAC3_HALF_RATES = (24_000, 22_050, 16_000)  # by fscod2 (A/52 Table E1.2)


@dataclass(frozen=True, slots=True)
class Eac3Config:
    """An E-AC-3 stream's parameters, as the dec3 box holds them (ETSI TS 102 366 §F.6)."""

    config: bytes  # the dec3 payload
    sample_rate: int
    channels: int
    fourcc: str = "ec-3"

    @property
    def codec_string(self) -> str:
        """ETSI TS 102 366 §F.2 / the MP4 registration: "ec-3"."""
        return "ec-3"


@dataclass(frozen=True, slots=True)
class _Eac3Frame:
    strmtyp: int
    substreamid: int
    size: int  # bytes
    sample_rate: int
    blocks: int
    acmod: int
    lfeon: int
    bsid: int
    bsmod: int
    fscod: int


def _eac3_syncframe(data: bytes, pos: int) -> _Eac3Frame:
    """One E-AC-3 syncframe header (A/52 §E.1.2.1 syncinfo, §E.1.2.2 bsi)."""
    if data[pos : pos + 2] != _AC3_SYNC or len(data) < pos + 6:
        raise MediaError("E-AC-3 syncword missing")
    r = BitReader(data[pos + 2 : pos + 16])
    strmtyp, substreamid, frmsiz = r.bits(2), r.bits(3), r.bits(11)
    fscod = r.bits(2)
    if fscod == 3:
        fscod2 = r.bits(2)
        if fscod2 == 3:
            raise MediaError("E-AC-3 fscod2 3 is reserved")
        rate, numblkscod = _EAC3_HALF_RATES[fscod2], 3
    else:
        rate, numblkscod = _AC3_RATES[fscod], r.bits(2)
    acmod, lfeon, bsid = r.bits(3), r.bits(1), r.bits(5)
    if not 11 <= bsid <= 16:
        raise MediaError(f"E-AC-3 bsid {bsid} is not E-AC-3")
    if strmtyp == 3:
        raise MediaError("E-AC-3 strmtyp 3 is reserved")
    bsmod = 0
    try:
        r.bits(5)  # dialnorm
        if r.flag():
            r.bits(8)  # compr
        if acmod == 0:
            r.bits(5)
            if r.flag():
                r.bits(8)
        if strmtyp == 1 and r.flag():
            r.bits(16)  # chanmap
        # bsmod sits in the informational metadata after the mixing metadata, whose length
        # depends on many fields; without mixing metadata it is close, else "main service" (0).
        if not r.flag() and r.flag():  # mixmdate 0, infomdate 1
            bsmod = r.bits(3)
    except MediaError:
        bsmod = 0
    size = (frmsiz + 1) * 2
    return _Eac3Frame(
        strmtyp, substreamid, size, rate, _EAC3_BLOCKS[numblkscod], acmod, lfeon, bsid, bsmod,
        fscod,
    )  # fmt: skip


# Syncframes in one E-AC-3 access unit: up to 8 independent substreams with up to 8 dependent
# ones each (A/52 §E.1.2.1: substreamid 3 bits, Annex E §E.3.8); more is not a real stream, and
# bounds the work a hostile tag of tiny frames can cause.
MAX_EAC3_SYNCFRAMES = 72
_EAC3_MIN_FRAME = 8  # syncinfo and the head of bsi (A/52 §E.1.2.1, §E.1.2.2)


def _eac3_syncframes(data: bytes) -> list[_Eac3Frame]:
    frames: list[_Eac3Frame] = []
    pos = 0
    while pos < len(data):
        if len(frames) == MAX_EAC3_SYNCFRAMES:
            raise MediaError(f"E-AC-3 access unit of more than {MAX_EAC3_SYNCFRAMES} syncframes")
        frame = _eac3_syncframe(data, pos)
        if frame.size < _EAC3_MIN_FRAME:
            raise MediaError(f"E-AC-3 syncframe of {frame.size} bytes is too short")
        frames.append(frame)
        pos += frame.size
    if not frames:
        raise MediaError("empty E-AC-3 frame")
    return frames


def parse_eac3_frame(data: bytes) -> Eac3Config:
    """The configuration of an E-AC-3 access unit (its first independent substream)."""
    frames = _eac3_syncframes(data)
    first = frames[0]
    if first.strmtyp == 1:
        raise MediaError("E-AC-3 frame starts with a dependent substream")
    if any(f.strmtyp == 1 for f in frames):
        raise MediaError("E-AC-3 dependent substreams (more than 5.1 channels) not supported")
    independent = [f for f in frames if f.substreamid == first.substreamid]
    # dec3 (ETSI TS 102 366 §F.6): data_rate(13) num_ind_sub(3), then per independent
    # substream fscod(2) bsid(5) reserved(1) asvc(1) bsmod(3) acmod(3) lfeon(1) reserved(3)
    # num_dep_sub(4) reserved(1).
    per_second = first.sample_rate / (first.blocks * 256)
    data_rate = min(round(sum(f.size for f in independent) * 8 * per_second / 1000), 0x1FFF)
    ind = [f for f in frames if f.strmtyp in (0, 2)]
    substreams = {f.substreamid: f for f in ind}
    out = ((data_rate << 3) | (len(substreams) - 1)).to_bytes(2, "big")
    for f in substreams.values():
        packed = (f.fscod << 22) | (f.bsid << 17) | (f.bsmod << 12) | (f.acmod << 9)
        packed |= f.lfeon << 8
        out += packed.to_bytes(3, "big")
    channels = _ACMOD_CHANNELS[first.acmod] + first.lfeon
    return Eac3Config(out, first.sample_rate, channels)


def eac3_samples(data: bytes) -> int:
    """Samples of an E-AC-3 access unit: blocks of 256 per syncframe of its first substream
    (A/52 §E.1.3.1.5 numblkscod)."""
    frames = _eac3_syncframes(data)
    first = frames[0].substreamid
    return sum(f.blocks * 256 for f in frames if f.strmtyp != 1 and f.substreamid == first)


# MPEG audio (ISO/IEC 11172-3 §2.4.2.3, 13818-3 §2.4.2.3): rates by version, bitrates (kbit/s) by
# version and layer.
_MPA_RATES = {3: (44_100, 48_000, 32_000), 2: (22_050, 24_000, 16_000), 0: (11_025, 12_000, 8_000)}
_MPA_BITRATES = {
    (1, 1): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (1, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (1, 3): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (2, 1): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (2, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (2, 3): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
MP3_OBJECT_TYPE_MPEG1 = 0x6B  # MP4 registration objectTypeIndication: ISO/IEC 11172-3 audio
MP3_OBJECT_TYPE_MPEG2 = 0x69  # ISO/IEC 13818-3 audio (the lower sample rates)


@dataclass(frozen=True, slots=True)
class Mp3Config:
    """An MPEG audio stream's parameters from a frame header (bitrate and padding left out)."""

    config: bytes  # the frame header with bitrate, padding and per-frame bits zeroed
    version: int  # 3 = MPEG-1, 2 = MPEG-2, 0 = MPEG-2.5
    layer: int  # 1, 2, 3
    sample_rate: int
    channels: int
    fourcc: str = ".mp3"

    @property
    def object_type(self) -> int:
        return MP3_OBJECT_TYPE_MPEG1 if self.version == 3 else MP3_OBJECT_TYPE_MPEG2

    @property
    def codec_string(self) -> str:
        """ "mp4a.40.34" (MPEG-4 audio object type 34, Layer III): the value Apple's HLS
        authoring spec lists for MP3 and the one hls.js maps to an audio/mpeg fallback; the
        sample entry itself carries objectTypeIndication 0x6B / 0x69, as FFmpeg writes it."""
        return "mp4a.40.34"

    @property
    def frame_samples(self) -> int:
        if self.layer == 1:
            return 384
        return 1152 if self.layer == 2 or self.version == 3 else 576


def _mpa_header(data: bytes, pos: int) -> tuple[int, int, int, int, int]:
    """(version, layer, rate, frame bytes or 0 when free format, channels) of a frame header."""
    if len(data) < pos + 4 or data[pos] != 0xFF or data[pos + 1] & 0xE0 != 0xE0:
        raise MediaError("MPEG audio frame sync missing")
    b1, b2, b3 = data[pos + 1], data[pos + 2], data[pos + 3]
    version, layer = (b1 >> 3) & 3, 4 - ((b1 >> 1) & 3)
    rate_index, bitrate_index = (b2 >> 2) & 3, b2 >> 4
    if version == 1 or layer == 4 or rate_index == 3 or bitrate_index == 15:
        raise MediaError("MPEG audio frame header has reserved values")
    rate = _MPA_RATES[version][rate_index]
    kbps = _MPA_BITRATES[(1 if version == 3 else 2, layer)][bitrate_index]
    padding = (b2 >> 1) & 1
    if layer == 1:
        size = (12 * kbps * 1000 // rate + padding) * 4
    else:
        per = 72 if layer == 3 and version != 3 else 144
        size = per * kbps * 1000 // rate + padding
    return version, layer, rate, size, 1 if b3 >> 6 == 3 else 2


def parse_mp3_frame(data: bytes) -> Mp3Config:
    """The configuration of an MPEG audio frame (ISO/IEC 11172-3 §2.4.2.3 header)."""
    version, layer, rate, _, channels = _mpa_header(data, 0)
    # Kept: sync, version, layer, sampling frequency, mode; the rest varies per frame.
    canonical = bytes((0xFF, data[1] & 0xFE, data[2] & 0x0C, data[3] & 0xC0))
    return Mp3Config(canonical, version, layer, rate, channels)


def mp3_samples(data: bytes) -> int:
    """Samples of the MPEG audio frames in one FLV tag (usually one frame)."""
    total, pos = 0, 0
    while pos + 4 <= len(data):
        version, layer, _, size, _ = _mpa_header(data, pos)
        total += 384 if layer == 1 else 1152 if layer == 2 or version == 3 else 576
        if size == 0:  # free format: the length is not in the header; one frame
            break
        pos += size
    if not total:
        raise MediaError("MPEG audio frame truncated")
    return total


VideoConfig = AvcConfig | HevcConfig | Av1Config | Vp9Config
AudioConfig = AacConfig | OpusConfig | FlacConfig | Ac3Config | Eac3Config | Mp3Config
# Codecs whose configuration is read off each frame (no sequence header carries it).
FRAME_CONFIGURED = frozenset({"ac-3", "ec-3", ".mp3"})
_AAC_FRAME_SAMPLES = 1024


def audio_config_from_frame(fourcc: str, data: bytes) -> AudioConfig:
    """The configuration a frame of a FRAME_CONFIGURED codec describes."""
    if fourcc == "ac-3":
        return parse_ac3_frame(data)
    if fourcc == "ec-3":
        return parse_eac3_frame(data)
    return parse_mp3_frame(data)


def audio_frame_samples(fourcc: str, data: bytes) -> int:
    """Samples (at the track's rate) of one audio frame of the codec with this FourCC; a frame
    whose header cannot be read counts as the codec's usual frame."""
    try:
        if fourcc == "Opus":
            return opus_samples(data)
        if fourcc == "fLaC":
            return flac_block_size(data)
        if fourcc == "ac-3":
            return AC3_FRAME_SAMPLES
        if fourcc == "ec-3":
            return eac3_samples(data)
        if fourcc == ".mp3":
            return mp3_samples(data)
    except MediaError:
        pass
    return usual_frame_samples(fourcc)


def usual_frame_samples(fourcc: str) -> int:
    """The usual frame of each audio codec (a duration to assume before one was seen)."""
    return {"Opus": 960, "fLaC": 4096, "ac-3": 1536, "ec-3": 1536, ".mp3": 1152}.get(
        fourcc, _AAC_FRAME_SAMPLES
    )
