"""The formats a live stream is written in, each with its own media playlist in the store.

``TsOutput``: MPEG-TS segments and ``ts.m3u8`` (RFC 8216), for every HLS player.
``CmafOutput``: fMP4 (CMAF) segments made of parts and the Low-Latency HLS ``cmaf.m3u8``
(rfc8216bis §4.4.4.9, §4.4.5.3, §6.2.5): an init segment per track configuration (EXT-X-MAP),
one ``moof`` + ``mdat`` per part, and a segment that is its parts put together. Init segments,
segments and a whole-segment ``cmaf.m3u8`` go to the store; the parts and the LL-HLS playlist
stay in memory, where the web side serves them (only this process can answer a blocking
reload anyway): five parts and five playlist versions a second per stream never reach a disk.

``LiveStream`` decides where segments begin and end (the cutter) and hands each output the same
samples and cuts, so both playlists list the same media under the same sequence numbers.
"""

from __future__ import annotations

import collections
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from segmenter.codecs import (
    AacConfig,
    Ac3Config,
    AudioConfig,
    AvcConfig,
    Eac3Config,
    HevcConfig,
    Mp3Config,
    VideoConfig,
)
from segmenter.cutter import AUDIO, VIDEO, Sample
from segmenter.fmp4 import FragmentWriter, init_segment, tracks_for
from segmenter.keeper import CMAF_PLAYLIST_NAME, TS_PLAYLIST_NAME, PlaylistKeeper
from segmenter.mux import SegmentMuxer, TsMuxer
from segmenter.playlist import PartEntry, SegmentEntry
from segmenter.store import Store, size_of

# Frame steps above this are gaps, not the frame rate, and do not widen PART-TARGET.
MAX_PACER_STEP_MS = 100


# What the MPEG-TS output carries: H.264, HEVC, AAC, MP3 (ISO/IEC 13818-1 stream types 0x1B,
# 0x24, 0x0F, 0x03/0x04), AC-3 and E-AC-3 (ATSC A/52 Annex G: 0x81, 0x87). FLAC has no TS mapping.
_CODEC_NAMES = {"av01": "AV1", "vp09": "VP9", "Opus": "Opus", "fLaC": "FLAC"}
_TS_CODECS = (AvcConfig, HevcConfig, AacConfig, Mp3Config, Ac3Config, Eac3Config)
TS_CARRIES = "H.264, HEVC, AAC, MP3, AC-3 and E-AC-3"


def ts_refusal(video: VideoConfig | None, audio: AudioConfig | None) -> str | None:
    """Why the TS output cannot carry this track set, or None when it can."""
    names = [
        _CODEC_NAMES.get(c.fourcc, c.fourcc)
        for c in (video, audio)
        if c is not None and not isinstance(c, _TS_CODECS)
    ]
    if not names:
        return None
    return f"MPEG-TS here carries {TS_CARRIES}, not {' or '.join(names)}"


@dataclass(frozen=True, slots=True)
class Cut:
    """A segment being closed, as ``LiveStream`` decided it (the same for every output)."""

    duration: float  # seconds, from the cutter's presentation times
    boundary: int | None  # DTS (ms) where the next segment starts; None at the end of media
    discontinuity: bool
    program_date_time: datetime | None


class TsOutput:
    """MPEG-TS segments (``segmenter.mux.TsMuxer``) listed in ``ts.m3u8``."""

    def __init__(
        self,
        path: str,
        store: Store,
        window_segments: int,
        log: logging.Logger,
        muxer: SegmentMuxer | None = None,
    ) -> None:
        self.path = path
        self.store = store
        self.keeper = PlaylistKeeper(path, store, window_segments, log, name=TS_PLAYLIST_NAME)
        self._mux = muxer or TsMuxer()
        self._prefix = ""

    def start(
        self,
        prefix: str,
        video: VideoConfig | None,
        audio: AudioConfig | None,
        discontinuity: bool = False,
    ) -> None:
        """A new track configuration; LiveStream checks ``ts_refusal`` first."""
        if not isinstance(video, AvcConfig | HevcConfig | None) or not isinstance(
            audio, AacConfig | Mp3Config | Ac3Config | Eac3Config | None
        ):
            raise ValueError(ts_refusal(video, audio))
        self._prefix = prefix
        self._mux.start(video, audio)

    def write(self, sample: Sample) -> None:
        self._mux.write(sample)

    def close_segment(self, cut: Cut, now: float) -> int:
        """Store the segment and the playlist listing it; its size in bytes (0: nothing)."""
        data = self._mux.cut()
        if not data:
            return 0
        playlist = self.keeper.playlist
        assert playlist is not None, "LiveStream opens the playlists before a cut"
        uri = f"{self._prefix}-{playlist.next_media_sequence}{self._mux.extension}"
        self.store.put(f"{self.path}/{uri}", data, fresh=True)  # before the playlist naming it
        entry = SegmentEntry(uri, cut.duration, cut.discontinuity, cut.program_date_time)
        playlist.add_segment(entry, now)
        self.keeper.write()
        return size_of(data)


class CmafOutput:
    """fMP4 parts and segments listed in the LL-HLS playlist ``cmaf.m3u8``.

    Parts follow a grid of ``part_ms`` from the segment's first decode time: a part ends before
    the first video frame (any frame of an audio-only stream) whose middle lies past its grid
    line, so FLV's millisecond jitter (33, 33, 34 ms at 30 fps) neither shortens nor lengthens
    parts, and a 1 s or 2 s keyframe interval gives whole parts only. A part starts and ends
    within half a frame of its grid lines, so it lasts at most ``part_ms`` plus one frame:
    ``part_target_ms`` (PART-TARGET); 30 fps video fills the grid exactly (200 ms parts).
    A segment's parts add up to it exactly (decode times).
    """

    def __init__(
        self,
        path: str,
        store: Store,
        window_segments: int,
        log: logging.Logger,
        *,
        part_ms: int,
        on_update: Callable[[], None] | None = None,
        name: str = CMAF_PLAYLIST_NAME,
    ) -> None:
        self.path = path
        self.store = store
        self.part_ms = part_ms
        self.keeper = PlaylistKeeper(
            path, store, window_segments, log, name=name, part_target=part_ms / 1000
        )
        self._on_update = on_update
        self._prefix = ""
        self._init_uri: str | None = None
        self._discontinuity = False  # the open segment follows a discontinuity
        self._writer: FragmentWriter | None = None
        self._pacer = AUDIO  # the track whose frames end parts: video when there is video
        self._steps: dict[str, int] = {}  # last DTS step per track (ms)
        self._last_dts: dict[str, int] = {}
        self._part_start: int | None = None  # DTS of the open part's first sample
        self._segment_start: int | None = None  # DTS of the open segment's first sample
        self._longest_step = 0  # longest frame step of the pacer seen (ms)
        self._part_independent = False
        self._part_has_video = False
        self._parts: list[PartEntry] = []  # complete parts of the open segment
        self._data: list[bytes] = []  # their bytes
        # Bytes of the parts listed and the open segment's, by URI, plus those of one segment
        # more for requests made from the playlist version before (keyed by its number).
        self._part_bytes: dict[str, bytes] = {}
        self._part_uris: collections.deque[tuple[int, list[str]]] = collections.deque()

    # --- configuration -------------------------------------------------------------------------
    def start(
        self,
        prefix: str,
        video: VideoConfig | None,
        audio: AudioConfig | None,
        discontinuity: bool = False,
    ) -> None:
        """A new track configuration: a new init segment; an unfinished part is dropped.
        ``discontinuity``: the next segment follows EXT-X-DISCONTINUITY (so do its parts)."""
        self._discard()
        self._discontinuity = discontinuity
        self._prefix = prefix
        init = init_segment(video, audio)
        # Named by content: a publisher that comes back with the same settings keeps the init
        # segment players already hold (no re-initialisation, one object cached), a new
        # configuration gets a new name (immutable for caches).
        self._init_uri = f"init-{hashlib.sha256(init).hexdigest()[:12]}.mp4"
        self.store.put(f"{self.path}/{self._init_uri}", init)
        self._writer = FragmentWriter(tracks_for(video, audio))
        self._pacer = VIDEO if video is not None else AUDIO
        self._steps.clear()
        self._last_dts.clear()

    def _discard(self) -> None:
        if self._writer is not None:
            self._writer.flush()
        self._part_start = self._segment_start = None
        self._parts, self._data = [], []

    # --- media ---------------------------------------------------------------------------------
    def write(self, sample: Sample, now: float) -> None:
        writer = self._writer
        assert writer is not None, "start() comes before samples"
        kind, dts = sample.kind, sample.dts
        last = self._last_dts.get(kind)
        if last is not None and dts > last:
            self._steps[kind] = dts - last
            if kind == self._pacer and dts - last <= MAX_PACER_STEP_MS:
                self._longest_step = max(self._longest_step, dts - last)
        self._last_dts[kind] = dts
        start, origin = self._part_start, self._segment_start
        if start is not None and origin is not None and dts > start:
            grid = origin + (len(self._parts) + 1) * self.part_ms
            pacer_step = self._steps.get(self._pacer, 0)
            if (kind == self._pacer and 2 * dts + pacer_step > 2 * grid) or (
                dts >= grid + pacer_step  # another track well past it: the pacer paused or ended
            ):
                self._close_part(dts, now)
                start = None
        if start is None:
            self._part_start = dts
            if self._segment_start is None:
                self._segment_start = dts
            self._part_independent = False
            self._part_has_video = False
        if kind == VIDEO and not self._part_has_video:
            self._part_has_video = True
            self._part_independent = sample.keyframe
        elif self._pacer == AUDIO and start is None:
            self._part_independent = True  # audio-only: every frame is a sync sample
        writer.add(kind, dts, sample.pts, sample.keyframe, sample.data)

    def _close_part(self, end: int, now: float) -> None:
        """The open part ends at ``end`` (DTS, ms): store it, list it, hint the next one."""
        writer, start = self._writer, self._part_start
        assert writer is not None and start is not None
        data = writer.flush()
        self._part_start = None
        if not data:
            return
        sequence = self.keeper.next_sequence
        uri = f"{self._prefix}-{sequence}.{len(self._parts)}.m4s"
        part = PartEntry(uri, max(end - start, 1) / 1000, self._part_independent)
        self._part_bytes[uri] = data
        if not self._part_uris or self._part_uris[-1][0] != sequence:
            self._part_uris.append((sequence, []))
        self._part_uris[-1][1].append(uri)
        self._parts.append(part)
        self._data.append(data)
        playlist = self.keeper.playlist
        if playlist is not None and not playlist.ended:
            playlist.add_part(part, self._init_uri, self._discontinuity)
            playlist.set_preload_hint(f"{self._prefix}-{sequence}.{len(self._parts)}.m4s")
            self._updated()

    def part(self, uri: str) -> bytes | None:
        """The bytes of a part of a listed (or the open) segment."""
        return self._part_bytes.get(uri)

    def parts(self) -> dict[str, bytes]:
        """Every part kept (by URI), as :meth:`part` answers them; not a copy."""
        return self._part_bytes

    def _forget_parts(self, before: int | None) -> None:
        """Drop the parts of segments numbered below ``before`` (all when None)."""
        uris = self._part_uris
        while uris and (before is None or uris[0][0] < before):
            for uri in uris.popleft()[1]:
                self._part_bytes.pop(uri, None)

    @property
    def part_target_ms(self) -> int:
        """PART-TARGET: the part length plus the longest frame step (the grid rule's bound)."""
        return self.part_ms + self._longest_step

    def end_of_media(self) -> int | None:
        """Where the open part would end at the end of the media (DTS ms: last + step)."""
        if self._part_start is None:
            return None
        return max(self._last_dts[k] + self._steps.get(k, 0) for k in self._last_dts)

    def close_segment(self, cut: Cut, now: float) -> int:
        boundary = cut.boundary if cut.boundary is not None else self.end_of_media()
        if self._part_start is not None and boundary is not None:
            self._close_part(boundary, now)
        parts, data = self._parts, tuple(self._data)  # the segment is its parts, not copied
        self._parts, self._data = [], []
        self._segment_start = None
        self._discontinuity = False
        if not parts:
            return 0
        playlist = self.keeper.playlist
        assert playlist is not None, "LiveStream opens the playlists before a cut"
        uri = f"{self._prefix}-{playlist.next_media_sequence}.m4s"
        self.store.put(f"{self.path}/{uri}", data, fresh=True)  # before the playlist naming it
        duration = round(sum(p.duration for p in parts), 3)
        entry = SegmentEntry(
            uri,
            duration,
            cut.discontinuity,
            cut.program_date_time,
            init_uri=self._init_uri,
            parts=tuple(parts),
        )
        playlist.add_segment(entry, now)
        self._forget_parts(playlist.first_part_sequence - 1)
        more = cut.boundary is not None
        playlist.set_preload_hint(
            f"{self._prefix}-{playlist.next_media_sequence}.0.m4s" if more else None
        )
        self.keeper.write()
        self._updated()
        return size_of(data)

    def ended(self) -> None:
        """The playlist got EXT-X-ENDLIST: wake whoever waits on it."""
        self._updated()

    def retired(self) -> None:
        """The stream's segments were deleted: so are its parts."""
        self._forget_parts(None)
        self._updated()

    def _updated(self) -> None:
        if self._on_update is not None:
            self._on_update()
