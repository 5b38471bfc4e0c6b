"""Fragmented MP4 (CMAF) boxes written by hand: one init segment per track configuration and one
``moof`` + ``mdat`` fragment per LL-HLS part (ISO/IEC 14496-12, CMAF ISO/IEC 23000-19).

Why not PyAV's mp4 muxer (measured, see docs/llhls.md): its fragments are cut where FFmpeg decides
(``frag_duration``; ``frag_custom`` cannot be flushed on demand from PyAV), so parts could not
follow our segment and part boundaries exactly; a stream made with ``add_mux_stream`` or from a
template drops the avcC/ASC and the picture size in the init segment; and each packet costs a
Python -> C round trip. Here a sample is appended to a list; a part is cut into one buffer
(``moof`` + ``mdat`` header, packed in place) and joined with the samples' bytes.
The FLV payloads go in as they are: length-prefixed NAL units (avcC's / hvcC's length size), AV1
OBUs (less a leading temporal delimiter), VP9 frames, raw AAC, Opus packets, FLAC frames, AC-3 /
E-AC-3 syncframes and MP3 frames are what ``avc1``, ``hvc1``, ``av01``, ``vp09``, ``mp4a``,
``Opus``, ``fLaC``, ``ac-3``, ``ec-3`` and (MP3) ``mp4a`` samples hold.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from segmenter.codecs import (
    OPUS_RATE,
    Ac3Config,
    AudioConfig,
    Av1Config,
    AvcConfig,
    Eac3Config,
    FlacConfig,
    HevcConfig,
    Mp3Config,
    OpusConfig,
    VideoConfig,
    audio_frame_samples,
    strip_temporal_delimiter,
    usual_frame_samples,
)

VIDEO_TIMESCALE = 90_000  # ticks per second of the video track (ms * 90, exact)
VIDEO_TICKS_PER_MS = VIDEO_TIMESCALE // 1000
AAC_FRAME_SAMPLES = usual_frame_samples("mp4a")  # ISO/IEC 14496-3 §4.5.2.1: a raw AAC-LC frame
# An audio frame whose millisecond timestamp lands within this much of where the previous frame
# ends is placed right there, so durations stay whole frames (1024 samples) although FLV rounds
# its clock to milliseconds; a larger difference is a real gap or overlap and is kept.
AUDIO_SNAP_MS = 2

# §8.8.3.1 sample_flags: sample_depends_on (bits 24-25) and sample_is_non_sync_sample (bit 16).
SYNC_SAMPLE_FLAGS = 0x0200_0000
NON_SYNC_SAMPLE_FLAGS = 0x0101_0000
# §8.8.7 tfhd: default-base-is-moof (data offsets count from the moof, as CMAF requires).
_TFHD_DEFAULT_BASE_IS_MOOF = 0x02_0000
# §8.8.8 trun: data-offset, sample duration, size, flags and composition offset present.
_TRUN_FLAGS = 0x000001 | 0x000100 | 0x000200 | 0x000400 | 0x000800
# Box sizes of a fragment: moof (8) + mfhd (16); per track traf (8) + tfhd (16) + tfdt v1 (20)
# + trun header (20), and 16 bytes per sample (duration, size, flags, composition offset).
MOOF_HEADER_SIZE = 8 + 16
TRAF_SIZE = 8 + 16 + 20 + 20
TRUN_SAMPLE_SIZE = 16
_UNITY_MATRIX = struct.pack(">9i", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
_pack_into = struct.pack_into
_LANGUAGE_UND = ((ord("u") - 0x60) << 10) | ((ord("n") - 0x60) << 5) | (ord("d") - 0x60)


def box(kind: bytes, *payload: bytes) -> bytes:
    """A box (§4.2): 32-bit size, four-character type, payload."""
    size = 8 + sum(len(p) for p in payload)
    return struct.pack(">I4s", size, kind) + b"".join(payload)


def full_box(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    """A FullBox (§4.2): version u8 and 24-bit flags before the payload."""
    return box(kind, struct.pack(">I", (version << 24) | flags), *payload)


def _descriptor(tag: int, payload: bytes) -> bytes:
    """An MPEG-4 descriptor (ISO/IEC 14496-1 §8.3.3): tag, expandable size, payload."""
    size, encoded = len(payload), [len(payload) & 0x7F]
    while size > 0x7F:
        size >>= 7
        encoded.insert(0, 0x80 | (size & 0x7F))
    return bytes([tag, *encoded]) + payload


@dataclass(frozen=True, slots=True)
class Track:
    """One track of the init segment: its id, kind and timescale (ticks per second)."""

    track_id: int
    kind: str  # "video" or "audio"
    timescale: int
    codec: str = ""  # the codec's FourCC (avc1, hvc1, av01, vp09, mp4a, Opus, fLaC, ac-3, ec-3,
    # .mp3: an mp4a sample entry)


def default_duration(track: Track) -> int:
    """A sample duration to assume before a track has shown its own (ticks)."""
    if track.kind == "audio":
        return usual_frame_samples(track.codec)
    return track.timescale // 30


def tracks_for(video: VideoConfig | None, audio: AudioConfig | None) -> list[Track]:
    tracks: list[Track] = []
    if video is not None:
        tracks.append(Track(len(tracks) + 1, "video", VIDEO_TIMESCALE, video.fourcc))
    if audio is not None:
        tracks.append(Track(len(tracks) + 1, "audio", audio.sample_rate, audio.fourcc))
    return tracks


def init_segment(video: VideoConfig | None, audio: AudioConfig | None) -> bytes:
    """ftyp + moov for the given configuration (CMAF §7.3.1: no samples, an mvex per track)."""
    tracks = tracks_for(video, audio)
    if not tracks:
        raise ValueError("an init segment needs at least one track")
    ftyp = box(b"ftyp", b"iso6", struct.pack(">I", 0), b"iso6cmfcmp41")
    mvhd = full_box(
        b"mvhd", 0, 0,
        struct.pack(">IIIIIH", 0, 0, 1000, 0, 0x10000, 0x0100), bytes(10),
        _UNITY_MATRIX, bytes(24), struct.pack(">I", len(tracks) + 1),
    )  # fmt: skip
    traks = []
    for track in tracks:
        if track.kind == "video":
            assert video is not None
            traks.append(_video_trak(track, video))
        else:
            assert audio is not None
            traks.append(_audio_trak(track, audio))
    trex = [full_box(b"trex", 0, 0, struct.pack(">5I", t.track_id, 1, 0, 0, 0)) for t in tracks]
    return ftyp + box(b"moov", mvhd, *traks, box(b"mvex", *trex))


def _trak(track: Track, width: int, height: int, handler: bytes, media_header: bytes,
          sample_entry: bytes) -> bytes:  # fmt: skip
    audio = handler == b"soun"
    tkhd = full_box(
        b"tkhd", 0, 0x000003,  # enabled, in movie
        struct.pack(">IIIII", 0, 0, track.track_id, 0, 0), bytes(8),
        struct.pack(">hhhH", 0, 0, 0x0100 if audio else 0, 0), _UNITY_MATRIX,
        struct.pack(">II", width << 16, height << 16),
    )  # fmt: skip
    mdhd = full_box(
        b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, track.timescale, 0, _LANGUAGE_UND, 0)
    )
    name = b"VideoHandler\0" if not audio else b"SoundHandler\0"
    hdlr = full_box(b"hdlr", 0, 0, struct.pack(">I4s", 0, handler), bytes(12), name)
    dinf = box(b"dinf", full_box(b"dref", 0, 0, struct.pack(">I", 1), full_box(b"url ", 0, 1)))
    stbl = box(
        b"stbl",
        full_box(b"stsd", 0, 0, struct.pack(">I", 1), sample_entry),
        full_box(b"stts", 0, 0, struct.pack(">I", 0)),
        full_box(b"stsc", 0, 0, struct.pack(">I", 0)),
        full_box(b"stsz", 0, 0, struct.pack(">II", 0, 0)),
        full_box(b"stco", 0, 0, struct.pack(">I", 0)),
    )
    minf = box(b"minf", media_header, dinf, stbl)
    return box(b"trak", tkhd, box(b"mdia", mdhd, hdlr, minf))


def _video_config_box(video: VideoConfig) -> bytes:
    """The decoder configuration box of a visual sample entry, holding the publisher's record."""
    if isinstance(video, AvcConfig):
        return box(b"avcC", video.record)  # ISO/IEC 14496-15 §5.4.2.1
    if isinstance(video, HevcConfig):
        return box(b"hvcC", video.record)  # ISO/IEC 14496-15 §8.4.1.1
    if isinstance(video, Av1Config):
        return box(b"av1C", video.record)  # AV1-ISOBMFF §2.3
    return box(b"vpcC", video.record)  # VP codec ISO media file format §2.2 (FullBox payload)


def _video_trak(track: Track, video: VideoConfig) -> bytes:
    width, height = video.info.width, video.info.height
    # §12.1.3 VisualSampleEntry + the codec's configuration box.
    entry = box(
        video.fourcc.encode("latin-1"),
        bytes(6), struct.pack(">H", 1),  # reserved, data_reference_index
        bytes(16), struct.pack(">HH", width, height),
        struct.pack(">IIIH", 0x00480000, 0x00480000, 0, 1),  # 72 dpi, reserved, frame_count
        bytes(32), struct.pack(">Hh", 0x0018, -1),  # compressorname, depth, pre_defined
        _video_config_box(video),
    )  # fmt: skip
    vmhd = full_box(b"vmhd", 0, 1, bytes(8))
    return _trak(track, width, height, b"vide", vmhd, entry)


def _audio_entry(kind: bytes, channels: int, sample_size: int, rate: int, *boxes: bytes) -> bytes:
    """ISO/IEC 14496-12 §12.2.3 AudioSampleEntry (version 0): samplerate is 16.16 fixed point,
    0 where the rate does not fit (the track's timescale has it)."""
    rate = rate if rate < 0x10000 else 0
    return box(
        kind,
        bytes(6), struct.pack(">H", 1), bytes(8),
        struct.pack(">HHHH", max(1, channels), sample_size, 0, 0), struct.pack(">I", rate << 16),
        *boxes,
    )  # fmt: skip


def _audio_trak(track: Track, audio: AudioConfig) -> bytes:
    smhd = full_box(b"smhd", 0, 0, bytes(4))
    if isinstance(audio, FlacConfig):
        # FLAC in ISOBMFF §3.3.1: 'fLaC' entry, samplesize = bits per sample, + dfLa (§3.3.2).
        entry = _audio_entry(
            b"fLaC", audio.channels, audio.bits_per_sample, audio.sample_rate,
            full_box(b"dfLa", 0, 0, audio.dfla()),
        )  # fmt: skip
        return _trak(track, 0, 0, b"soun", smhd, entry)
    if isinstance(audio, Ac3Config | Eac3Config):
        # ETSI TS 102 366 §F.3 / §F.5: 'ac-3' + dac3, 'ec-3' + dec3 (plain boxes).
        kind = audio.fourcc.encode("latin-1")
        config_box = box(b"dac3" if isinstance(audio, Ac3Config) else b"dec3", audio.config)
        entry = _audio_entry(kind, audio.channels, 16, audio.sample_rate, config_box)
        return _trak(track, 0, 0, b"soun", smhd, entry)
    if isinstance(audio, OpusConfig):
        # Opus in ISOBMFF §4.3.1: an AudioSampleEntry 'Opus' at 48 kHz, samplesize 16, + dOps.
        entry = box(
            b"Opus",
            bytes(6), struct.pack(">H", 1), bytes(8),
            struct.pack(">HHHH", audio.channels, 16, 0, 0), struct.pack(">I", OPUS_RATE << 16),
            box(b"dOps", audio.dops()),
        )  # fmt: skip
        return _trak(track, 0, 0, b"soun", full_box(b"smhd", 0, 0, bytes(4)), entry)
    # ISO/IEC 14496-14 §5.6 esds: ES_Descriptor > DecoderConfigDescriptor (AAC, audio stream)
    # > DecoderSpecificInfo (the AudioSpecificConfig), SLConfigDescriptor (predefined 2).
    # objectTypeIndication 0x40 (MPEG-4 audio), streamType 5 (audio) << 2 | reserved 1, then
    # bufferSizeDB (u24), maxBitrate and avgBitrate (u32): unknown, 0. MP3 is object type 0x6B
    # (MPEG-1) or 0x69 (MPEG-2) with no DecoderSpecificInfo (MP4 registration authority).
    if isinstance(audio, Mp3Config):
        decoder_config = _descriptor(0x04, bytes([audio.object_type, 0x15]) + bytes(11))
    else:
        decoder_config = _descriptor(
            0x04, bytes([0x40, 0x15]) + bytes(11) + _descriptor(0x05, audio.config)
        )
    es = _descriptor(0x03, struct.pack(">HB", track.track_id, 0) + decoder_config
                     + _descriptor(0x06, b"\x02"))  # fmt: skip
    mp4a = _audio_entry(b"mp4a", audio.channels, 16, audio.sample_rate, full_box(b"esds", 0, 0, es))
    return _trak(track, 0, 0, b"soun", smhd, mp4a)


@dataclass(slots=True)
class _Run:
    """The samples of one track in the fragment being built."""

    track: Track
    base: int | None = None  # decode time of the first sample (track ticks)
    last: int | None = None  # decode time of the newest sample
    step: int = 0  # the track's last sample duration, for the newest sample's duration
    entries: list[tuple[int, int, int, int]] = field(default_factory=list)  # dts, size, flags, cto
    data: list[bytes] = field(default_factory=list)


class FragmentWriter:
    """Collects samples (decode order per track) and turns them into ``moof`` + ``mdat``.

    Decode times continue across fragments and across ``init`` changes (``tfdt`` is absolute on
    the output timeline), so parts and segments of a stream line up for players that reload.
    """

    def __init__(self, tracks: list[Track]) -> None:
        self.tracks = tracks
        self._runs = {t.kind: _Run(t) for t in tracks}
        self._sequence = 0  # mfhd sequence_number of the last fragment
        self._audio_next: int | None = None  # where the next audio frame snaps to (ticks)
        audio = next((t for t in tracks if t.kind == "audio"), None)
        self._audio_codec = audio.codec if audio is not None else ""
        video = next((t for t in tracks if t.kind == "video"), None)
        self._av1 = video is not None and video.codec == "av01"

    def add(self, kind: str, dts_ms: int, pts_ms: int, keyframe: bool, data: bytes) -> None:
        run = self._runs[kind]
        if kind == "video":
            dts = dts_ms * VIDEO_TICKS_PER_MS
            cto = (pts_ms - dts_ms) * VIDEO_TICKS_PER_MS
            flags = SYNC_SAMPLE_FLAGS if keyframe else NON_SYNC_SAMPLE_FLAGS
            if self._av1:
                data = strip_temporal_delimiter(data)
        else:
            rate = run.track.timescale
            dts = dts_ms * rate // 1000
            expected = self._audio_next
            if expected is not None and abs(dts - expected) <= AUDIO_SNAP_MS * rate // 1000:
                dts = expected
            # Frame lengths per codec (codecs.audio_frame_samples): Opus 2.5 to 120 ms off its
            # TOC byte, FLAC's block size, E-AC-3 and MP3 off their headers, AAC 1024.
            self._audio_next = dts + audio_frame_samples(self._audio_codec, data)
            cto, flags = 0, SYNC_SAMPLE_FLAGS
        if run.last is not None:
            if dts <= run.last:  # the timeline keeps DTS increasing; a snap must not undo it
                dts = run.last + 1
            run.step = dts - run.last
        if run.base is None:
            run.base = dts
        run.last = dts
        run.entries.append((dts, len(data), flags, cto))
        run.data.append(data)

    @property
    def empty(self) -> bool:
        return not any(run.entries for run in self._runs.values())

    def flush(self) -> bytes:
        """The fragment of every sample added since the last flush (b"" if there are none)."""
        runs = [r for r in self._runs.values() if r.entries]
        if not runs:
            return b""
        self._sequence += 1
        # §8.8.8.1: data offsets count from the start of the moof, whose size is known ahead.
        moof_size = MOOF_HEADER_SIZE + sum(
            TRAF_SIZE + TRUN_SAMPLE_SIZE * len(r.entries) for r in runs
        )
        # One buffer for the moof and the mdat header, packed in place: no bytes per box or
        # per sample.
        head = bytearray(moof_size + 8)
        _pack_into(">I4sI4sII", head, 0, moof_size, b"moof", 16, b"mfhd", 0, self._sequence)
        pos, offset = MOOF_HEADER_SIZE, moof_size + 8
        chunks: list[bytes | bytearray] = [head]
        for run in runs:
            entries = run.entries
            assert run.base is not None
            count = len(entries)
            trun_size = 20 + TRUN_SAMPLE_SIZE * count
            _pack_into(
                ">I4sI4sIII4sIQI4sIIi", head, pos,
                TRAF_SIZE - 20 + trun_size, b"traf",
                16, b"tfhd", _TFHD_DEFAULT_BASE_IS_MOOF, run.track.track_id,
                20, b"tfdt", 1 << 24, run.base,  # version 1: 64-bit decode time
                trun_size, b"trun", (1 << 24) | _TRUN_FLAGS, count, offset,
            )  # fmt: skip
            pos += TRAF_SIZE
            default = default_duration(run.track)
            for i in range(count):
                dts, size, flags, cto = entries[i]
                duration = entries[i + 1][0] - dts if i + 1 < count else run.step
                _pack_into(">IIIi", head, pos, max(duration or default, 0), size, flags, cto)
                pos += TRUN_SAMPLE_SIZE
                offset += size
            chunks += run.data
            run.entries, run.data, run.base = [], [], None
        assert pos == moof_size
        _pack_into(">I4s", head, moof_size, offset - moof_size, b"mdat")
        # One copy of the samples into one object: keeping the samples themselves alive for as
        # long as the part is listed fragmented the heap (malloc's CPU doubled, perf).
        return b"".join(chunks)
