"""FLV tag model: the unit the RTMP side hands to the segmenter (FLV spec v10.1, annex E.4.1).

Also parses audio/video tag bodies into typed packets (legacy AVC/AAC/MP3 and Enhanced RTMP
ExHeaders with avc1, hvc1, av01, vp09, mp4a, Opus, fLaC, ac-3, ec-3 and .mp3; other codecs are
reported as Unsupported, malformed bodies raise MediaError) and reads FLV files (for tests and
benchmarks). No I/O.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum

from segmenter.codecs import MediaError
from segmenter.records import record


class TagType(IntEnum):
    """FLV TagType values; identical to the RTMP message type ids (RTMP 1.0 §7.1)."""

    AUDIO = 8
    VIDEO = 9
    SCRIPT = 18


@record
class FlvTag:
    """One audio, video or script-data tag.

    ``timestamp`` is the publisher's millisecond clock already unwrapped from RTMP's 32 bits into
    an unbounded int (so it never wraps); it is NOT rebased: the consumer rebases per session.
    ``body`` is the tag body exactly as carried by the RTMP message (for SCRIPT tags: the AMF0
    ``onMetaData`` name and value, with any ``@setDataFrame`` prefix already stripped).
    """

    type: TagType
    timestamp: int
    body: bytes


# --- Tag bodies (FLV v10.1 §E.4.2, §E.4.3; Enhanced RTMP v1/v2 ExVideo/ExAudio tag headers)

# Legacy CodecID (video byte 0, low nibble), FLV §E.4.3.1; 12 and 13 are the common
# non-standard HEVC/AV1 extensions some Chinese CDNs use.
_VIDEO_CODEC_IDS = {
    1: "JPEG",
    2: "Sorenson H.263",
    3: "Screen video",
    4: "On2 VP6",
    5: "On2 VP6 with alpha",
    6: "Screen video v2",
    7: "avc1",
    12: "HEVC (legacy id 12)",
    13: "AV1 (legacy id 13)",
}
# Legacy SoundFormat (audio byte 0, high nibble), FLV §E.4.2.1.
_SOUND_FORMATS = {
    0: "Linear PCM (platform endian)",
    1: "ADPCM",
    2: "MP3",
    3: "Linear PCM (little endian)",
    4: "Nellymoser 16 kHz",
    5: "Nellymoser 8 kHz",
    6: "Nellymoser",
    7: "G.711 A-law",
    8: "G.711 mu-law",
    10: "mp4a",
    11: "Speex",
    13: "Opus (legacy id 13)",
    14: "MP3 8 kHz",
    15: "Device-specific sound",
}
AVC = "avc1"  # legacy CodecID 7 or ExHeader FourCC avc1
AAC = "mp4a"  # legacy SoundFormat 10 or ExHeader FourCC mp4a
HEVC = "hvc1"
AV1 = "av01"
VP9 = "vp09"
OPUS = "Opus"
FLAC = "fLaC"
AC3 = "ac-3"
EAC3 = "ec-3"
MP3 = ".mp3"  # ExHeader FourCC, or legacy SoundFormat 2 / 14 (MP3 8 kHz)
# Enhanced RTMP FourCCs we segment. CodedFrames carries an SI24 composition time only for avc1
# and hvc1 (E-RTMP v1 ExVideoTagBody); av01 and vp09 frames have none.
VIDEO_FOURCCS = frozenset({AVC, HEVC, AV1, VP9})
AUDIO_FOURCCS = frozenset({AAC, OPUS, FLAC, AC3, EAC3, MP3})
# E-RTMP v2 Enhanced Audio: these codecs' frames describe themselves; a SequenceStart may be empty.
_SELF_DESCRIBING = frozenset({AC3, EAC3, MP3})
_CTS_FOURCCS = frozenset({AVC, HEVC})

_VIDEO_FRAME_KEY = 1
_VIDEO_FRAME_COMMAND = 5  # "video info/command frame": carries no picture
_LEGACY_AVC = 7
_LEGACY_AAC = 10
_LEGACY_MP3 = (2, 14)  # SoundFormat MP3, MP3 8 kHz
_AUDIO_EX_HEADER = 9  # SoundFormat 9 = ExHeader (Enhanced RTMP v2)

# Enhanced RTMP VideoPacketType / AudioPacketType values.
_EX_SEQUENCE_START = 0
_EX_CODED_FRAMES = 1
_EX_SEQUENCE_END = 2
_EX_CODED_FRAMES_X = 3  # video only: composition time implied 0
_EX_VIDEO_METADATA = 4
_EX_VIDEO_MULTITRACK = 6
_EX_AUDIO_MULTICHANNEL = 4
_EX_AUDIO_MULTITRACK = 5
_EX_MOD_EX = 7
_MOD_EX_TIMESTAMP_OFFSET_NANO = 0  # ModExType 0: UI24 nanoseconds past the tag's millisecond
_MAX_OFFSET_NANO = 999_999


@record
class SequenceHeader:
    """Codec configuration as sent: avcC (avc1), hvcC (hvc1), av1C (av01), vpcC payload (vp09),
    AudioSpecificConfig (mp4a), OpusHead (Opus)."""

    media: str  # "video" or "audio"
    codec: str
    config: bytes


@record
class VideoFrame:
    """One access unit; ``composition_time`` is PTS - DTS in ms (signed, may be negative)."""

    codec: str
    keyframe: bool
    composition_time: int
    data: bytes


@record
class AudioFrame:
    codec: str
    data: bytes


@dataclass(frozen=True, slots=True)
class SequenceEnd:
    media: str
    codec: str


@dataclass(frozen=True, slots=True)
class Unsupported:
    """A well-formed tag in a codec we do not segment; ``reason`` is for stats and logs."""

    media: str
    codec: str
    reason: str


# E-RTMP v2 AudioChannelOrder of a MultichannelConfig.
CHANNEL_ORDER_UNSPECIFIED = 0
CHANNEL_ORDER_NATIVE = 1
CHANNEL_ORDER_CUSTOM = 2
# AudioChannel names by value (E-RTMP v2 enum AudioChannel; bit i of a Native mask is value i).
CHANNEL_NAMES = (
    *("FL", "FR", "FC", "LFE1", "BL", "BR", "FLC", "FRC", "BC", "SL", "SR", "TC", "TFL", "TFC"),
    *("TFR", "TBL", "TBC", "TBR", "LFE2", "TSL", "TSR", "BFC", "BFL", "BFR"),
)
_CHANNEL_UNUSED, _CHANNEL_UNKNOWN = 0xFE, 0xFF


@dataclass(frozen=True, slots=True)
class ChannelLayout:
    """An E-RTMP v2 MultichannelConfig: the channel count and, when given, which speaker each
    channel is (``speakers``: names in bitstream order; empty for order Unspecified)."""

    codec: str
    channels: int
    speakers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Ignored:
    """A tag with nothing to segment (command frames, metadata, empty bodies)."""

    media: str
    reason: str


MediaPacket = (
    SequenceHeader | VideoFrame | AudioFrame | SequenceEnd | ChannelLayout | Unsupported | Ignored
)


def _s24(b: bytes) -> int:
    v = int.from_bytes(b, "big")
    return v - (1 << 24) if v & 0x800000 else v


def _fourcc(body: bytes, pos: int, media: str) -> str:
    if len(body) < pos + 4:
        raise MediaError(f"{media} ExHeader truncated before FourCC")
    return body[pos : pos + 4].decode("latin-1")


def _skip_mod_ex(body: bytes, pos: int, media: str) -> tuple[int, int]:
    """Skip ModEx blocks (Enhanced RTMP v2); returns (next packet type, position)."""
    packet_type, pos, _ = _mod_ex(body, pos, media)
    return packet_type, pos


def _mod_ex(body: bytes, pos: int, media: str) -> tuple[int, int, int]:
    """Read ModEx blocks (Enhanced RTMP v2): (next packet type, position, TimestampOffsetNano
    in ns, 0 without one)."""
    packet_type = _EX_MOD_EX
    offset_ns = 0
    while packet_type == _EX_MOD_EX:
        if pos >= len(body):
            raise MediaError(f"{media} ModEx truncated")
        size = body[pos] + 1
        pos += 1
        if size == 256:
            if pos + 2 > len(body):
                raise MediaError(f"{media} ModEx truncated")
            size = int.from_bytes(body[pos : pos + 2], "big") + 1
            pos += 2
        data = pos
        pos += size
        if pos >= len(body):
            raise MediaError(f"{media} ModEx overruns the tag")
        if body[pos] >> 4 == _MOD_EX_TIMESTAMP_OFFSET_NANO and size == 3:
            # UI24 nanoseconds to add to the tag's millisecond timestamp (0..999999).
            offset_ns = min(int.from_bytes(body[data:pos], "big"), _MAX_OFFSET_NANO)
        packet_type = body[pos] & 0x0F
        pos += 1
    return packet_type, pos, offset_ns


def timestamp_offset_ms(tag: FlvTag) -> int:
    """An Enhanced RTMP v2 tag's ModEx TimestampOffsetNano, rounded to the millisecond clock
    the segmenter keeps (0 or 1; 0 for every tag without one)."""
    body = tag.body
    if not body or body[0] & 0x0F != _EX_MOD_EX:
        return 0
    if tag.type == TagType.VIDEO and body[0] & 0x80:
        media = "video"
    elif tag.type == TagType.AUDIO and body[0] >> 4 == _AUDIO_EX_HEADER:
        media = "audio"
    else:
        return 0
    return (_mod_ex(body, 1, media)[2] + 500_000) // 1_000_000


# Enhanced RTMP v2 Multitrack: AvMultitrackType, the high nibble of the byte after the packet type.
_MULTITRACK_ONE_TRACK = 0
_MULTITRACK_MANY_TRACKS = 1
_MULTITRACK_MANY_TRACKS_MANY_CODECS = 2


@dataclass(frozen=True, slots=True)
class Track:
    """One track of a Multitrack tag as the single-track ExHeader body a one-track publisher sends.

    Track 0 is the default track (Enhanced RTMP v2); ``fourcc`` is the track's codec.
    """

    track_id: int
    fourcc: str
    body: bytes


def _ex_header_kind(kind: TagType, body: bytes) -> tuple[str, int] | None:
    """(media, Multitrack PacketType value) when ``body`` starts with an ExHeader, else None."""
    if kind == TagType.VIDEO and body and body[0] & 0x80:
        return "video", _EX_VIDEO_MULTITRACK
    if kind == TagType.AUDIO and body and body[0] >> 4 == _AUDIO_EX_HEADER:
        return "audio", _EX_AUDIO_MULTITRACK
    return None


def split_multitrack(kind: TagType, body: bytes) -> list[Track] | None:
    """The tracks of a Multitrack audio or video tag body, in tag order; None if it is not one.

    Each track comes back as an ordinary single-track ExHeader body (same FrameType, the inner
    PacketType, the track's FourCC and data), so everything that reads one-track tags reads it.
    ModEx blocks before the Multitrack header apply to the whole tag (a timestamp offset, say)
    and are kept on every track. Malformed bodies raise MediaError.
    """
    found = _ex_header_kind(kind, body)
    if found is None:
        return None
    media, multitrack = found
    packet_type, pos = body[0] & 0x0F, 1
    if packet_type == _EX_MOD_EX:
        packet_type, pos = _skip_mod_ex(body, pos, media)
    if packet_type != multitrack:
        return None
    if pos >= len(body):
        raise MediaError(f"{media} Multitrack header truncated")
    layout, inner = body[pos] >> 4, body[pos] & 0x0F
    if layout > _MULTITRACK_MANY_TRACKS_MANY_CODECS:
        raise MediaError(f"unknown {media} AvMultitrackType {layout}")
    if inner in (multitrack, _EX_MOD_EX):
        raise MediaError(f"{media} Multitrack cannot carry PacketType {inner}")
    # The byte with the PacketType nibble (byte 0 or the last ModEx type byte) gets the inner one.
    head = bytearray(body[:pos])
    head[-1] = (head[-1] & 0xF0) | inner
    prefix = bytes(head)
    pos += 1
    fourcc = ""
    if layout != _MULTITRACK_MANY_TRACKS_MANY_CODECS:
        fourcc = _fourcc(body, pos, media)
        pos += 4
    tracks: list[Track] = []
    seen: set[int] = set()
    while pos < len(body) or not tracks:
        if layout == _MULTITRACK_MANY_TRACKS_MANY_CODECS:
            fourcc = _fourcc(body, pos, media)
            pos += 4
        if pos >= len(body):
            raise MediaError(f"{media} Multitrack truncated before trackId")
        track_id = body[pos]
        pos += 1
        if track_id in seen:
            raise MediaError(f"{media} Multitrack names track {track_id} twice")
        seen.add(track_id)
        end = len(body)
        if layout != _MULTITRACK_ONE_TRACK:
            if pos + 3 > len(body):
                raise MediaError(f"{media} Multitrack truncated before track {track_id} size")
            end = pos + 3 + int.from_bytes(body[pos : pos + 3], "big")
            pos += 3
            if end > len(body):
                raise MediaError(f"{media} track {track_id} overruns the Multitrack tag")
        tracks.append(Track(track_id, fourcc, prefix + fourcc.encode("latin-1") + body[pos:end]))
        pos = end
    return tracks


def join_tracks(kind: TagType, tracks: list[Track]) -> bytes:
    """One Multitrack tag body carrying ``tracks`` (single-track ExHeader bodies without ModEx).

    The inverse of ``split_multitrack``: OneTrack for one track, ManyTracks when they share a
    FourCC, ManyTracksManyCodecs otherwise. The tracks must share FrameType and PacketType.
    """
    if not tracks:
        raise ValueError("a Multitrack tag needs at least one track")
    found = _ex_header_kind(kind, tracks[0].body)
    if found is None:
        raise ValueError("tracks must be ExHeader bodies")
    b0 = tracks[0].body[0]
    if any(len(t.body) < 5 or t.body[0] != b0 for t in tracks):
        raise ValueError("tracks must share FrameType and PacketType")
    if any(t.body[1:5] != t.fourcc.encode("latin-1") for t in tracks):
        raise ValueError("a track's FourCC must be the one its body names")
    if b0 & 0x0F in (found[1], _EX_MOD_EX):
        raise ValueError("tracks must be single-track bodies without ModEx")
    codecs = {t.fourcc for t in tracks}
    if len(tracks) == 1:
        layout = _MULTITRACK_ONE_TRACK
    elif len(codecs) == 1:
        layout = _MULTITRACK_MANY_TRACKS
    else:
        layout = _MULTITRACK_MANY_TRACKS_MANY_CODECS
    out = bytearray(((b0 & 0xF0) | found[1], layout << 4 | (b0 & 0x0F)))
    if layout != _MULTITRACK_MANY_TRACKS_MANY_CODECS:
        out += tracks[0].fourcc.encode("latin-1")
    for t in tracks:
        data = t.body[5:]
        if layout == _MULTITRACK_MANY_TRACKS_MANY_CODECS:
            out += t.fourcc.encode("latin-1")
        out.append(t.track_id)
        if layout != _MULTITRACK_ONE_TRACK:
            out += len(data).to_bytes(3, "big")
        out += data
    return bytes(out)


# --- What RTMP fan-out needs of a tag (hub start-of-play cache, players): no codec data parsed.

_EX_MPEG2TS_SEQUENCE_START = 5  # video: an MPEG-2 TS descriptor sequence start (config)
# Packet types that configure a decoder (E-RTMP v1/v2): sequence starts, video Metadata
# (colorInfo; replaces the previous one) and audio MultichannelConfig.
_VIDEO_CONFIG = frozenset({_EX_SEQUENCE_START, _EX_VIDEO_METADATA, _EX_MPEG2TS_SEQUENCE_START})
_AUDIO_CONFIG = frozenset({_EX_SEQUENCE_START, _EX_AUDIO_MULTICHANNEL})
NOT_CONFIG = -1


def _inner_packet_type(body: bytes, multitrack: int, media: str) -> tuple[int, bool]:
    """(PacketType past ModEx and inside Multitrack, whether it is Multitrack); may raise
    MediaError."""
    packet_type, pos = body[0] & 0x0F, 1
    if packet_type == _EX_MOD_EX:
        packet_type, pos = _skip_mod_ex(body, pos, media)
    if packet_type != multitrack:
        return packet_type, False
    if pos >= len(body):
        raise MediaError(f"{media} Multitrack header truncated")
    return body[pos] & 0x0F, True


def config_type(kind: TagType, body: bytes) -> int:
    """The PacketType of configuration a decoder needs before frames (0 for legacy AVC/AAC
    sequence headers), looking through ModEx and Multitrack; NOT_CONFIG for anything else
    (frames, script data, malformed bodies)."""
    if len(body) < 2:
        return NOT_CONFIG
    found = _ex_header_kind(kind, body)
    if found is None:
        if kind == TagType.VIDEO:  # legacy AVC, or the non-standard id 12 HEVC, header
            return 0 if body[0] & 0x0F in (_LEGACY_AVC, 12) and body[1] == 0 else NOT_CONFIG
        if kind == TagType.AUDIO:
            return 0 if body[0] >> 4 == _LEGACY_AAC and body[1] == 0 else NOT_CONFIG
        return NOT_CONFIG
    try:
        packet_type = _inner_packet_type(body, found[1], found[0])[0]
    except MediaError:
        return NOT_CONFIG
    configs = _VIDEO_CONFIG if kind == TagType.VIDEO else _AUDIO_CONFIG
    return packet_type if packet_type in configs else NOT_CONFIG


def is_multitrack(kind: TagType, body: bytes) -> bool:
    """An E-RTMP v2 Multitrack audio or video tag (ModEx looked through); False if malformed."""
    found = _ex_header_kind(kind, body)
    if found is None:
        return False
    try:
        return _inner_packet_type(body, found[1], found[0])[1]
    except MediaError:
        return False


def is_default_keyframe(kind: TagType, body: bytes) -> bool:
    """A video key frame (FrameType 1, FLV E.4.3.1 / ExVideoTagHeader) that is not configuration
    and carries the default track (track 0, E-RTMP v2 Multitrack): where a player can start."""
    if kind != TagType.VIDEO or len(body) < 2 or (body[0] >> 4) & 0x07 != _VIDEO_FRAME_KEY:
        return False
    if config_type(kind, body) != NOT_CONFIG:
        return False
    if not is_multitrack(kind, body):
        return True
    try:
        tracks = split_multitrack(kind, body) or []
    except MediaError:
        return False
    return any(t.track_id == 0 for t in tracks)


def default_track_body(kind: TagType, body: bytes) -> bytes | None:
    """What a peer that did not announce Multitrack gets of a tag: the body itself unless it is
    Multitrack, else its track 0 as a one-track body, or None (no track 0, or malformed)."""
    if not is_multitrack(kind, body):
        return body
    try:
        tracks = split_multitrack(kind, body) or []
    except MediaError:
        return None
    for t in tracks:
        if t.track_id == 0:
            return t.body
    return None


def parse_video(body: bytes) -> MediaPacket:
    """Parse a video tag body (legacy §E.4.3.1 or Enhanced RTMP ExVideoTagHeader)."""
    if not body:
        return Ignored("video", "empty video tag")
    b0 = body[0]
    if b0 & 0x80:
        return _parse_ex_video(body, (b0 >> 4) & 0x07, b0 & 0x0F)
    frame_type, codec_id = b0 >> 4, b0 & 0x0F
    if frame_type == _VIDEO_FRAME_COMMAND:
        return Ignored("video", "video info/command frame")
    if codec_id != _LEGACY_AVC:
        name = _VIDEO_CODEC_IDS.get(codec_id, f"CodecID {codec_id}")
        return Unsupported("video", name, f"unsupported video codec {name}")
    if len(body) < 5:
        raise MediaError(f"AVC video tag too short ({len(body)} bytes)")
    packet_type, cts = body[1], _s24(body[2:5])
    return _avc_packet(packet_type, frame_type, cts, body[5:])


def _avc_packet(packet_type: int, frame_type: int, cts: int, data: bytes) -> MediaPacket:
    if packet_type == 0:
        if not data:
            raise MediaError("empty AVC sequence header")
        return SequenceHeader("video", AVC, data)
    if packet_type == 1:
        if not data:
            return Ignored("video", "AVC frame without NAL units")
        return VideoFrame(AVC, frame_type == _VIDEO_FRAME_KEY, cts, data)
    if packet_type == 2:
        return SequenceEnd("video", AVC)
    raise MediaError(f"unknown AVCPacketType {packet_type}")


def _parse_ex_video(body: bytes, frame_type: int, packet_type: int) -> MediaPacket:
    pos = 1
    if packet_type == _EX_MOD_EX:
        packet_type, pos = _skip_mod_ex(body, pos, "video")
    if frame_type == _VIDEO_FRAME_COMMAND and packet_type != _EX_VIDEO_METADATA:
        return Ignored("video", "video command frame")
    if packet_type == _EX_VIDEO_MULTITRACK:
        return Unsupported("video", "multitrack", "unsupported video: Enhanced RTMP multitrack")
    fourcc = _fourcc(body, pos, "video")
    pos += 4
    if packet_type == _EX_VIDEO_METADATA:
        return Ignored("video", f"{fourcc} video metadata")
    if fourcc not in VIDEO_FOURCCS:
        return Unsupported("video", fourcc, f"unsupported video codec {fourcc}")
    key = frame_type == _VIDEO_FRAME_KEY
    if packet_type == _EX_CODED_FRAMES and fourcc in _CTS_FOURCCS:
        if len(body) < pos + 3:
            raise MediaError(f"{fourcc} CodedFrames truncated before composition time")
        return _ex_frame(fourcc, key, _s24(body[pos : pos + 3]), body[pos + 3 :])
    if packet_type in (_EX_CODED_FRAMES, _EX_CODED_FRAMES_X):
        return _ex_frame(fourcc, key, 0, body[pos:])
    if packet_type == _EX_SEQUENCE_START:
        if len(body) == pos:
            raise MediaError(f"empty {fourcc} sequence start")
        return SequenceHeader("video", fourcc, body[pos:])
    if packet_type == _EX_SEQUENCE_END:
        return SequenceEnd("video", fourcc)
    return Ignored("video", f"video PacketType {packet_type} not used for segmenting")


def _ex_frame(fourcc: str, key: bool, cts: int, data: bytes) -> MediaPacket:
    if not data:
        return Ignored("video", f"{fourcc} frame without data")
    return VideoFrame(fourcc, key, cts, data)


def parse_audio(body: bytes) -> MediaPacket:
    """Parse an audio tag body (legacy §E.4.2.1 or Enhanced RTMP v2 ExAudioTagHeader)."""
    if not body:
        return Ignored("audio", "empty audio tag")
    sound_format = body[0] >> 4
    if sound_format == _AUDIO_EX_HEADER:
        return _parse_ex_audio(body, body[0] & 0x0F)
    if sound_format in _LEGACY_MP3:  # FFmpeg 9 sends MP3 this way, not as an ExHeader
        if len(body) == 1:
            return Ignored("audio", "empty MP3 frame")
        return AudioFrame(MP3, body[1:])
    if sound_format != _LEGACY_AAC:
        name = _SOUND_FORMATS.get(sound_format, f"SoundFormat {sound_format}")
        return Unsupported("audio", name, f"unsupported audio codec {name}")
    if len(body) < 2:
        raise MediaError("AAC audio tag too short")
    return _aac_packet(body[1], body[2:])


def _aac_packet(packet_type: int, data: bytes) -> MediaPacket:
    if packet_type == 0:
        if not data:
            raise MediaError("empty AAC sequence header")
        return SequenceHeader("audio", AAC, data)
    if packet_type == 1:
        if not data:
            return Ignored("audio", "empty AAC frame")
        return AudioFrame(AAC, data)
    raise MediaError(f"unknown AACPacketType {packet_type}")


def _parse_ex_audio(body: bytes, packet_type: int) -> MediaPacket:
    pos = 1
    if packet_type == _EX_MOD_EX:
        packet_type, pos = _skip_mod_ex(body, pos, "audio")
    if packet_type == _EX_AUDIO_MULTITRACK:
        return Unsupported("audio", "multitrack", "unsupported audio: Enhanced RTMP multitrack")
    fourcc = _fourcc(body, pos, "audio")
    pos += 4
    if fourcc not in AUDIO_FOURCCS:
        return Unsupported("audio", fourcc, f"unsupported audio codec {fourcc}")
    data = body[pos:]
    if packet_type == _EX_SEQUENCE_START:
        if fourcc in _SELF_DESCRIBING:  # FFmpeg 9 sends ac-3 / ec-3 ones empty
            return Ignored("audio", f"{fourcc} sequence start (its frames carry the config)")
        if not data:
            raise MediaError(f"empty {fourcc} sequence start")
        return SequenceHeader("audio", fourcc, data)
    if packet_type == _EX_CODED_FRAMES:
        if not data:
            return Ignored("audio", f"empty {fourcc} frame")
        return AudioFrame(fourcc, data)
    if packet_type == _EX_SEQUENCE_END:
        return SequenceEnd("audio", fourcc)
    if packet_type == _EX_AUDIO_MULTICHANNEL:
        return _channel_layout(fourcc, data)
    return Ignored("audio", f"audio PacketType {packet_type} not used for segmenting")


def _channel_layout(fourcc: str, data: bytes) -> ChannelLayout:
    """An E-RTMP v2 MultichannelConfig body: audioChannelOrder u8, channelCount u8, then a
    u8 AudioChannel per channel (Custom) or a u32 AudioChannelMask (Native)."""
    if len(data) < 2:
        raise MediaError(f"{fourcc} MultichannelConfig truncated")
    order, count = data[0], data[1]
    if count == 0:
        raise MediaError(f"{fourcc} MultichannelConfig with 0 channels")
    if order == CHANNEL_ORDER_UNSPECIFIED:
        return ChannelLayout(fourcc, count, ())
    if order == CHANNEL_ORDER_CUSTOM:
        if len(data) < 2 + count:
            raise MediaError(f"{fourcc} MultichannelConfig mapping truncated")
        names = []
        for channel in data[2 : 2 + count]:
            if channel < len(CHANNEL_NAMES):
                names.append(CHANNEL_NAMES[channel])
            elif channel in (_CHANNEL_UNUSED, _CHANNEL_UNKNOWN):
                names.append("unused" if channel == _CHANNEL_UNUSED else "unknown")
            else:
                raise MediaError(f"{fourcc} MultichannelConfig speaker {channel} unknown")
        return ChannelLayout(fourcc, count, tuple(names))
    if order == CHANNEL_ORDER_NATIVE:
        if len(data) < 6:
            raise MediaError(f"{fourcc} MultichannelConfig channel mask truncated")
        mask = int.from_bytes(data[2:6], "big")
        names = [name for i, name in enumerate(CHANNEL_NAMES) if mask >> i & 1]
        if mask >> len(CHANNEL_NAMES) or len(names) != count:
            raise MediaError(
                f"{fourcc} MultichannelConfig mask {mask:#x} does not name {count} channels"
            )
        return ChannelLayout(fourcc, count, tuple(names))
    raise MediaError(f"{fourcc} MultichannelConfig channel order {order} unknown")


def parse_tag(tag: FlvTag) -> MediaPacket:
    """Parse an audio or video tag; script tags are Ignored. Malformed bodies raise MediaError."""
    if tag.type == TagType.VIDEO:
        return parse_video(tag.body)
    if tag.type == TagType.AUDIO:
        return parse_audio(tag.body)
    return Ignored("data", "script data")


# --- FLV file reader (FLV v10.1 §E.2 header, §E.3 body); for tests and benchmarks.

_FLV_HEADER_MIN = 9
_TAG_HEADER = 11


def iter_flv_file(data: bytes) -> Iterator[FlvTag]:
    """Yield the audio/video/script tags of an FLV file; timestamps unwrapped like RTMP's.

    Unknown tag types are skipped; a truncated last tag ends iteration (a file being written).
    """
    if len(data) < _FLV_HEADER_MIN or data[:3] != b"FLV":
        raise MediaError("not an FLV file")
    header_size = int.from_bytes(data[5:9], "big")
    if header_size < _FLV_HEADER_MIN:
        raise MediaError(f"FLV DataOffset {header_size} too small")
    pos = header_size + 4  # PreviousTagSize0
    last: int | None = None
    while pos + _TAG_HEADER <= len(data):
        tag_type = data[pos] & 0x1F
        if data[pos] & 0x20:
            raise MediaError("encrypted FLV tags are not supported")
        size = int.from_bytes(data[pos + 1 : pos + 4], "big")
        ts32 = int.from_bytes(data[pos + 4 : pos + 7], "big") | (data[pos + 7] << 24)
        end = pos + _TAG_HEADER + size
        if end > len(data):
            return
        # Serial-number unwrap of the 32-bit ms clock (RFC 1982 style).
        last = ts32 if last is None else last + ((ts32 - last + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
        if tag_type in (TagType.AUDIO, TagType.VIDEO, TagType.SCRIPT):
            yield FlvTag(TagType(tag_type), last, bytes(data[pos + _TAG_HEADER : end]))
        pos = end + 4
