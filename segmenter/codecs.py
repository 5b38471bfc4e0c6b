"""Codec configuration parsing and bitstream rewrites for H.264 and AAC. Pure functions, no I/O.

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
