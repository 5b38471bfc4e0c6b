"""Golden byte vectors of the Enhanced RTMP v2 packet types through the chunk layer (RTMP 1.0
§5.3, chunk size 32 so long bodies continue in fmt 3 chunks) and a publishing Connection: video
Multitrack, ModEx, Metadata; audio MultichannelConfig, Multitrack. Fed whole and one byte at a
time, each arrives with its body intact and reads as the E-RTMP v2 spec lays it out."""

from __future__ import annotations

from typing import Final

import pytest

from gateway.rtmp import events
from gateway.rtmp.chunk import ChunkDecoder, ChunkEncoder
from gateway.rtmp.limits import Limits
from segmenter.flv import (
    NOT_CONFIG,
    TagType,
    Track,
    VideoFrame,
    config_type,
    is_default_keyframe,
    parse_video,
    split_multitrack,
)
from tests.rtmp.sessions import Script, replay

H = bytes.fromhex
V, A = TagType.VIDEO, TagType.AUDIO

# (csid, timestamp, type, body); message stream 1 throughout.
MULTITRACK_VIDEO: Final = H(
    "96"  # IsExHeader | FrameType 1 (key) | PacketType 6 (Multitrack)
    " 13"  # AvMultitrackType 1 (ManyTracks) | PacketType 3 (CodedFramesX)
    " 61766331"  # avc1, once for all tracks
    " 00 000003 658880"  # track 0: u24 size 3, data
    " 01 000002 6588"  # track 1: u24 size 2, data
)
MODEX_VIDEO: Final = H(
    "a7"  # IsExHeader | FrameType 2 (inter) | PacketType 7 (ModEx)
    " 02 0f4240"  # modExDataSize - 1 = 2: 3 bytes, TimestampOffsetNano 1000000
    " 01"  # ModExType 0 (TimestampOffsetNano) | PacketType 1 (CodedFrames)
    " 61763031 0a0b0c"  # av01 (no composition time), OBUs
)
METADATA_VIDEO: Final = H(
    "d4"  # IsExHeader | FrameType 5 (command) | PacketType 4 (Metadata)
    " 68766331"  # hvc1
    " 02 0009 636f6c6f72496e666f"  # AMF0 "colorInfo"
    " 03 000b 636f6c6f72436f6e666967"  # {colorConfig:
    " 03 0008 626974446570746800 4024000000000000 000009 000009"  # {bitDepth: 10}}
)
MULTICHANNEL_AUDIO: Final = H(
    "94"  # SoundFormat 9 (ExHeader) | AudioPacketType 4 (MultichannelConfig)
    " 4f707573"  # Opus
    " 01 02 00000003"  # AudioChannelOrder 1 (Native), 2 channels, FrontLeft | FrontRight
)
MULTITRACK_AUDIO: Final = H(
    "95"  # SoundFormat 9 (ExHeader) | AudioPacketType 5 (Multitrack)
    " 21"  # AvMultitrackType 2 (ManyTracksManyCodecs) | PacketType 1 (CodedFrames)
    " 6d703461 00 000002 2100"  # mp4a, track 0, 2 bytes
    " 4f707573 01 000001 f8"  # Opus, track 1, 1 byte
)
MESSAGES: Final = [
    (6, 0, 9, MULTITRACK_VIDEO),
    (6, 33, 9, MODEX_VIDEO),
    (6, 33, 9, METADATA_VIDEO),
    (4, 0, 8, MULTICHANNEL_AUDIO),
    (4, 21, 8, MULTITRACK_AUDIO),
]
# The chunks, chunk size 32 (§5.3.1): basic header, message header, data.
WIRE: Final = H(
    "06 000000 000013 09 01000000" + MULTITRACK_VIDEO.hex()  # fmt 0, csid 6, 19 bytes
    + "46 000021 00000d 09" + MODEX_VIDEO.hex()  # fmt 1: delta 33, 13 bytes, video
    + "46 000000 000039 09" + METADATA_VIDEO[:32].hex()  # fmt 1: delta 0, 57 bytes
    + "c6" + METADATA_VIDEO[32:].hex()  # fmt 3 continuation of csid 6
    + "04 000000 00000b 08 01000000" + MULTICHANNEL_AUDIO.hex()  # fmt 0, csid 4, 11 bytes
    + "44 000015 000015 08" + MULTITRACK_AUDIO.hex()  # fmt 1: delta 21, 21 bytes, audio
)  # fmt: skip


def test_encoder_writes_the_golden_chunks() -> None:
    enc = ChunkEncoder(32)
    assert b"".join(enc.encode(cs, ts, t, 1, body) for cs, ts, t, body in MESSAGES) == WIRE


@pytest.mark.parametrize("step", [len(WIRE), 1])
def test_decoder_reads_them_whole_and_byte_by_byte(step: int) -> None:
    dec = ChunkDecoder(Limits(min_chunk_size=1))
    dec.chunk_size = 32
    got = []
    for at in range(0, len(WIRE), step):
        dec.feed(WIRE[at : at + step])
        while (raw := dec.next_message()) is not None:
            got.append((raw.csid, raw.timestamp, raw.type_id, raw.body))
    assert got == MESSAGES and dec.buffered_bytes == 0


def publish_session() -> bytes:
    s = Script(digest=False)
    s.command(3, 0, "connect", 1.0, {"app": "live", "tcUrl": "rtmp://h/live", "capsEx": 7.0})
    s.command(3, 0, "createStream", 2.0, None)
    s.command(8, 1, "publish", 3.0, None, "mt", "live")
    for csid, ts, type_id, body in MESSAGES:  # the server's minimum chunk size is 128
        s.msg(csid, type_id, 1, body, ts)
    return s.data()


def test_a_publishing_connection_passes_every_body_on_intact() -> None:
    data = publish_session()
    whole, _ = replay([data])
    bytewise, _ = replay([data[i : i + 1] for i in range(len(data))])
    assert bytewise == whole
    media = [e for e in whole if isinstance(e, events.Media)]
    assert [(e.type, e.timestamp, e.body) for e in media] == [
        (t, ts, body) for _, ts, t, body in MESSAGES
    ]


def test_the_bodies_read_as_the_spec_lays_them_out() -> None:
    assert split_multitrack(V, MULTITRACK_VIDEO) == [
        Track(0, "avc1", b"\x93avc1\x65\x88\x80"),
        Track(1, "avc1", b"\x93avc1\x65\x88"),
    ]
    assert is_default_keyframe(V, MULTITRACK_VIDEO)
    assert parse_video(MODEX_VIDEO) == VideoFrame("av01", False, 0, b"\x0a\x0b\x0c")
    assert config_type(V, MODEX_VIDEO) == NOT_CONFIG
    assert config_type(V, METADATA_VIDEO) == 4  # cached for late players, per track
    assert config_type(A, MULTICHANNEL_AUDIO) == 4
    assert split_multitrack(A, MULTITRACK_AUDIO) == [
        Track(0, "mp4a", b"\x91mp4a\x21\x00"),
        Track(1, "Opus", b"\x91Opus\xf8"),
    ]
