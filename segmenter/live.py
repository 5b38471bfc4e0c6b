"""One live HLS stream per app/key: FLV tags in; segments and playlists out to a Store in each
format (``segmenter.outputs``: MPEG-TS and LL-HLS CMAF) plus the multivariant playlist.

A ``LiveStream`` outlives publisher reconnects. Each publish session gets a fresh timeline that
continues after the previous one on the output clock, a random segment-name prefix (RFC 8216 §6.2.2
asks for URIs no cache can confuse with an older session's), and a discontinuity with a
program date time on its first segment (§4.3.2.3, §4.3.2.6). Synchronous and clock-free: the
caller (a trio task) passes a monotonic ``now`` in seconds; bad media is counted, never raised.
The long-GOP / target-duration policy is documented in ``segmenter.cutter``.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from segmenter.codecs import (
    FRAME_CONFIGURED,
    AudioConfig,
    Av1Config,
    HevcConfig,
    MediaError,
    Mp3Config,
    SpsInfo,
    VideoConfig,
    Vp9Config,
    audio_config_from_frame,
    av1_is_key,
    av1_sequence_info,
    hevc_has_irap,
    parse_asc,
    parse_av1c,
    parse_avcc,
    parse_flac_streaminfo,
    parse_hvcc,
    parse_opus_head,
    parse_vpcc,
    vp9_frame_size,
    vp9_is_key,
)
from segmenter.cutter import (
    AUDIO,
    SESSION_GAP_MS,
    VIDEO,
    Cutter,
    Interleaver,
    Kind,
    Sample,
    Timeline,
)
from segmenter.flv import (
    AudioFrame,
    ChannelLayout,
    FlvTag,
    SequenceHeader,
    TagType,
    Unsupported,
    VideoFrame,
    parse_tag,
    split_multitrack,
    timestamp_offset_ms,
)
from segmenter.keeper import (
    CMAF_PLAYLIST_NAME,
    MULTIVARIANT_NAME,
    TS_PLAYLIST_NAME,
    end_stale_playlists,
    rendition_playlist_name,
)
from segmenter.mux import SegmentMuxer
from segmenter.outputs import CmafOutput, Cut, TsOutput, ts_refusal
from segmenter.playlist import (
    AudioRendition,
    LivePlaylist,
    RenditionReport,
    Variant,
    nearest_int,
    render_multivariant,
    rendition_language,
    rendition_name,
)
from segmenter.store import Store

__all__ = [
    "CMAF_PLAYLIST_NAME",
    "MULTIVARIANT_NAME",
    "TS_PLAYLIST_NAME",
    "LiveStream",
    "SegmentInfo",
    "SegmenterConfig",
    "end_stale_playlists",
]

MAX_WARNINGS = 20  # distinct warnings kept in stats (oldest dropped first)
# Warnings logged per stream per window; the rest are counted and summed up in one line. A
# publisher sending broken frames would otherwise write a distinct line per frame (the texts carry
# sizes and values), hundreds per second, into the operator's log.
WARN_BURST = 10
WARN_WINDOW = 60.0
# A keyframe gap this much above the target is the encoder's setting, not jitter: tell the operator.
LONG_GOP_TOLERANCE_MS = 500
_FRAMES = (VideoFrame, AudioFrame)
# Audio frames held while the video configuration waits for its picture size (VP9: the first
# key frame's header), so the init segment has the right one; the oldest go first beyond this.
MAX_HELD_AUDIO = 256
SEGMENTED = (
    "H.264 (avc1), HEVC (hvc1), AV1 (av01), VP9 (vp09) video; "
    "AAC (mp4a), Opus, FLAC (fLaC), AC-3 (ac-3), E-AC-3 (ec-3), MP3 audio"
)
# Multitrack (Enhanced RTMP v2): the EXT-X-MEDIA GROUP-ID of the audio tracks, and how many
# segment starts per rendition are kept to compare keyframe alignment.
AUDIO_GROUP = "audio"
# Video tag byte 0 of an Enhanced RTMP SequenceEnd (IsExHeader | PacketType 2), FrameType masked.
_EX_SEQUENCE_END_BYTE = 0x82
ALIGNMENT_HISTORY = 32
# Part names: "<prefix>-<msn>.<part>.m4s" (CmafOutput); the prefix names the rendition.
_PART_PREFIX_END = "-"


# The sequence-header parser of each video FourCC this segmenter carries.
_VIDEO_PARSERS: dict[str, Callable[[bytes], VideoConfig]] = {
    "avc1": parse_avcc,
    "hvc1": parse_hvcc,
    "av01": parse_av1c,
    "vp09": parse_vpcc,
}


# The sequence-header parser of each audio FourCC that has one (ac-3, ec-3 and MP3 frames carry
# their configuration: codecs.audio_config_from_frame).
_AUDIO_PARSERS: dict[str, Callable[[bytes], AudioConfig]] = {
    "mp4a": parse_asc,
    "Opus": parse_opus_head,
    "fLaC": parse_flac_streaminfo,
}


def _with_size(config: VideoConfig, data: bytes) -> VideoConfig | None:
    """The configuration with the picture size read off a key frame (None: not found)."""
    if isinstance(config, Vp9Config):
        size = vp9_frame_size(data)
        if size is None:
            return None
        old = config.info
        info = SpsInfo(old.profile_idc, old.level_idc, size[0], size[1], old.frame_rate)
        return Vp9Config(config.record, config.profile, config.level, config.bit_depth, info)
    if isinstance(config, Av1Config):
        seq = av1_sequence_info(data)
        if seq is None:
            return None
        return Av1Config(
            config.record, config.profile, config.level, config.tier, config.bit_depth, seq
        )
    return config


def _is_audio_header(body: bytes) -> bool:
    """An audio sequence start: legacy AAC (AACPacketType 0) or ExHeader SequenceStart."""
    if len(body) < 2:
        return False
    sound_format = body[0] >> 4
    if sound_format == 10:  # legacy AAC, FLV §E.4.2.1
        return body[1] == 0
    return sound_format == 9 and body[0] & 0x0F == 0  # Enhanced RTMP v2 ExAudioTagHeader


def _is_sync(config: VideoConfig, flv_key: bool, data: bytes) -> bool:
    """A sync sample by the bitstream (hvc1 IRAP, av01/vp09 key frame); avc1 by the FLV flag."""
    if isinstance(config, HevcConfig):
        return hevc_has_irap(data, config.nal_length_size)
    if isinstance(config, Av1Config):
        return av1_is_key(data)
    if isinstance(config, Vp9Config):
        return vp9_is_key(data)
    return flv_key


@dataclass(frozen=True, slots=True)
class SegmenterConfig:
    """Segmenting settings of one stream (all durations in seconds)."""

    # Cut at the first keyframe at or after this duration (gohlslib's "IDR and min duration").
    target_duration: float = 2.0
    # Ceiling of EXT-X-TARGETDURATION (cutter.py rule 1); longer GOPs are force-cut (rule 3).
    max_segment_duration: float = 10.0
    # Segments listed in the live playlist; the playlist keeps at least 3 x TARGETDURATION anyway.
    window_segments: int = 6
    # Seconds without a publisher before the playlist gets EXT-X-ENDLIST.
    end_grace: float = 20.0
    # A/V reorder buffer bounds (RTMP delivers audio and video only roughly in DTS order).
    interleave_delay: float = 0.5
    interleave_max_samples: int = 256
    # Output formats: "ts" (ts.m3u8) and/or "cmaf" (LL-HLS cmaf.m3u8).
    formats: tuple[str, ...] = ("ts", "cmaf")
    # LL-HLS part target (EXT-X-PART-INF PART-TARGET), seconds.
    part_duration: float = 0.2
    # Renditions one multitrack publish may open besides video track 0 (each a segmenter).
    max_renditions: int = 8
    # Public URL of the store's root (a CDN or bucket, no trailing "/"): segment and init URIs
    # in the media playlists become absolute, "<public_base>/<app>/<key>/<file>". "" = relative.
    public_base: str = ""

    def __post_init__(self) -> None:
        if not 0 < self.target_duration <= self.max_segment_duration:
            raise ValueError("need 0 < target_duration <= max_segment_duration")
        if not self.formats or set(self.formats) - {"ts", "cmaf"}:
            raise ValueError("formats: one or both of 'ts' and 'cmaf'")
        if not 0.05 <= self.part_duration <= self.target_duration:
            raise ValueError("need 0.05 <= part_duration <= target_duration")
        if self.max_renditions < 1:
            raise ValueError("max_renditions >= 1")
        if self.window_segments < 1 or self.end_grace < 0 or self.interleave_delay < 0:
            raise ValueError("window_segments >= 1, end_grace >= 0, interleave_delay >= 0")

    @property
    def playlist_target_duration(self) -> int:
        """Largest EXT-X-TARGETDURATION a playlist of the stream may get (RFC 8216 §4.3.3.1)."""
        return max(1, math.ceil(self.max_segment_duration))


# index.m3u8 is rewritten when a bitrate moved this much (fraction) since it was written, or the
# codecs, picture or frame rate changed: players read it once, so a rewrite per segment for a
# few bits per second would only cost a render and a store write every segment.
VARIANT_BITRATE_CHANGE = 0.1


def _worth_rewriting(old: Variant | None, new: Variant) -> bool:
    if old is None or (old.uri, old.codecs, old.resolution, old.frame_rate) != (
        new.uri,
        new.codecs,
        new.resolution,
        new.frame_rate,
    ):
        return True
    return any(
        abs(a - b) > VARIANT_BITRATE_CHANGE * b
        for a, b in ((new.bandwidth, old.bandwidth), (new.average_bandwidth, old.average_bandwidth))
    )


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    """Reported to ``on_segment`` after a segment and the playlist listing it are stored."""

    path: str
    name: str  # store name of the first format's segment, "<path>/<prefix>-<sequence>.ts"
    sequence: int  # media sequence number
    duration: float  # seconds, as in EXTINF
    size: int
    discontinuity: bool
    forced: bool  # cut without a keyframe at the target-duration ceiling


@dataclass(slots=True)
class _Session:
    """Per-publish state: a new timeline, name prefix and codec configuration."""

    timeline: Timeline
    prefix: str
    video: VideoConfig | None = None
    audio: AudioConfig | None = None
    # Audio (timestamp, frame) held until the video configuration has its picture size.
    held: list[tuple[int, AudioFrame]] = field(default_factory=list)
    ts_refusal: str | None = None  # why ts.m3u8 is not written this session (None: it is)
    layout: ChannelLayout | None = None  # the last E-RTMP MultichannelConfig
    active: list[TsOutput | CmafOutput] = field(default_factory=list)  # outputs written to
    cutter: Cutter | None = None  # set once the track set is known (first media frame)
    interleaver: Interleaver | None = None
    wall_offset: float = 0.0  # wall clock minus the caller's monotonic clock (s)
    # Earliest arrival relative to media time of the open segment's samples: min(now - dts),
    # seconds on the caller's clock. A segment's PROGRAM-DATE-TIME is its start on that line.
    arrival: float | None = None
    last_arrival: float | None = None  # the closed segment's
    segment_dts: int | None = None  # DTS of the open segment's first sample (ms)
    long_gop_warned: bool = False
    timeline_first: int | None = None  # FLV timestamp of the session's first tag


class LiveStream:
    """Segmenter state of one stream path (``"app/key"``)."""

    def __init__(
        self,
        path: str,
        store: Store,
        config: SegmenterConfig,
        *,
        wallclock: Callable[[], float] = time.time,
        on_segment: Callable[[SegmentInfo], None] | None = None,
        log: logging.Logger | None = None,
        muxer: SegmentMuxer | None = None,
        on_update: Callable[[], None] | None = None,
        ladder: LiveStream | None = None,
        track: tuple[Kind, int] = (VIDEO, 0),
        published: Callable[[str], bool] | None = None,
    ) -> None:
        """``ladder``: the stream (track 0 video) whose multitrack publish this one is another
        track of, ``track`` which: it then writes only its own LL-HLS playlist (cmaf-v1.m3u8,
        cmaf-a0.m3u8, ...), no index.m3u8 and no MPEG-TS. ``published(store name)``: whether
        an object is in the public copy ``config.public_base`` points at (an S3 bucket); the
        playlists point there only for those (see :meth:`published_now`)."""
        self.path = path
        self.store = store
        self.config = config
        self._wallclock = wallclock
        self._on_segment = on_segment
        self._log = log or logging.getLogger(f"segmenter.{path}")
        self._session: _Session | None = None
        self._ladder = ladder
        self.track = track
        self._on_update = on_update
        window = config.window_segments
        formats = config.formats if ladder is None else ("cmaf",)
        self._ts = TsOutput(path, store, window, self._log, muxer) if "ts" in formats else None
        name = CMAF_PLAYLIST_NAME
        if ladder is not None:
            name = rendition_playlist_name("v" if track[0] == VIDEO else "a", track[1])
        self._cmaf = (
            CmafOutput(
                path,
                store,
                window,
                self._log,
                part_ms=round(config.part_duration * 1000),
                on_update=on_update,
                name=name,
            )
            if "cmaf" in formats
            else None
        )
        self._outputs: list[TsOutput | CmafOutput] = [
            o for o in (self._ts, self._cmaf) if o is not None
        ]
        self._published = published
        if config.public_base:
            for output in self._outputs:
                output.keeper.uri_base = f"{config.public_base.rstrip('/')}/{path}/"
                output.keeper.published = published
        # Lifecycle questions: the keepers move together, except that TS sits out a session
        # whose codecs it cannot carry; CMAF carries everything, so it answers when present.
        self._keeper = (self._cmaf or self._outputs[0]).keeper
        self._variant: Variant | None = None  # as index.m3u8 has it
        self._peak_bitrate = 0
        self._bits = (0.0, 0.0)  # bits and seconds of media segmented, for AVERAGE-BANDWIDTH
        self._discontinuity = False  # the next segment starts a new timeline/configuration
        self._timeline_end = 0
        self._left_at: float | None = None  # when the last publisher left
        self._now = 0.0
        self._published_at: float | None = None
        self._forced = False
        self._seg_bytes = {VIDEO: 0, AUDIO: 0}
        self._last_key_pts: int | None = None
        self._max_key_gap_ms = 0  # longest keyframe gap seen, for TARGETDURATION (cutter.py rule 1)
        self.counters = {"malformed": 0, "unsupported": 0, "dropped": 0, "late": 0, "jumps": 0}
        self.warnings: list[str] = []
        self._warn_window: tuple[float, int] = (-WARN_WINDOW, 0)  # (start, lines logged in it)
        self._warn_suppressed = 0
        self.segment_count = 0
        self.keyframe_interval: float | None = None
        self.bitrate = {VIDEO: 0, AUDIO: 0}
        self._configs: tuple[VideoConfig | None, AudioConfig | None] = (None, None)  # for stats
        self._publisher = ""  # who publishes, for log lines
        self.ts_refusal: str | None = None  # why there is no ts.m3u8 (the web's 404 says it)
        self.uncarried: list[str] = []  # codecs of this session no output can carry
        self.channel_layout: list[str] = []  # speakers of the MultichannelConfig, if sent
        # Multitrack: the other tracks' renditions by (kind, track id), kept across sessions
        # like this stream's own playlists; the audio track ids of this session; whether the
        # audio tracks are renditions of their own (more than one: the video goes video-only).
        self._renditions: dict[tuple[Kind, int], LiveStream] = {}
        self._audio_ids: set[int] = set()
        self._audio_headers: dict[int, FlvTag] = {}  # the last audio sequence start per track
        self.audio_apart = False
        self._track_info: dict[tuple[Kind, int], dict[str, Any]] = {}
        self._audio_renditions: list[AudioRendition] = []  # as index.m3u8 has them
        self._variants: list[Variant] = []  # as index.m3u8 has them
        # Keyframe alignment: DTS of the first video sample per segment number (last few), the
        # open segment's, and whether this rendition's cuts line up with track 0's.
        self._starts: dict[int, int] = {}
        self._open_video_dts: int | None = None
        self.aligned: bool | None = None
        self.in_session = False  # a rendition: its track is part of the ladder's session

    # --- publisher lifecycle -------------------------------------------------------------------

    def begin_session(self, now: float, publisher: str = "") -> None:
        """A publisher started (first or reconnect): new timeline, prefix and discontinuity.
        ``publisher`` names it in log lines (its address)."""
        self._now = now
        self._publisher = publisher
        self.uncarried = []
        self.channel_layout = []
        for output in self._outputs:
            output.keeper.start_clock(now)
        if self._session is not None:
            self.end_session(now)
        start = self._timeline_end + SESSION_GAP_MS
        # A rendition's names say which track it is ("<random>-v1-<msn>.m4s").
        suffix = f"-{self._keeper.name[len('cmaf-') : -len('.m3u8')]}" if self._ladder else ""
        self._session = _Session(
            Timeline(start, on_jump=self._warn_jump),
            secrets.token_hex(4) + suffix,
            wall_offset=self._wallclock() - now,
        )
        self._max_key_gap_ms = 0
        self._discontinuity = self._keeper.playlist is not None
        self._left_at = None
        self.aligned = None
        self._open_video_dts = None
        if self._ladder is None:
            # Renditions begin when their track shows up in this session; until then (or never)
            # they are publisher-less and end after end_grace like any stream.
            for rendition in self._renditions.values():
                rendition.end_session(now)
                rendition.in_session = False
            self._audio_ids = set()
            self._audio_headers = {}
            self.audio_apart = False
            self._track_info = {}

    def end_session(self, now: float) -> None:
        """The publisher left: flush the open segment; ENDLIST follows after ``end_grace``."""
        self._now = now
        session = self._session
        if session is None:
            return
        self._finish_segment(now)
        self._timeline_end = max(self._timeline_end, session.timeline.end)
        self._count_timeline(session)
        self._session = None
        self._left_at = now
        for rendition in self._renditions.values():
            rendition.end_session(now)

    def close(self, now: float) -> None:
        """Shutdown: flush, end the playlist (EXT-X-ENDLIST) and delete expired segments."""
        self.end_session(now)
        self._end_playlists(now)
        for output in self._outputs:
            output.keeper.delete_expired(now)
        for rendition in self._renditions.values():
            rendition.close(now)

    def _end_playlists(self, now: float) -> None:
        for output in self._outputs:
            output.keeper.end(now)
        if self._cmaf is not None:
            self._cmaf.ended()

    def poll(self, now: float) -> None:
        """Housekeeping: ENDLIST once no publisher came back within ``end_grace``; expiry."""
        self._now = now
        if self._warn_suppressed and now - self._warn_window[0] >= WARN_WINDOW:
            self._flush_suppressed()
            self._warn_window = (now, 0)
        left = self._left_at
        if self._session is None and left is not None and now - left >= self.config.end_grace:
            self._end_playlists(now)
            self._left_at = None
        for output in self._outputs:
            output.keeper.delete_expired(now)
        for rendition in self._renditions.values():
            rendition.poll(now)

    # --- media ---------------------------------------------------------------------------------

    def feed(self, tag: FlvTag, now: float) -> None:
        """One tag of the current session, in arrival order. Bad media is counted, never raised.

        A Multitrack tag (Enhanced RTMP v2) goes to each of its tracks; a plain one (legacy or
        ExHeader) is track 0, so OBS's Enhanced Broadcasting mix (track 0 plain, the others
        Multitrack OneTrack) makes one ladder."""
        self._now = now
        if self._session is None:
            self.begin_session(now)
        session = self._session
        assert session is not None
        if tag.type is TagType.SCRIPT:
            return
        if session.timeline_first is None:
            session.timeline_first = tag.timestamp
        try:
            tracks = split_multitrack(tag.type, tag.body)
        except MediaError as exc:
            self.counters["malformed"] += 1
            self._warn(f"malformed multitrack {tag.type.name.lower()} tag: {exc.reason}")
            return
        if tracks is None:
            self._route(session, tag, 0, now)
            return
        for track in tracks:
            self._route(session, FlvTag(tag.type, tag.timestamp, track.body), track.track_id, now)

    def _route(self, session: _Session, tag: FlvTag, track_id: int, now: float) -> None:
        """One track's tag to the rendition that makes it (this stream: video track 0)."""
        if tag.type is TagType.VIDEO:
            if track_id == 0:
                self._feed_track(session, tag, now)
            elif tag.body and tag.body[0] & 0x8F == _EX_SEQUENCE_END_BYTE:
                # The track ended (a multitrack publisher's, or a transcoding rung dropped):
                # its rendition leaves index.m3u8 until the track comes back.
                self._end_rendition((VIDEO, track_id), now)
            else:
                rendition = self._rendition(session, (VIDEO, track_id), now)
                if rendition is not None and rendition._session is not None:
                    rendition._feed_track(rendition._session, tag, now)
            return
        if _is_audio_header(tag.body):
            # Kept for a rendition that starts later (a video track showing up after the
            # audio header, or track 0's audio becoming a rendition of its own).
            self._audio_headers[track_id] = tag
        if track_id not in self._audio_ids:
            self._audio_ids.add(track_id)
            if len(self._audio_ids) > 1 and not self.audio_apart:
                self._set_audio_apart(now)
        if not self.audio_apart:
            # One audio track: muxed into every video rendition (as a single-track publish).
            self._feed_track(session, tag, now)
            for (kind, _), rendition in self._renditions.items():
                if kind == VIDEO and rendition._session is not None:
                    rendition._feed_track(rendition._session, tag, now)
            return
        rendition = self._rendition(session, (AUDIO, track_id), now)
        if rendition is not None and rendition._session is not None:
            rendition._feed_track(rendition._session, tag, now)
        if track_id == 0 and (self._ts is not None or session.video is None):
            # ts.m3u8 carries track 0 (video and audio); without video (yet) track 0's CMAF
            # carries audio track 0 too, so an audio-only publish still has a variant.
            self._feed_track(session, tag, now)

    def _end_rendition(self, track: tuple[Kind, int], now: float) -> None:
        rendition = self._renditions.get(track)
        if rendition is None or not rendition.in_session:
            return
        rendition.end_session(now)
        rendition.in_session = False
        self._write_index()

    def _rendition(
        self, session: _Session, track: tuple[Kind, int], now: float
    ) -> LiveStream | None:
        """The rendition of ``track``, begun in this session (made at its first tag)."""
        rendition = self._renditions.get(track)
        if rendition is None:
            limit = self.config.max_renditions
            if self._cmaf is None or len(self._renditions) >= limit:
                self.counters["dropped"] += 1
                why = "formats has no cmaf" if self._cmaf is None else f"max_renditions {limit}"
                self._warn(f"{track[0]} track {track[1]} dropped: no rendition for it ({why})")
                return None
            rendition = LiveStream(
                self.path,
                self.store,
                self.config,
                wallclock=self._wallclock,
                log=self._log,
                on_update=self._on_update,
                ladder=self,
                track=track,
                published=self._published,
            )
            self._renditions[track] = rendition
        if rendition._session is None:
            rendition.begin_session(now, self._publisher)
            rendition.in_session = True
            self._follow(session, rendition)
        return rendition

    def _follow(self, session: _Session, rendition: LiveStream) -> None:
        """A rendition's new session maps time as this one does: the same FLV time is the
        same media time in every rendition, so aligned keyframes cut at the same DTS."""
        first = session.timeline_first
        session.timeline.anchor(first if first is not None else 0)
        own = rendition._session
        if own is not None:
            own.timeline.follow(session.timeline)
        if rendition.track[0] == VIDEO and self.audio_apart:
            rendition.audio_apart = True
        kind, track_id = rendition.track
        header = None
        if kind == AUDIO:
            header = self._audio_headers.get(track_id)
        elif not self.audio_apart and len(self._audio_headers) == 1:
            header = next(iter(self._audio_headers.values()))
        if header is not None and own is not None:
            rendition._feed_track(own, header, self._now)

    def _set_audio_apart(self, now: float) -> None:
        """A second audio track: every audio track becomes an EXT-X-MEDIA rendition of its own,
        so the video renditions go video-only (their CMAF; ts.m3u8 keeps track 0's audio)."""
        self.audio_apart = True
        count = len(self._audio_ids)
        self._log.info("%s: %d audio tracks: audio renditions of their own", self.path, count)
        for stream in [self, *self._renditions.values()]:
            if stream.track[0] != VIDEO:
                continue
            stream.audio_apart = True
            session = stream._session
            if session is None:
                continue
            # Track 0 without video (yet) keeps its audio: an audio-only publish's variant.
            keeps = stream is self and session.video is None
            if session.cutter is not None and not keeps:
                stream._restart_tracks(session, now)
            if stream._ts is None and not keeps:
                session.audio = None

    def _feed_track(self, session: _Session, tag: FlvTag, now: float) -> None:
        """One single-track tag of this rendition."""
        try:
            packet = parse_tag(tag)
            if isinstance(packet, _FRAMES):  # first: nearly every tag is one
                self._media(session, tag.timestamp + timestamp_offset_ms(tag), packet, now)
            elif isinstance(packet, SequenceHeader):
                self._configure(session, packet, now)
            elif isinstance(packet, ChannelLayout):
                self._channel_layout(session, packet)
            elif isinstance(packet, Unsupported):
                self.counters["unsupported"] += 1
                self._uncarried(f"{packet.reason}: no output carries it (segmented: {SEGMENTED})")
        except MediaError as exc:
            self.counters["malformed"] += 1
            self._warn(f"malformed {tag.type.name.lower()} tag: {exc.reason}")

    def _configure(self, session: _Session, packet: SequenceHeader, now: float) -> None:
        if packet.media == VIDEO:
            video = _VIDEO_PARSERS[packet.codec](packet.config)
            if session.video is not None:
                if video.record == session.video.record:
                    return
                old, new = session.video.info, video.info
                self._warn_change(VIDEO, f"{old.width}x{old.height}", f"{new.width}x{new.height}")
            self._restart_tracks(session, now)
            session.video = video
        else:
            self._set_audio(session, _AUDIO_PARSERS[packet.codec](packet.config), now)

    def _set_audio(self, session: _Session, audio: AudioConfig, now: float) -> None:
        if session.audio is not None:
            if audio.config == session.audio.config and audio.fourcc == session.audio.fourcc:
                return
            before = session.audio
            self._warn_change(
                AUDIO,
                f"{before.fourcc} {before.sample_rate} Hz {before.channels} ch",
                f"{audio.fourcc} {audio.sample_rate} Hz {audio.channels} ch",
            )
        self._restart_tracks(session, now)
        session.audio = audio
        self._check_layout(session)

    def _channel_layout(self, session: _Session, layout: ChannelLayout) -> None:
        """E-RTMP v2 MultichannelConfig: the speakers are reported (API); the codec's own
        header decides the channel count, so a different count is only warned about."""
        session.layout = layout
        self.channel_layout = list(layout.speakers)
        self._check_layout(session)

    def _check_layout(self, session: _Session) -> None:
        layout, audio = session.layout, session.audio
        if layout is None or audio is None or layout.codec != audio.fourcc:
            return
        if layout.channels != audio.channels:
            self._warn(
                f"MultichannelConfig says {layout.channels} channels, the {audio.fourcc} "
                f"configuration {audio.channels}: the codec's count is used"
            )

    def _restart_tracks(self, session: _Session, now: float) -> None:
        """New codec parameters or track set mid-session: close the segment; discontinuity."""
        if session.cutter is None:
            return
        self._finish_segment(now)
        session.cutter = session.interleaver = None
        self._discontinuity = True

    def _media(
        self, session: _Session, timestamp: int, packet: VideoFrame | AudioFrame, now: float
    ) -> None:
        kind: Kind
        config: VideoConfig | AudioConfig | None
        if isinstance(packet, VideoFrame):
            kind, config = VIDEO, session.video
            cts, key = packet.composition_time, packet.keyframe
        else:
            kind, config = AUDIO, session.audio
            cts, key = 0, True
        if isinstance(packet, AudioFrame) and packet.codec in FRAME_CONFIGURED:
            # AC-3, E-AC-3, MP3: each frame's header is the configuration (unchanged: no-op).
            self._set_audio(session, audio_config_from_frame(packet.codec, packet.data), now)
            config = session.audio
        if config is None:
            self.counters["dropped"] += 1  # a frame before its sequence header
            return
        if packet.codec != config.fourcc:
            self.counters["dropped"] += 1
            self._warn(f"{kind} frame in {packet.codec} after a {config.fourcc} sequence header")
            return
        video = session.video
        if isinstance(config, (HevcConfig, Av1Config, Vp9Config)):
            key = _is_sync(config, key, packet.data)
            if not config.info.width:  # VP9 (AV1 without configOBUs): sized by a key frame
                sized = _with_size(config, packet.data) if key else None
                if sized is None:
                    self.counters["dropped"] += 1
                    return
                session.video = sized
                held, session.held = session.held, []
                for held_timestamp, frame in held:
                    self._media(session, held_timestamp, frame, now)
                config = sized
        elif isinstance(packet, AudioFrame) and video is not None and not video.info.width:
            session.held.append((timestamp, packet))
            if len(session.held) > MAX_HELD_AUDIO:
                del session.held[0]
                self.counters["dropped"] += 1
            return
        if session.interleaver is not None and kind not in session.interleaver.tracks:
            self._restart_tracks(session, now)  # a track appeared: new track set
        if session.cutter is None:
            tracks = {k for k, c in ((VIDEO, session.video), (AUDIO, session.audio)) if c}
            playlist = self._keeper.playlist
            live = playlist is not None and not playlist.ended
            session.cutter = Cutter(
                round(self.config.target_duration * 1000),
                playlist.target_duration
                if playlist is not None and live
                else self.config.playlist_target_duration,
                has_video=session.video is not None,
                fixed=live,
            )
            session.interleaver = Interleaver(
                tracks,
                round(self.config.interleave_delay * 1000),
                self.config.interleave_max_samples,
            )
            self._start_outputs(session)
        if not session.active:
            self.counters["dropped"] += 1  # no output carries this track set (_uncarried)
            return
        interleaver = session.interleaver
        assert interleaver is not None
        mapped = session.timeline.map(kind, timestamp, cts)
        if mapped is None:  # counted by the timeline as late
            self._warn(f"{kind} timestamp not after the previous one: sample dropped")
            return
        sample = Sample(kind, mapped[0], mapped[1], key, packet.data)
        arrival = now - mapped[0] / 1000
        if session.arrival is None or arrival < session.arrival:
            session.arrival = arrival
        if kind == VIDEO and key:
            if self._last_key_pts is not None and sample.pts > self._last_key_pts:
                gap = sample.pts - self._last_key_pts
                self.keyframe_interval = gap / 1000
                self._max_key_gap_ms = max(self._max_key_gap_ms, gap)
                if gap > self.config.target_duration * 1000 + LONG_GOP_TOLERANCE_MS:
                    self._warn_long_gop(gap)
            self._last_key_pts = sample.pts
        for ready in interleaver.push(sample):
            self._write(session, ready, now)

    def _start_outputs(self, session: _Session) -> None:
        """The outputs that can carry the session's codecs start with its configuration."""
        video, audio = session.video, session.audio
        refusal = ts_refusal(video, audio) if self._ts is not None else None
        if refusal is not None and refusal != session.ts_refusal:
            self._log.info("%s: no ts.m3u8 (%s): %s", self.path, self._publisher, refusal)
        session.ts_refusal = self.ts_refusal = refusal
        session.active = [o for o in self._outputs if not (o is self._ts and refusal)]
        if self._ts is not None and refusal is not None:
            self._ts.keeper.end(self._now)  # an earlier session's TS playlist ends here
        if not session.active:
            formats = ", ".join(self.config.formats)
            self._uncarried(f"{refusal}; no other output (formats: {formats})")
            return
        # The video renditions' CMAF goes video-only while the audio tracks are apart.
        apart = self.audio_apart and video is not None
        for output in session.active:
            alone = apart and output is self._cmaf
            output.start(session.prefix, video, None if alone else audio, self._discontinuity)
        self._configs = (video, None if apart else audio)

    def _uncarried(self, reason: str) -> None:
        """Media no output can carry: an error naming the publisher (once per session), the API
        (``uncarried``) and the warnings."""
        if reason not in self.uncarried:
            self.uncarried = [*self.uncarried, reason][-MAX_WARNINGS:]
            self._log.error("%s: publisher %s: %s", self.path, self._publisher or "?", reason)
        self._warn(reason)

    def _write(self, session: _Session, sample: Sample, now: float) -> None:
        assert session.cutter is not None
        decision = session.cutter.decide(sample)
        if decision.closed is not None:
            self._publish(session, *decision.closed, now, boundary=sample.dts)
        if decision.forced:
            self._forced = True
            interval = f"{self.keyframe_interval:.1f} s" if self.keyframe_interval else "unknown"
            self._warn(
                f"keyframe interval ({interval}) too long for the playlist's target duration "
                f"({session.cutter.limit_ms // 1000} s): segment cut without a keyframe and "
                "video dropped until the next one; set the encoder keyframe interval to 2 s"
            )
        if not decision.keep:
            self.counters["dropped"] += 1
            return
        if session.segment_dts is None:
            session.segment_dts = sample.dts
        self._seg_bytes[sample.kind] += len(sample.data)
        if sample.kind == VIDEO and self._open_video_dts is None:
            self._open_video_dts = sample.dts
        if self._cmaf is not None and not (
            sample.kind == AUDIO and self.audio_apart and session.video is not None
        ):
            self._cmaf.write(sample, now)
        if self._ts is not None and session.ts_refusal is None:
            try:
                self._ts.write(sample)
            except MediaError as exc:
                self.counters["malformed"] += 1
                self._warn(f"{sample.kind} sample not muxed: {exc.reason}")

    def _finish_segment(self, now: float) -> None:
        session = self._session
        if session is None or session.cutter is None or session.interleaver is None:
            return
        for sample in session.interleaver.flush():
            self._write(session, sample, now)
        closed = session.cutter.finish()
        if closed is not None:
            self._publish(session, *closed, now)
        self._last_key_pts = None

    # --- output --------------------------------------------------------------------------------

    def _publish(
        self, session: _Session, start: int, end: int, now: float, boundary: int | None = None
    ) -> None:
        """Close the segment [start, end) (ms) in every format; ``boundary`` is the DTS of the
        sample that opens the next one (None at the end of the media)."""
        forced, self._forced = self._forced, False
        seg_bytes, self._seg_bytes = self._seg_bytes, {VIDEO: 0, AUDIO: 0}
        if not sum(seg_bytes.values()):
            for output in session.active:  # nothing was written: nothing to close
                output.close_segment(Cut(0.0, boundary, False, None), now)
            return
        duration = max(end - start, 1) / 1000
        self._open_playlists(duration)
        discontinuity, self._discontinuity = self._discontinuity, False
        pdt = None
        if session.arrival is None:
            session.arrival = session.last_arrival  # every sample came before the last cut
        if session.arrival is not None:
            # rfc8216bis §4.4.4.6: the wall clock at which this media reached the gateway, on
            # every segment (so the first listed one always has it, also after a discontinuity).
            # The arrival of the segment's first frame, read off the segment's earliest sample
            # relative to decode time: an encoder whose first frames come late (FFmpeg: ~0.4 s)
            # or in a burst skews one segment, not the whole session, and a steady publisher
            # gives PDTs one EXTINF apart. By decode time: a B-frame encoder presents a keyframe
            # after it sends it, which is the encoder's delay, not the gateway's.
            first_dts = session.segment_dts if session.segment_dts is not None else start
            wall = session.wall_offset + session.arrival + first_dts / 1000
            pdt = datetime.fromtimestamp(wall, UTC)
            session.last_arrival, session.arrival = session.arrival, None
        session.segment_dts = None
        cut = Cut(duration, boundary, discontinuity, pdt)
        sequence = self._keeper.next_sequence
        video_dts, self._open_video_dts = self._open_video_dts, None
        sizes = [output.close_segment(cut, now) for output in session.active]
        if not any(sizes):
            return
        self.segment_count += 1
        self._published_at = now
        self.bitrate = {k: round(v * 8 / duration) for k, v in seg_bytes.items()}
        if video_dts is not None:
            self._starts[sequence] = video_dts
            if len(self._starts) > ALIGNMENT_HISTORY:
                del self._starts[min(self._starts)]
            (self._ladder or self)._check_alignment(self, sequence, video_dts)
        # What a player of index.m3u8 loads: the CMAF playlist's segments when it is there.
        size = sizes[session.active.index(self._cmaf)] if self._cmaf in session.active else 0
        self._write_multivariant((size or max(sizes)) * 8 / duration, duration)
        first = session.active[0]
        extension = ".ts" if first is self._ts else ".m4s"
        name = f"{self.path}/{session.prefix}-{sequence}{extension}"
        self._log.debug("segment %s %.3f s %s bytes", name, duration, sizes)
        if self._on_segment is not None:
            self._on_segment(
                SegmentInfo(self.path, name, sequence, duration, sizes[0], discontinuity, forced)
            )

    def _write_multivariant(self, bits_per_second: float, duration: float) -> None:
        """index.m3u8: a variant per video rendition (track 0 first, pointing at the LL-HLS
        playlist, or the TS one without CMAF) and an EXT-X-MEDIA per audio rendition when the
        audio tracks are apart, with bitrates measured from each rendition's own segments and
        the codecs of the actual sequence headers."""
        bits, seconds = self._bits
        self._bits = bits + bits_per_second * duration, seconds + duration
        self._peak_bitrate = max(self._peak_bitrate, round(bits_per_second))
        (self._ladder or self)._write_index()

    def _own_variant(self) -> Variant | None:
        """This rendition's EXT-X-STREAM-INF as measured so far (None before a segment)."""
        video, audio = self._configs
        if not self._bits[1]:
            return None
        return Variant(
            uri=self._variant_playlist(audio),
            bandwidth=self._peak_bitrate,
            average_bandwidth=round(self._bits[0] / self._bits[1]),
            codecs=tuple(c.codec_string for c in (video, audio) if c is not None),
            resolution=(video.info.width, video.info.height) if video else None,
            frame_rate=video.info.frame_rate if video else None,
        )

    def _live_renditions(self, kind: Kind) -> list[LiveStream]:
        """This session's renditions of ``kind`` that have a segment, by track id."""
        return [
            r
            for (k, _), r in sorted(self._renditions.items())
            if k == kind and r.in_session and r._bits[1]
        ]

    def _write_index(self) -> None:
        """index.m3u8 of the ladder (this is track 0's stream), rewritten when it changed."""
        own = self._own_variant()
        if own is None:
            return
        video = [own, *(v for r in self._live_renditions(VIDEO) if (v := r._own_variant()))]
        audio_streams = self._live_renditions(AUDIO) if self.audio_apart else []
        audio: list[AudioRendition] = []
        for stream in audio_streams:
            track_id = stream.track[1]
            info = self._track_info.get((AUDIO, track_id), {})
            name = rendition_name(info.get("name")) or f"Track {track_id}"
            if any(a.name == name for a in audio):  # §4.4.6.1: NAME unique in its group
                name = f"{name} ({track_id})"
            language = rendition_language(info.get("language"))
            default = track_id == min(s.track[1] for s in audio_streams)
            audio.append(AudioRendition(stream._keeper.name, AUDIO_GROUP, name, language, default))
        if audio:
            # A variant's BANDWIDTH covers its largest audio rendition too (§4.4.6.2).
            peak = max(s._peak_bitrate for s in audio_streams)
            average = max(round(s._bits[0] / s._bits[1]) for s in audio_streams)
            codec = next((c.codec_string for s in audio_streams if (c := s._configs[1])), None)
            video = [
                Variant(
                    v.uri,
                    v.bandwidth + peak,
                    v.average_bandwidth + average,
                    (*v.codecs, codec) if codec else v.codecs,
                    v.resolution,
                    v.frame_rate,
                    AUDIO_GROUP,
                )
                for v in video
            ]
        if (
            len(video) == len(self._variants)
            and audio == self._audio_renditions
            and not any(_worth_rewriting(o, n) for o, n in zip(self._variants, video, strict=True))
        ):
            return
        self._variants, self._audio_renditions = video, audio
        self._variant = video[0]
        text = render_multivariant(video, audio).encode()
        self.store.put(f"{self.path}/{MULTIVARIANT_NAME}", text)

    def _variant_playlist(self, audio: AudioConfig | None) -> str:
        """The media playlist index.m3u8 points at: the LL-HLS one, except for MP3 when TS carries
        the stream. Chromium's Media Source takes MP3 only as audio/mpeg, which hls.js makes out of
        MPEG-TS, not in fMP4 (isTypeSupported of mp4a.6B, mp4a.69 and mp4a.40.34 are false)."""
        if self._cmaf is None:
            return TS_PLAYLIST_NAME
        if isinstance(audio, Mp3Config) and self._ts is not None and self.ts_refusal is None:
            return TS_PLAYLIST_NAME
        return self._keeper.name  # cmaf.m3u8 for track 0, cmaf-vN.m3u8 for rendition N

    def _check_alignment(self, stream: LiveStream, sequence: int, video_dts: int) -> None:
        """Renditions whose segment ``sequence`` starts at another DTS than track 0's are cut
        on their own (their keyframes do not line up): a warning, once per session each."""
        pairs: list[tuple[LiveStream, int | None, int | None]]
        if stream is self:
            pairs = [
                (r, r._starts.get(sequence), video_dts)
                for (kind, _), r in self._renditions.items()
                if kind == VIDEO
            ]
        else:
            pairs = [(stream, video_dts, self._starts.get(sequence))]
        for rendition, theirs, track0 in pairs:
            if theirs is None or track0 is None:
                continue  # not cut yet on one side
            if theirs == track0:
                if rendition.aligned is None:
                    rendition.aligned = True
                continue
            rendition.aligned = False
            self._warn(
                f"video track {rendition.track[1]} keyframes do not line up with track 0 "
                f"(segment {sequence} starts {theirs - track0:+d} ms apart): it is cut on its "
                "own and players may stall switching to it; give every encoder of the ladder "
                "the same keyframe interval"
            )

    def _target_duration(self, first_segment: float) -> int:
        """EXT-X-TARGETDURATION for a new playlist (cutter.py, rule 1)."""
        floor = max(1, math.ceil(self.config.target_duration))
        ceiling = self.config.playlist_target_duration
        derived = nearest_int(self._max_key_gap_ms / 1000)
        # The first segment itself must fit (EXTINF rounds half up, playlist.py).
        first = nearest_int(round(first_segment, 3))
        return min(max(floor, derived, first), ceiling)

    def _open_playlists(self, first_segment: float) -> None:
        """Open the playlists when none is live (first segment, after ENDLIST, after a restart):
        numbering continues (RFC 8216 §6.2.2) and the first segment is a discontinuity if it
        follows an earlier playlist. Every format gets the same target duration."""
        session = self._session
        outputs = session.active if session is not None else self._outputs
        keepers = [o.keeper for o in outputs]
        if all(k.playlist is not None and not k.playlist.ended for k in keepers):
            return
        self._discontinuity = self._discontinuity or any(k.continues for k in keepers)
        target = self._target_duration(first_segment)
        if self._session is not None and self._session.cutter is not None:
            self._session.cutter.set_target_duration(target)
        floor = self._ladder_sequence()
        for output in outputs:
            keeper = output.keeper
            if keeper.playlist is None or keeper.playlist.ended:
                part_target = hold_back = None
                if isinstance(output, CmafOutput):
                    part_target = min(output.part_target_ms / 1000, target)
                    # Players stay three nominal parts behind (PART-TARGET is only a bound).
                    hold_back = 3 * output.part_ms / 1000
                playlist = keeper.open(
                    target,
                    self._now,
                    part_target=part_target,
                    part_hold_back=hold_back,
                    floor=floor,
                )
                if output is self._cmaf:
                    root = self._ladder or self
                    playlist.rendition_reports = partial(root._reports, keeper.name)

    def _ladder_sequence(self) -> int:
        """Where a video rendition's new playlist starts numbering: track 0's number of the
        segment starting at the same keyframe (or track 0's next), so that aligned renditions
        number alike; 0 (no floor) for track 0 and the audio renditions."""
        ladder = self._ladder
        if ladder is None or self.track[0] != VIDEO:
            return 0
        start = self._open_video_dts
        for sequence, dts in ladder._starts.items():
            if dts == start:
                return sequence
        return ladder._keeper.next_sequence

    def _reports(self, exclude: str) -> list[RenditionReport]:
        """EXT-X-RENDITION-REPORT of every other live LL-HLS playlist of the ladder
        (rfc8216bis §4.4.5.4), for the playlist ``exclude``."""
        reports = []
        for stream in self._ladder_order():
            cmaf = stream._cmaf
            if cmaf is None or cmaf.keeper.name == exclude:
                continue
            if stream is not self and not stream.in_session:
                continue
            playlist = cmaf.keeper.playlist
            last = playlist.last_part() if playlist is not None and not playlist.ended else None
            if last is not None:
                reports.append(RenditionReport(cmaf.keeper.name, last[0], last[1]))
        return reports

    def metadata(self, values: dict[str, Any]) -> None:
        """The publisher's onMetaData: Enhanced RTMP v2 ``audioTrackIdInfoMap`` /
        ``videoTrackIdInfoMap`` give per-track properties (a name and language for the audio
        renditions); more than one audio track there sets the audio apart before any frame."""
        maps: tuple[tuple[Kind, str], ...] = (
            (AUDIO, "audioTrackIdInfoMap"),
            (VIDEO, "videoTrackIdInfoMap"),
        )
        for kind, key in maps:
            tracks = values.get(key)
            if not isinstance(tracks, dict):
                continue
            for raw_id, info in list(tracks.items())[: self.config.max_renditions + 1]:
                if not isinstance(info, dict) or not str(raw_id).isdigit():
                    continue
                track_id = int(str(raw_id))
                self._track_info[kind, track_id] = {
                    "name": info.get("name", info.get("title")),
                    "language": info.get("language", info.get("lang")),
                }
                if kind == AUDIO and track_id not in self._audio_ids:
                    self._audio_ids.add(track_id)
        if len(self._audio_ids) > 1 and not self.audio_apart:
            self._set_audio_apart(self._now)

    def missing_reason(self, file: str) -> str | None:
        """Why ``file`` is not made for this stream: ts.m3u8 of a session TS cannot carry."""
        if file == TS_PLAYLIST_NAME and self.ts_refusal is not None:
            return f"{file} of {self.path}: {self.ts_refusal}; play {MULTIVARIANT_NAME}"
        return None

    def part(self, uri: str) -> bytes | None:
        """An LL-HLS part of this stream (they are kept in memory, not in the store)."""
        for stream in [self, *self._renditions.values()]:
            data = stream._cmaf.part(uri) if stream._cmaf is not None else None
            if data is not None:
                return data
        return None

    def published_now(self, file: str) -> None:
        """``file`` (a segment or init segment of this stream) reached the public copy: the
        playlists listing it point there from now on (and their stored versions are rewritten)."""
        for stream in [self, *self._renditions.values()]:
            for output in stream._outputs:
                output.keeper.published_now(file)

    def live_playlist(self, file: str) -> LivePlaylist | None:
        """The LL-HLS playlist named ``file`` (cmaf.m3u8, cmaf-v1.m3u8, ...), or the one a
        part ``file`` belongs to (by its name prefix), while this process makes it."""
        part = file.endswith(".m4s")
        prefix = file.rsplit(_PART_PREFIX_END, 1)[0] if part else ""
        for stream in [self, *self._renditions.values()]:
            cmaf = stream._cmaf
            if cmaf is None:
                continue
            playlist = cmaf.keeper.playlist
            if not part:
                if cmaf.keeper.name == file:
                    return playlist
                continue
            hint = playlist.preload_hint if playlist is not None else None
            if cmaf.part(file) is not None or (
                hint is not None and hint.rsplit(_PART_PREFIX_END, 1)[0] == prefix
            ):
                return playlist
        return None

    def lowlatency_state(
        self,
    ) -> tuple[dict[str, LivePlaylist], dict[str, bytes], dict[str, str]]:
        """Everything the web side asks of this stream while it is made here: the LL-HLS
        playlists by name, the parts by URI and why files are not made (for the copies other
        worker processes serve, gateway.cluster)."""
        playlists: dict[str, LivePlaylist] = {}
        parts: dict[str, bytes] = {}
        for stream in [self, *self._renditions.values()]:
            cmaf = stream._cmaf
            if cmaf is None:
                continue
            playlist = cmaf.keeper.playlist
            if playlist is not None:
                playlists[cmaf.keeper.name] = playlist
            parts.update(cmaf.parts())
        missing: dict[str, str] = {}
        reason = self.missing_reason(TS_PLAYLIST_NAME)
        if reason is not None:
            missing[TS_PLAYLIST_NAME] = reason
        return playlists, parts, missing

    @property
    def lowlatency(self) -> LivePlaylist | None:
        """The LL-HLS playlist (cmaf.m3u8) while this process makes it, for blocking reloads."""
        return self._cmaf.keeper.playlist if self._cmaf is not None else None

    def retirable(self, now: float, retention: float) -> bool:
        """No publisher, and the playlist ended (EXT-X-ENDLIST) ``retention`` seconds ago (so
        did every rendition's that has one)."""
        return (
            self._session is None
            and self._keeper.retirable(now, retention)
            and all(
                r._keeper.playlist is None or r.retirable(now, retention)
                for r in self._renditions.values()
            )
        )

    def retire(self, now: float) -> None:
        """Free the segments; only the numbering stays in the store (PlaylistKeeper.retire)."""
        for output in self._outputs:
            output.keeper.retire()
        if self._cmaf is not None:
            self._cmaf.retired()
        for rendition in self._renditions.values():
            rendition.retire(now)

    # --- observability -------------------------------------------------------------------------

    def _warn_long_gop(self, gap_ms: int) -> None:
        # Once per session: the interval is the publisher's setting, not a passing event.
        if self._session is None or self._session.long_gop_warned:
            return
        self._session.long_gop_warned = True
        self._warn(
            f"keyframe interval {gap_ms / 1000:.1f} s is longer than the "
            f"{self.config.target_duration:g} s target: segments follow the keyframes, which adds "
            "latency for viewers; set the encoder keyframe interval to "
            f"{self.config.target_duration:g} s (OBS: Output > Keyframe Interval)"
        )

    def _warn_change(self, kind: Kind, old: str, new: str) -> None:
        # Legitimate once (an encoder switching resolution); an encoder flapping between two
        # configurations cuts a segment and waits for a keyframe at each switch.
        self._warn(
            f"{kind} codec parameters changed mid-session ({old} -> {new}): segment cut, "
            "discontinuity, video waits for the next keyframe"
        )

    def _warn_jump(self, kind: Kind, jump_ms: int) -> None:
        self._warn(
            f"publisher clock jumped {jump_ms / 1000:+.1f} s ({kind}): timeline rebased, "
            "playback continues without a gap"
        )

    def _warn(self, message: str) -> None:
        if message in self.warnings:
            return
        self.warnings = [*self.warnings, message][-MAX_WARNINGS:]
        start, logged = self._warn_window
        if self._now - start >= WARN_WINDOW:
            self._flush_suppressed()
            start, logged = self._now, 0
        if logged >= WARN_BURST:
            self._warn_suppressed += 1
            return
        self._warn_window = (start, logged + 1)
        self._log.warning("%s: %s", self.path, message)

    def _flush_suppressed(self) -> None:
        if self._warn_suppressed:
            self._log.warning(
                "%s: %d more warnings not logged (at most %d per %g s); see /api/streams/%s",
                self.path,
                self._warn_suppressed,
                WARN_BURST,
                WARN_WINDOW,
                self.path,
            )
            self._warn_suppressed = 0

    def _count_timeline(self, session: _Session) -> None:
        self.counters["late"] += session.timeline.late
        self.counters["jumps"] += session.timeline.jumps
        session.timeline.late = session.timeline.jumps = 0

    @property
    def state(self) -> str:
        if self._session is not None:
            return "live"
        if self._keeper.playlist is not None and self._keeper.playlist.ended:
            return "ended"
        return "waiting"

    def stats(self, now: float | None = None) -> dict[str, Any]:
        """A JSON-ready snapshot for the API and metrics."""
        now = self._now if now is None else now
        if self._session is not None:
            self._count_timeline(self._session)
        video, audio = self._configs
        codecs = [c.codec_string for c in (video, audio) if c is not None]
        playlist = self._keeper.playlist
        return {
            "path": self.path,
            "state": self.state,
            "codecs": codecs,  # RFC 6381 strings, video first (EXT-X-STREAM-INF CODECS order)
            "width": video.info.width if video else None,
            "height": video.info.height if video else None,
            "frame_rate": video.info.frame_rate if video else None,
            "audio_sample_rate": audio.sample_rate if audio else None,
            "audio_channels": audio.channels if audio else None,
            "audio_channel_layout": list(self.channel_layout),  # E-RTMP MultichannelConfig
            "video_bitrate": self.bitrate[VIDEO],
            "audio_bitrate": self.bitrate[AUDIO],
            "keyframe_interval": self.keyframe_interval,
            "target_duration": (
                playlist.target_duration if playlist else self.config.playlist_target_duration
            ),
            "segment_count": self.segment_count,
            "media_sequence": playlist.media_sequence if playlist else 0,
            "formats": list(self.config.formats),
            "part_target": (
                self.lowlatency.part_target if self.lowlatency is not None else None
            ),  # PART-TARGET of cmaf.m3u8, seconds
            "newest_segment_age": (
                None if self._published_at is None else max(0.0, now - self._published_at)
            ),
            **self.counters,
            "ts": self.ts_refusal,  # why there is no ts.m3u8 (None: TS is written when enabled)
            "uncarried": list(self.uncarried),  # media of this session no output carries
            "warnings": list(self.warnings),
            # Multitrack: one entry per rendition of index.m3u8 (a single-track publish: one).
            "renditions": [r._describe_rendition() for r in self._ladder_order()],
        }

    def _ladder_order(self) -> list[LiveStream]:
        """This stream (video track 0), the other video tracks, then the audio tracks, by id."""
        others = sorted(self._renditions.items(), key=lambda item: (item[0][0] != VIDEO, item[0]))
        return [self, *(r for _, r in others)]

    def _describe_rendition(self) -> dict[str, Any]:
        video, audio = self._configs
        config = video if self.track[0] == VIDEO else audio
        return {
            "kind": self.track[0],
            "track": self.track[1],
            "playlist": self._keeper.name,
            "live": self._session is not None,
            "codecs": [c.codec_string for c in (video, audio) if c is not None],
            "width": video.info.width if video else None,
            "height": video.info.height if video else None,
            "bandwidth": self._peak_bitrate,  # measured from its own segments, bits/s
            "average_bandwidth": round(self._bits[0] / self._bits[1]) if self._bits[1] else 0,
            "codec": config.codec_string if config is not None else None,
            # Video renditions: whether its segments start at track 0's keyframes (None: not
            # compared yet; track 0 itself: True).
            "aligned": True if self._ladder is None else self.aligned,
            "audio_apart": self.audio_apart,
        }
