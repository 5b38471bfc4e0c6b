"""Enhanced RTMP audio FourCCs fLaC, ac-3, ec-3 and .mp3 (and legacy MP3), issue 15: golden tag
bodies as FFmpeg 9 publishes them over RTMP (captured off a real publish to the gateway), the
configurations and sample entries made from them (compared with what FFmpeg's own mp4 muxer writes
for the same streams), per-frame durations, and whole streams through LiveStream into CMAF and
MPEG-TS, decoded by FFmpeg (PyAV)."""

from __future__ import annotations

import io
from pathlib import Path

import av
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segmenter.codecs import (
    MediaError,
    audio_config_from_frame,
    audio_frame_samples,
    eac3_samples,
    flac_block_size,
    mp3_samples,
    parse_ac3_frame,
    parse_eac3_frame,
    parse_flac_streaminfo,
    parse_mp3_frame,
)
from segmenter.flv import (
    AudioFrame,
    ChannelLayout,
    Ignored,
    SequenceEnd,
    SequenceHeader,
    parse_audio,
)
from segmenter.fmp4 import box, full_box, init_segment
from segmenter.live import LiveStream, SegmenterConfig
from segmenter.store import MemoryStore
from tests.segmenter.media import make_flv, tags

# --- Golden tag bodies: FFmpeg 9 (imageio-ffmpeg), `-c:a flac|ac3|eac3|libmp3lame`, 48 kHz mono
# sine, published over RTMP; audio message bodies as the gateway received them.
FLAC_START = bytes.fromhex(
    "90664c6143" "0400040000000000" "08150bb800f00000" "0000000000000000" "0000000000000000"
    "00000000000000000000"
)  # fmt: skip
# What FFmpeg sends again when it ends: the same stream, with frame sizes, total and MD5 filled.
FLAC_START_AT_END = bytes.fromhex(
    "90664c6143" "04000400000149" "00018b0bb800f000" "00bb80a642ba0d4d393b7a83d77fa97a5c8ca4"
)  # fmt: skip
FLAC_MULTICHANNEL = bytes.fromhex("94664c6143010100000004")  # Native, 1 channel, FrontCenter
FLAC_FRAME_HEAD = bytes.fromhex("91664c6143fff8aa0800ed4c000000eb01d602c003a7048a")
FLAC_EMPTY_FRAME = bytes.fromhex("91664c6143")  # FFmpeg's last audio message
AC3_START = bytes.fromhex("9061632d33")  # empty: AC-3 frames describe themselves
AC3_MULTICHANNEL = bytes.fromhex("9461632d33010100000004")
AC3_FRAME_HEAD = bytes.fromhex("9161632d330b77480d0c402f842bc1c77aaf5e1be7")
EAC3_START = bytes.fromhex("9065632d33")
EAC3_FRAME_HEAD = bytes.fromhex("9165632d330b7700bf3287c00021064060e3bd57af")
MP3_LEGACY = bytes.fromhex("2efffb54c4000007a02142f4f18021679428f736d0")  # SoundFormat 2
# 5.1 at 44.1 kHz (`-af pan=5.1...`): MultichannelConfig and frame heads.
MULTICHANNEL_51 = bytes.fromhex("9461632d3301060000003f")  # Native, mask FL FR FC LFE BL BR
AC3_51_HEAD = bytes.fromhex("0b77054e5e40ebf8403eff9df1662cc5")
EAC3_51_HEAD = bytes.fromhex("0b7703ce7f87c000208421084208421083081f")

# The codec configuration boxes FFmpeg 9's mp4 muxer writes for the same streams.
MOVENC_DAC3 = bytes.fromhex("1008c0")
MOVENC_DEC3 = bytes.fromhex("0300200200")
MOVENC_DAC3_51 = bytes.fromhex("503de0")
MOVENC_DEC3_51 = bytes.fromhex("0e00600f00")
AVCC = bytes.fromhex("0142c01fffe100046742c01f01000468ce3c80")


def test_flac_golden_tags() -> None:
    start = parse_audio(FLAC_START)
    assert start == SequenceHeader("audio", "fLaC", FLAC_START[5:])
    assert parse_audio(FLAC_MULTICHANNEL) == ChannelLayout("fLaC", 1, ("FC",))
    frame = parse_audio(FLAC_FRAME_HEAD)
    assert isinstance(frame, AudioFrame) and frame.codec == "fLaC"
    assert isinstance(parse_audio(FLAC_EMPTY_FRAME), Ignored)
    assert parse_audio(b"\x92fLaC") == SequenceEnd("audio", "fLaC")

    config = parse_flac_streaminfo(FLAC_START[5:])
    assert (config.sample_rate, config.channels, config.bits_per_sample) == (48000, 1, 16)
    assert (config.min_block, config.max_block) == (1024, 1024)
    assert config.codec_string == "fLaC"
    # The STREAMINFO sent at the end is the same configuration: no new init segment for it.
    assert parse_flac_streaminfo(FLAC_START_AT_END[5:]) == config
    # dfLa (FLAC in ISOBMFF §3.3.2): last-metadata-block 1, STREAMINFO (type 0), 34 bytes; the
    # running fields are 0 ("unknown"), the rest as FFmpeg's mp4 muxer writes it.
    assert config.dfla() == bytes.fromhex("80000022") + bytes.fromhex(
        "04000400000000000000" "0bb800f0" + "00" * 20
    )  # fmt: skip
    assert flac_block_size(FLAC_FRAME_HEAD[5:]) == 1024  # block size code 10: 256 << 2


def test_flac_block_size_codes() -> None:
    head = b"\xff\xf8"
    assert flac_block_size(head + b"\x19\x08\x00") == 192  # code 1
    assert flac_block_size(head + b"\x59\x08\x00") == 4608  # code 5: 576 << 3
    assert flac_block_size(head + b"\xc9\x08\x00") == 4096  # code 12: 256 << 4
    # Codes 6 / 7: (size - 1) in 8 / 16 bits after the UTF-8 coded frame number (1 or 2 bytes).
    assert flac_block_size(head + b"\x69\x08\x05\x3f") == 64
    assert flac_block_size(head + b"\x79\x08\xc2\x80\x01\x1f") == 288
    for bad in (b"\xff\xf8\x09\x08\x00", b"\xff\xf0\xc9\x08\x00", head + b"\x79\x08\x00\x01"):
        with pytest.raises(MediaError):
            flac_block_size(bad)
    with pytest.raises(MediaError, match="too short"):
        parse_flac_streaminfo(FLAC_START[5:30])


def test_ac3_golden_tags_and_dac3() -> None:
    # FFmpeg 9 sends an empty SequenceStart: no configuration until the first frame.
    assert isinstance(parse_audio(AC3_START), Ignored)
    assert parse_audio(AC3_MULTICHANNEL) == ChannelLayout("ac-3", 1, ("FC",))
    frame = parse_audio(AC3_FRAME_HEAD)
    assert isinstance(frame, AudioFrame) and frame.codec == "ac-3"
    config = parse_ac3_frame(frame.data)
    assert config.config == MOVENC_DAC3  # ETSI TS 102 366 §F.4, as FFmpeg writes it
    assert (config.sample_rate, config.channels, config.codec_string) == (48000, 1, "ac-3")
    surround = parse_ac3_frame(AC3_51_HEAD)
    assert surround.config == MOVENC_DAC3_51
    assert (surround.sample_rate, surround.channels) == (44100, 6)
    assert audio_frame_samples("ac-3", frame.data) == 1536
    with pytest.raises(MediaError, match="syncword"):
        parse_ac3_frame(b"\x0b\x78" + AC3_FRAME_HEAD[7:])
    with pytest.raises(MediaError, match="reserved"):
        parse_ac3_frame(EAC3_FRAME_HEAD[5:])  # an E-AC-3 frame is not AC-3


def test_eac3_golden_tags_and_dec3() -> None:
    assert isinstance(parse_audio(EAC3_START), Ignored)
    frame = parse_audio(EAC3_FRAME_HEAD)
    assert isinstance(frame, AudioFrame) and frame.codec == "ec-3"
    config = parse_eac3_frame(frame.data)
    assert config.config == MOVENC_DEC3  # ETSI TS 102 366 §F.6: 96 kbit/s, one substream
    assert (config.sample_rate, config.channels, config.codec_string) == (48000, 1, "ec-3")
    assert eac3_samples(frame.data) == 1536  # numblkscod 3: six blocks
    surround = parse_eac3_frame(EAC3_51_HEAD)
    assert surround.config == MOVENC_DEC3_51
    assert (surround.sample_rate, surround.channels) == (44100, 6)
    with pytest.raises(MediaError, match="bsid"):
        parse_eac3_frame(AC3_FRAME_HEAD[5:])


def test_mp3_legacy_and_enhanced() -> None:
    legacy = parse_audio(MP3_LEGACY)
    assert legacy == AudioFrame(".mp3", MP3_LEGACY[1:])
    assert parse_audio(b"\x91.mp3" + MP3_LEGACY[1:]) == legacy  # E-RTMP v2 FourCC .mp3
    assert isinstance(parse_audio(b"\x90.mp3"), Ignored)  # no configuration record exists
    config = parse_mp3_frame(legacy.data)
    assert (config.version, config.layer, config.sample_rate, config.channels) == (3, 3, 48000, 1)
    assert config.object_type == 0x6B and config.codec_string == "mp4a.40.34"
    assert mp3_samples(legacy.data) == 1152
    # MPEG-2 Layer III at 24 kHz: 576 samples, objectTypeIndication 0x69; two 192-byte frames
    # (64 kbit/s: 72 * 64000 / 24000 + 0 padding bytes each) in one tag: 1152.
    mpeg2 = b"\xff\xf3\x84\xc4" + bytes(188)
    assert parse_mp3_frame(mpeg2).object_type == 0x69 and mp3_samples(mpeg2) == 576
    assert mp3_samples(mpeg2 * 2) == 1152
    # Bitrate and padding vary per frame: the same configuration.
    assert parse_mp3_frame(b"\xff\xfb\x96\xc4") == config
    with pytest.raises(MediaError, match="reserved"):
        parse_mp3_frame(b"\xff\xfb\x5c\xc4")  # sampling frequency index 3


@pytest.mark.parametrize(
    ("body", "layout"),
    [
        (MULTICHANNEL_51, ChannelLayout("ac-3", 6, ("FL", "FR", "FC", "LFE1", "BL", "BR"))),
        (b"\x94fLaC\x00\x02", ChannelLayout("fLaC", 2, ())),  # Unspecified: only the count
        (b"\x94Opus\x02\x03\x01\x00\xff", ChannelLayout("Opus", 3, ("FR", "FL", "unknown"))),
    ],
)
def test_multichannel_config(body: bytes, layout: ChannelLayout) -> None:
    assert parse_audio(body) == layout


@pytest.mark.parametrize(
    "body",
    [
        b"\x94ac-3\x01",  # no count
        b"\x94ac-3\x01\x02\x00\x00\x00\x07",  # Native: the mask names 3 channels, not 2
        b"\x94ac-3\x02\x02\x00",  # Custom: mapping truncated
        b"\x94ac-3\x02\x01\x40",  # Custom: speaker 64 does not exist
        b"\x94ac-3\x03\x01",  # order 3 unknown
        b"\x94ac-3\x00\x00",  # 0 channels
    ],
)
def test_malformed_multichannel_config(body: bytes) -> None:
    with pytest.raises(MediaError, match="MultichannelConfig"):
        parse_audio(body)


@pytest.mark.parametrize(
    "body",
    [FLAC_START, FLAC_MULTICHANNEL, AC3_FRAME_HEAD, EAC3_FRAME_HEAD, MP3_LEGACY, MULTICHANNEL_51],
)
def test_every_prefix_of_a_golden_tag_parses_or_raises_media_error(body: bytes) -> None:
    for end in range(len(body) + 1):
        try:
            parse_audio(body[:end])
        except MediaError as exc:
            assert exc.reason


def _sample_entry(init: bytes, kind: bytes) -> bytes:
    at = init.index(kind) - 4
    return init[at : at + int.from_bytes(init[at : at + 4], "big")]


def test_init_segment_audio_sample_entries() -> None:
    flac = parse_flac_streaminfo(FLAC_START[5:])
    ac3 = parse_ac3_frame(AC3_FRAME_HEAD[5:])
    eac3 = parse_eac3_frame(EAC3_51_HEAD)
    mp3 = parse_mp3_frame(MP3_LEGACY[1:])
    # AudioSampleEntry (ISO/IEC 14496-12 §12.2.3): reserved, data_reference_index 1, reserved,
    # channelcount, samplesize, pre_defined, reserved, samplerate 16.16.
    head = bytes(6) + b"\x00\x01" + bytes(8)
    entry = _sample_entry(init_segment(None, flac), b"fLaC")
    assert entry[8:] == head + bytes.fromhex("0001 0010 0000 0000 bb800000") + full_box(
        b"dfLa", 0, 0, flac.dfla()
    )
    entry = _sample_entry(init_segment(None, ac3), b"ac-3")
    assert entry[8:] == head + bytes.fromhex("0001 0010 00000000 bb800000") + box(
        b"dac3", MOVENC_DAC3
    )
    entry = _sample_entry(init_segment(None, eac3), b"ec-3")
    assert entry[8:] == head + bytes.fromhex("0006 0010 00000000 ac440000") + box(
        b"dec3", MOVENC_DEC3_51
    )
    init = init_segment(None, mp3)
    esds = _sample_entry(init, b"esds")
    # ES_Descriptor > DecoderConfigDescriptor: objectTypeIndication 0x6B (MPEG-1 audio), audio
    # stream, no DecoderSpecificInfo; SLConfigDescriptor predefined 2.
    assert esds[12:] == bytes.fromhex("0315 000100 040d 6b150000000000000000000000 0601 02")
    assert b"mp4a" in init and b"\x00\x00\xbb\x80" in init  # timescale 48 kHz


# --- Whole streams: FFmpeg-made FLV through LiveStream, read back by FFmpeg (PyAV) ------------

CODECS = {
    # name: (FFmpeg args, decoder, CODECS entry, samples per frame, TS stream type or None)
    "flac": (("-c:a", "flac"), "flac", "fLaC", 1024, None),
    "ac3": (("-c:a", "ac3"), "ac3", "ac-3", 1536, 0x81),
    "eac3": (("-c:a", "eac3"), "eac3", "ec-3", 1536, 0x87),
    "mp3": (("-c:a", "libmp3lame"), "mp3float", "mp4a.40.34", 1152, 0x03),
}


def _flv(media_dir: Path, name: str) -> bytes:
    return make_flv(
        media_dir / f"audio-{name}.flv",
        *("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=15"),
        *("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"),
        *("-c:v", "libx264", "-preset", "ultrafast", "-g", "15", "-pix_fmt", "yuv420p"),
        *CODECS[name][0],
        *("-t", "3"),
    )


def _streams(data: bytes, fmt: str) -> dict[str, tuple[str, int, int, list[int]]]:
    """Per stream type: decoder name, sample rate, decoded frames, packet durations."""
    out: dict[str, tuple[str, int, int, list[int]]] = {}
    with av.open(io.BytesIO(data), mode="r", format=fmt) as container:
        frames = {s.type: 0 for s in container.streams}
        durations: dict[str, list[int]] = {s.type: [] for s in container.streams}
        for packet in container.demux():
            if packet.size == 0:
                continue
            durations[packet.stream.type].append(packet.duration or 0)
            frames[packet.stream.type] += len(packet.decode())
        for s in container.streams:
            rate = s.sample_rate if isinstance(s, av.AudioStream) else 0
            out[s.type] = (s.codec_context.codec.name, rate, frames[s.type], durations[s.type])
    return out


def _pmt_stream_types(segment: bytes) -> list[int]:
    for at in range(0, len(segment), 188):
        packet = segment[at : at + 188]
        if not packet[1] & 0x40 or packet[3] & 0x20:
            continue
        section = packet[5 + packet[4] :]
        if section[0] != 0x02:
            continue
        end = 3 + (((section[1] & 0x0F) << 8) | section[2]) - 4
        pos = 12 + (((section[10] & 0x0F) << 8) | section[11])
        types = []
        while pos < end:
            types.append(section[pos])
            pos += 5 + (((section[pos + 3] & 0x0F) << 8) | section[pos + 4])
        return types
    raise AssertionError("no PMT")


@pytest.mark.parametrize("name", list(CODECS))
def test_stream_through_cmaf_and_ts(media_dir: Path, name: str) -> None:
    _, decoder, codec, samples, stream_type = CODECS[name]
    store = MemoryStore()
    live = LiveStream("live/a", store, SegmenterConfig())
    live.begin_session(0.0, "127.0.0.1:4000")
    for tag in tags(_flv(media_dir, name)):
        live.feed(tag, tag.timestamp / 1000)
    live.close(10.0)
    stats = live.stats()
    assert stats["codecs"][1:] == [codec] and stats["uncarried"] == []
    assert (stats["audio_sample_rate"], stats["audio_channels"]) == (48000, 1)
    assert stats["malformed"] == 0 and stats["warnings"] == [], stats
    if name != "mp3":  # FFmpeg sends MultichannelConfig with the E-RTMP FourCCs only
        assert stats["audio_channel_layout"] == ["FC"]
    index = store.get("live/a/index.m3u8")
    assert index is not None and f'CODECS="{",".join(stats["codecs"])}"' in index.decode()
    assert stats["codecs"][0].startswith("avc1.")
    # MP3 plays in browsers from TS only (audio/mpeg): index.m3u8 points there when TS has it.
    playlist = "ts.m3u8" if name == "mp3" else "cmaf.m3u8"
    assert index.decode().rstrip().endswith("\n" + playlist)

    names = store.names()
    (init_name,) = [n for n in names if "/init-" in n]
    m4s = sorted((n for n in names if n.endswith(".m4s")), key=lambda n: int(n[:-4].split("-")[-1]))
    cmaf = b"".join(store.get(n) or b"" for n in [init_name, *m4s])
    decoded = _streams(cmaf, "mp4")
    audio_decoder, rate, frames, durations = decoded["audio"]
    # 3 s of audio, less what came before the first keyframe and the encoder's last partial frame.
    assert audio_decoder == decoder and rate == 48000 and frames >= 3 * 48000 // samples - 2
    # Every sample lasts exactly one frame of the codec (the trun's durations).
    assert set(durations[:-1]) == {samples}, sorted(set(durations))
    assert decoded["video"][2] == 45  # 3 s at 15 fps: every frame

    if stream_type is None:  # FLAC: no ts.m3u8, and the reason
        assert stats["ts"] is not None and "not FLAC" in stats["ts"]
        assert not any(n.endswith(".ts") for n in names)
        return
    assert stats["ts"] is None
    ts_names = sorted(
        (n for n in names if n.endswith(".ts")), key=lambda n: int(n[:-3].split("-")[-1])
    )
    segments = [store.get(n) or b"" for n in ts_names]
    assert all(_pmt_stream_types(s) == [0x1B, stream_type] for s in segments)
    ts = _streams(b"".join(segments), "mpegts")
    assert ts["audio"][:2] == (decoder, 48000) and ts["audio"][2] == frames
    assert ts["video"][2] == 45


@given(st.binary(max_size=64))
@settings(max_examples=300, deadline=None)
def test_any_frame_header_parses_or_raises_media_error(data: bytes) -> None:
    # Anything but a MediaError (IndexError, ValueError, ...) fails the test.
    for fourcc in ("ac-3", "ec-3", ".mp3"):
        try:
            audio_config_from_frame(fourcc, data)
        except MediaError as exc:
            assert exc.reason
    for fourcc in ("fLaC", "ac-3", "ec-3", ".mp3", "Opus", "mp4a"):
        assert audio_frame_samples(fourcc, data) > 0
    try:
        parse_flac_streaminfo(data)
    except MediaError as exc:
        assert exc.reason


def test_eac3_access_unit_of_tiny_syncframes_is_refused() -> None:
    # frmsiz 3: 8-byte syncframes, valid heads, 100 of them in one tag.
    tiny = bytes.fromhex("0b7700033287c000")
    assert eac3_samples(tiny * 2) == 3072
    with pytest.raises(MediaError, match="more than 72 syncframes"):
        eac3_samples(tiny * 100)
    with pytest.raises(MediaError, match="too short"):
        eac3_samples(bytes.fromhex("0b7700003287c000"))
