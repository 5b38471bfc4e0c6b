"""Segment muxing behind a small boundary, with PyAV's MPEG-TS muxer as the first implementation.

The cutter and the playlist only see ``SegmentMuxer``: ``start`` a track configuration, ``write``
samples in DTS order, ``cut`` to get the finished segment's bytes. An fMP4/CMAF muxer can be added
next to ``TsMuxer`` without touching them.

TS design (measured on PyAV 18): one short-lived PyAV container per segment (~30 us) makes every
segment start with PAT/PMT and keeps it decodable alone. Timestamps are passed through unchanged, so
they continue across segments. Only the 4-bit continuity counters restart in a fresh container;
``ContinuityRewriter`` renumbers them per PID so they continue too (ISO/IEC 13818-1 §2.4.3.3),
which FFmpeg's HLS reader checks. The alternative, one long-lived container split at the PAT before
each keyframe, does not work for audio-only streams (no PAT is forced at an audio cut) and needs a
byte-level search anyway; renumbering works on runs of packets of one PID with strided slices and
byte tables (~0.4 ms per 2 s segment at 2.6 Mbps), in 64 kB batches so that a cut leaves one.
Muxing runs inline (no threads): a thread made it slower because of GIL handoffs.
"""

from __future__ import annotations

import contextlib
from typing import Protocol

import av
import av.error

from segmenter.codecs import (
    AacConfig,
    Ac3Config,
    AvcConfig,
    Eac3Config,
    HevcConfig,
    MediaError,
    Mp3Config,
    adts_header,
    avcc_to_annexb,
    hevc_to_annexb,
)
from segmenter.cutter import AUDIO, Sample

TS_PACKET = 188
_TS_SYNC = 0x47
_SDT_PID = 0x11  # DVB Service Description Table (ETSI EN 300 468 §5.1.3)
_TS_PER_MS = 90  # MPEG-TS clock ticks per millisecond (samples carry the FLV ms clock)
# ContinuityRewriter tables: byte 3 of a TS header is scrambling(2) adaptation(2) counter(4).
_NO_PAYLOAD = bytes(0 if b & 0x10 else 1 for b in range(256))
_HIGH_NIBBLE = bytes(b & 0xF0 for b in range(256))
_PID_HIGH = bytes(b & 0x1F for b in range(256))  # byte 1 minus the error/start/priority flags
# Bytes the muxer output is renumbered in at once (~350 TS packets, ~0.2 ms).
_BATCH = 65536
_NONZERO = bytes(min(b, 1) for b in range(256))
_CC_CYCLE = bytes(range(16)) * 64


def _int(data: bytes | bytearray) -> int:
    return int.from_bytes(data, "big")


# Audio the TS output carries, with PyAV's codec name: AAC as ADTS (stream type 0x0F), MP3 as
# MPEG-1/2 audio (0x03 / 0x04), AC-3 (0x81) and E-AC-3 (0x87) as ATSC A/52 Annex G lays them out
# (what FFmpeg's muxer writes; each frame as sent, they are self-delimiting).
TsAudioConfig = AacConfig | Mp3Config | Ac3Config | Eac3Config
_TS_AUDIO_CODECS = {"mp4a": "aac", ".mp3": "mp3", "ac-3": "ac3", "ec-3": "eac3"}


class SegmentMuxer(Protocol):
    """Turns samples of one track configuration into self-contained segments."""

    extension: str  # file name suffix, e.g. ".ts"
    content_type: str  # HTTP media type of a segment

    def start(self, video: AvcConfig | HevcConfig | None, audio: TsAudioConfig | None) -> None:
        """Use this configuration from the next segment on; drops an unfinished segment."""

    def write(self, sample: Sample) -> None:
        """Add one sample (DTS order across tracks) to the current segment; MediaError if bad."""

    def cut(self) -> tuple[bytes, ...]:
        """Finish the current segment and return its bytes as chunks in order (() if nothing
        was written); the store writes or joins them (segmenter.store.Data)."""


class ContinuityRewriter:
    """Renumbers TS continuity counters so they run on across separately muxed segments.

    Packets of ``drop_pids`` are removed: FFmpeg writes the DVB SDT (PID 0x11) before the PAT,
    but RFC 8216 §3.2 wants a PAT and PMT at the start of each segment and HLS has no use for it.
    """

    def __init__(self, drop_pids: frozenset[int] = frozenset()) -> None:
        self.counters: dict[int, int] = {}  # last continuity counter per PID
        self._drop = drop_pids

    def rewrite(self, data: bytes) -> bytes:
        n = len(data) // TS_PACKET
        if len(data) % TS_PACKET:
            raise MediaError("TS output is not a whole number of packets")
        # Header bytes of all packets are gathered with strided slices (C loops), and packets are
        # handled per run of one PID (~20 packets here) instead of one by one: a run with a
        # payload in every packet gets its counters as one slice of a 0..15 cycle.
        if data[::TS_PACKET].count(_TS_SYNC) != n:
            raise MediaError("TS output lost packet sync")
        if not n:
            return b""
        high = data[1::TS_PACKET].translate(_PID_HIGH)
        low = data[2::TS_PACKET]
        flags = data[3::TS_PACKET]
        nopay = flags.translate(_NO_PAYLOAD)
        # Byte i is 1 where packet i + 1 has another PID than packet i (big ints XOR in C).
        changed = (_int(high[1:]) ^ _int(high[:-1])) | (_int(low[1:]) ^ _int(low[:-1]))
        ends = changed.to_bytes(n - 1, "big").translate(_NONZERO)
        cycle = _CC_CYCLE if n < len(_CC_CYCLE) - 16 else bytes(range(16)) * (n // 16 + 2)
        ccs = bytearray(n)
        last, drop = self.counters, self._drop
        dropped: list[tuple[int, int]] = []
        start = 0
        while start < n:
            end = ends.find(1, start) + 1 or n
            pid = (high[start] << 8) | low[start]
            if pid in drop:
                dropped.append((start, end))
            else:
                cc = last.get(pid, 15)
                if nopay.find(1, start, end) < 0:
                    # §2.4.3.3: the counter increments on each packet with a payload
                    first = (cc + 1) & 0x0F
                    ccs[start:end] = cycle[first : first + end - start]
                    last[pid] = (cc + end - start) & 0x0F
                else:
                    for i in range(start, end):
                        if not nopay[i]:
                            cc = (cc + 1) & 0x0F
                        ccs[i] = cc
                    last[pid] = cc
            start = end
        # The counter is the low nibble of byte 3: keep the high one and add the new counters.
        kept = _int(flags.translate(_HIGH_NIBBLE))
        buf = bytearray(data)
        buf[3::TS_PACKET] = (kept | _int(ccs)).to_bytes(n, "big")
        if not dropped:
            return bytes(buf)
        view = memoryview(buf)
        parts, at = [], 0
        for start, end in dropped:
            parts.append(view[at : start * TS_PACKET])
            at = end * TS_PACKET
        parts.append(view[at:])
        return b"".join(parts)


class _Sink:
    """Write target of the muxer. FFmpeg writes about once per PES packet (~26 TS packets here),
    too little to renumber alone (the rewriter's fixed cost per call would dominate), so whole TS
    packets are renumbered in batches of ``batch`` bytes: a cut has at most one batch left."""

    def __init__(self, cc: ContinuityRewriter, batch: int = _BATCH) -> None:
        self._cc = cc
        self._batch = batch
        self._pending: list[bytes] = []  # written, not renumbered yet
        self._pending_size = 0
        self._parts: list[bytes] = []
        self._error: MediaError | None = None  # raised by take(): never into FFmpeg's callback

    def write(self, data: bytes) -> int:
        if self._error is None:
            self._pending.append(bytes(data))
            self._pending_size += len(data)
            if self._pending_size >= self._batch:
                self._flush()
        return len(data)

    def _flush(self) -> None:
        buf = b"".join(self._pending)
        whole = len(buf) - len(buf) % TS_PACKET  # a write may end inside a packet
        self._pending = [buf[whole:]] if whole < len(buf) else []
        self._pending_size = len(buf) - whole
        try:
            self._parts.append(self._cc.rewrite(buf[:whole] if self._pending else buf))
        except MediaError as exc:
            self._error = exc

    def take(self) -> tuple[bytes, ...]:
        if self._error is None and self._pending:
            self._flush()
        if self._error is not None:
            raise self._error
        if self._pending:
            raise MediaError("TS output is not a whole number of packets")
        return tuple(self._parts)


class TsMuxer:
    """MPEG-TS segments via PyAV: H.264 as Annex-B with SPS/PPS before IDRs, HEVC as Annex-B with
    VPS/SPS/PPS before IRAPs (stream types 0x1B, 0x24: ISO/IEC 13818-1 Table 2-34), AAC as ADTS,
    MP3, AC-3 and E-AC-3 frames as sent."""

    extension = ".ts"
    content_type = "video/mp2t"

    def __init__(self) -> None:
        self._video: AvcConfig | HevcConfig | None = None
        self._audio: TsAudioConfig | None = None
        self._container: av.container.OutputContainer | None = None
        self._streams: dict[str, av.stream.Stream] = {}
        self._cc = ContinuityRewriter(drop_pids=frozenset({_SDT_PID}))
        self._sink = _Sink(self._cc)
        self._cc_at_open: dict[int, int] = {}  # counters to go back to if a segment is dropped

    def start(self, video: AvcConfig | HevcConfig | None, audio: TsAudioConfig | None) -> None:
        self._discard()
        self._video, self._audio = video, audio

    def _open(self) -> av.container.OutputContainer:
        self._cc_at_open = dict(self._cc.counters)
        self._sink = _Sink(self._cc)
        container = av.open(self._sink, "w", format="mpegts")
        self._streams = {}
        if self._video is not None:
            info = self._video.info
            codec = "hevc" if isinstance(self._video, HevcConfig) else "h264"
            self._streams["video"] = container.add_mux_stream(
                codec, width=info.width, height=info.height
            )
        if self._audio is not None:
            codec = _TS_AUDIO_CODECS[self._audio.fourcc]
            self._streams[AUDIO] = container.add_mux_stream(codec, rate=self._audio.sample_rate)
        self._container = container
        return container

    def write(self, sample: Sample) -> None:
        if sample.kind == AUDIO:
            if self._audio is None:
                raise MediaError("audio sample without an audio configuration")
            audio = self._audio
            if isinstance(audio, AacConfig):
                payload = adts_header(audio, len(sample.data)) + sample.data
            else:
                payload = sample.data
        else:
            if self._video is None:
                raise MediaError("video sample without a video configuration")
            video = self._video
            if isinstance(video, HevcConfig):
                payload, _ = hevc_to_annexb(sample.data, video)
            else:
                payload, _ = avcc_to_annexb(sample.data, video)
        container = self._container or self._open()
        packet = av.Packet(payload)
        packet.stream = self._streams[sample.kind]
        # Given in the stream's 90 kHz time base (ISO/IEC 13818-1 §2.4.2.2; ms * 90 is exactly what
        # PyAV's rescale from 1/1000 gave): no Fraction to convert or rescale per packet.
        packet.dts = sample.dts * _TS_PER_MS
        packet.pts = sample.pts * _TS_PER_MS
        packet.is_keyframe = sample.keyframe
        try:
            container.mux_one(packet)
        except av.error.FFmpegError as exc:
            raise MediaError(f"muxer refused a {sample.kind} sample: {exc}") from exc

    def cut(self) -> tuple[bytes, ...]:
        if self._container is None:
            return ()
        try:
            self._container.close()
            return self._sink.take()
        except av.error.FFmpegError as exc:
            self._cc.counters = self._cc_at_open
            raise MediaError(f"muxer failed to finish the segment: {exc}") from exc
        except MediaError:
            self._cc.counters = self._cc_at_open
            raise
        finally:
            self._container = None

    def _discard(self) -> None:
        if self._container is not None:
            with contextlib.suppress(av.error.FFmpegError):  # abandoned: its bytes are dropped
                self._container.close()
            self._container = None
            self._cc.counters = self._cc_at_open
