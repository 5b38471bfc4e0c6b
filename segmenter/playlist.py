"""Live HLS media playlist: sliding window, sequence numbers and removal grace (RFC 8216).

Pure state, no I/O: the caller passes a monotonic ``now`` (seconds) and writes ``render()`` to
the store itself. The rendered text is built from the ``m3u8`` package's models.

Window rule (RFC 8216 §6.2.2, PROTOCOLS.md §6): the head segment is dropped only while more than
``window_segments`` segments are listed AND the segments left after dropping it still last at
least 3 x target duration. So the effective window is max(window_segments, as many segments as
it takes to cover 3 x target duration), capped by ``MAX_WINDOW_SEGMENTS`` for memory safety.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import m3u8

# Version 3 is the lowest that allows decimal EXTINF (RFC 8216 §7); no other tag we emit needs more.
PLAYLIST_VERSION = 3
# RFC 8216 §6.2.2: a live playlist must keep at least this many target durations listed.
MIN_WINDOW_TARGET_DURATIONS = 3
# Hard cap on listed segments, so absurdly short segments cannot grow the window without bound.
MAX_WINDOW_SEGMENTS = 2000
# Pending removals beyond 2 x window + this slack are released early (only reachable when the
# caller's clock runs far faster than the media or expired() is not called).
PENDING_REMOVAL_SLACK = 16
# EXTINF precision (RFC 8216 §4.3.2.1 allows decimals); we always print milliseconds.
EXTINF_DECIMALS = 3


class PlaylistEndedError(RuntimeError):
    """add_segment() on a playlist that already carries EXT-X-ENDLIST (RFC 8216 §6.2.1)."""


@dataclass(frozen=True, slots=True)
class SegmentEntry:
    """One media segment as listed in the playlist."""

    uri: str
    duration: float
    discontinuity: bool = False
    program_date_time: datetime | None = None

    def __post_init__(self) -> None:
        if not self.uri or any(c.isspace() or ord(c) < 0x20 for c in self.uri):
            # RFC 8216 §4.1: a URI line is one line of non-control characters.
            raise ValueError(f"invalid segment URI {self.uri!r}")
        if not math.isfinite(self.duration) or self.duration < 0:
            raise ValueError(f"invalid segment duration {self.duration!r}")
        pdt = self.program_date_time
        if pdt is not None and pdt.utcoffset() is None:
            # RFC 8216 §4.3.2.6: the date-time must carry a time zone.
            raise ValueError("program_date_time must be timezone-aware")


class _ShownZero(int):
    """An int that is truthy even when 0: m3u8 omits falsy sequence numbers from dumps()."""

    def __bool__(self) -> bool:
        return True


@dataclass(slots=True)
class _Listed:
    entry: SegmentEntry
    duration: float  # EXTINF value as rendered (rounded to EXTINF_DECIMALS)
    longest_playlist: float  # longest total duration of any playlist state that listed it


@dataclass(frozen=True, slots=True)
class _Pending:
    uri: str
    deadline: float


def _rounded(duration: float) -> float:
    return round(duration, EXTINF_DECIMALS)


def _nearest_int(value: float) -> int:
    # RFC 8216 §4.3.3.1 "rounded to the nearest integer": half rounds up (as clients do), not
    # Python's banker's rounding, so 2.5 counts as 3.
    return math.floor(value + 0.5)


class LivePlaylist:
    """A sliding-window live media playlist (RFC 8216 §6.2.1, §6.2.2)."""

    def __init__(
        self,
        target_duration: int,
        window_segments: int,
        *,
        media_sequence: int = 0,
        discontinuity_sequence: int = 0,
        independent_segments: bool = True,
    ) -> None:
        if isinstance(target_duration, bool) or not isinstance(target_duration, int):
            raise ValueError("target_duration must be an int (RFC 8216 §4.3.3.1)")
        if target_duration < 1:
            raise ValueError("target_duration must be >= 1")
        if window_segments < 1 or window_segments > MAX_WINDOW_SEGMENTS:
            raise ValueError(f"window_segments must be in 1..{MAX_WINDOW_SEGMENTS}")
        if media_sequence < 0 or discontinuity_sequence < 0:
            raise ValueError("sequence numbers must be >= 0")
        self._target_duration = target_duration
        self._window_segments = window_segments
        self._media_sequence = media_sequence
        self._discontinuity_sequence = discontinuity_sequence
        self._independent_segments = independent_segments
        self._listed: list[_Listed] = []
        self._total = 0.0  # sum of listed EXTINF durations
        self._pending: list[_Pending] = []
        self._had_discontinuity = discontinuity_sequence > 0
        self._ended = False

    # -- read-only state ------------------------------------------------------------------------

    @property
    def ended(self) -> bool:
        return self._ended

    @property
    def media_sequence(self) -> int:
        """EXT-X-MEDIA-SEQUENCE: sequence number of the first listed segment."""
        return self._media_sequence

    @property
    def discontinuity_sequence(self) -> int:
        return self._discontinuity_sequence

    @property
    def target_duration(self) -> int:
        return self._target_duration

    @property
    def segments(self) -> list[SegmentEntry]:
        return [item.entry for item in self._listed]

    @property
    def next_media_sequence(self) -> int:
        """Sequence number the next added segment will get."""
        return self._media_sequence + len(self._listed)

    @property
    def total_duration(self) -> float:
        """Sum of the listed EXTINF durations (the playlist's duration)."""
        return self._total

    @property
    def pending_removals(self) -> int:
        """Removed segments still inside their grace period (for statistics and tests)."""
        return len(self._pending)

    # -- changes (RFC 8216 §6.2.1: append, drop from the head, bump sequences, add ENDLIST) ------

    def add_segment(self, entry: SegmentEntry, now: float) -> list[str]:
        """Append ``entry``; return the URIs that just left the window.

        The removed URIs must stay downloadable: delete them from the store only once
        ``expired()`` returns them.
        """
        if self._ended:
            raise PlaylistEndedError("playlist already ended")
        duration = _rounded(entry.duration)
        if _nearest_int(duration) > self._target_duration:
            # RFC 8216 §4.3.3.1: every EXTINF rounded to the nearest integer <= target duration,
            # and §6.2.1: the target duration never changes.
            raise ValueError(
                f"segment duration {duration} exceeds target duration {self._target_duration}"
            )
        if entry.discontinuity:
            self._had_discontinuity = True
        self._listed.append(_Listed(entry, duration, 0.0))
        self._total += duration

        removed: list[_Listed] = []
        while self._should_drop_head():
            head = self._listed.pop(0)
            self._total -= head.duration
            self._media_sequence += 1
            if head.entry.discontinuity:
                # RFC 8216 §6.2.2: removing a segment with EXT-X-DISCONTINUITY bumps the sequence.
                self._discontinuity_sequence += 1
            removed.append(head)
        if not self._listed:
            self._total = 0.0
        # Every state callers can render happens here: remember the longest playlist that listed
        # each segment, for the removal grace below.
        for item in self._listed:
            item.longest_playlist = max(item.longest_playlist, self._total)
        for head in removed:
            # RFC 8216 §6.2.2: keep a removed segment available for its duration plus the
            # duration of the longest playlist that contained it.
            deadline = now + head.duration + head.longest_playlist
            self._pending.append(_Pending(head.entry.uri, deadline))
        self._bound_pending(now)
        return [head.entry.uri for head in removed]

    def _should_drop_head(self) -> bool:
        if len(self._listed) > MAX_WINDOW_SEGMENTS:
            return True
        if len(self._listed) <= self._window_segments:
            return False
        remaining = self._total - self._listed[0].duration
        # Small epsilon: durations are sums of 3-decimal values.
        minimum = MIN_WINDOW_TARGET_DURATIONS * self._target_duration
        return remaining >= minimum - 1e-9

    def _bound_pending(self, now: float) -> None:
        limit = 2 * len(self._listed) + PENDING_REMOVAL_SLACK
        excess = len(self._pending) - limit
        if excess > 0:
            # Memory beats grace here: release the oldest removals at once (still returned by
            # expired(), so the caller deletes them and nothing leaks in the store).
            self._pending[:excess] = [_Pending(p.uri, now) for p in self._pending[:excess]]

    def expired(self, now: float) -> list[str]:
        """URIs whose removal grace is over: delete them from the store now (they are forgotten)."""
        due = [p.uri for p in self._pending if p.deadline <= now]
        if due:
            self._pending = [p for p in self._pending if p.deadline > now]
        return due

    def end(self) -> None:
        """Add EXT-X-ENDLIST (RFC 8216 §4.3.3.4); the playlist is final afterwards."""
        self._ended = True

    # -- output ---------------------------------------------------------------------------------

    def render(self) -> str:
        """The playlist text (RFC 8216 §4.3.3, §4.3.4.2: no EXT-X-PLAYLIST-TYPE while live)."""
        playlist = m3u8.M3U8()
        playlist.version = PLAYLIST_VERSION
        playlist.target_duration = self._target_duration
        # Always print MEDIA-SEQUENCE, even 0 (m3u8 drops falsy values; explicit is clearer).
        playlist.media_sequence = _ShownZero(self._media_sequence)
        if self._had_discontinuity:
            # RFC 8216 §4.3.3.3: lets clients line up discontinuities after a head removal.
            playlist.discontinuity_sequence = _ShownZero(self._discontinuity_sequence)
        playlist.is_independent_segments = self._independent_segments
        playlist.is_endlist = self._ended
        for item in self._listed:
            playlist.add_segment(
                m3u8.Segment(
                    uri=item.entry.uri,
                    duration=item.duration,
                    discontinuity=item.entry.discontinuity,
                    program_date_time=item.entry.program_date_time,
                )
            )
        text: str = playlist.dumps(timespec="milliseconds", infspec="milliseconds")
        return text


@dataclass(frozen=True, slots=True)
class PreviousPlaylist:
    """What a playlist left by an earlier process says, for resuming after a restart."""

    next_media_sequence: int
    discontinuity_sequence: int
    uris: tuple[str, ...]
    duration: float  # seconds listed
    ended: bool


def read_previous(text: str) -> PreviousPlaylist | None:
    """Parse an existing media playlist; None when ``text`` is not one."""
    text = text.lstrip("\ufeff")
    if not text.startswith("#EXTM3U"):
        return None
    try:
        playlist = m3u8.loads(text)
    except Exception:  # m3u8 raises assorted errors on malformed input
        return None
    if playlist.is_variant or playlist.target_duration is None:
        return None
    segments = playlist.segments
    return PreviousPlaylist(
        next_media_sequence=int(playlist.media_sequence or 0) + len(segments),
        discontinuity_sequence=int(playlist.discontinuity_sequence or 0)
        + sum(1 for segment in segments if segment.discontinuity),
        uris=tuple(str(segment.uri) for segment in segments),
        duration=float(sum(segment.duration or 0 for segment in segments)),
        ended=bool(playlist.is_endlist),
    )


def parse_resume_state(text: str) -> tuple[int, int] | None:
    """(next media sequence, discontinuity sequence) to continue an existing playlist's numbering.

    Build the new playlist with ``media_sequence=`` and ``discontinuity_sequence=`` set to these
    and mark its first segment ``discontinuity=True`` (a restart is a new timeline): that segment
    then gets the number after the old last one (RFC 8216 §4.3.3.3, §6.2.2: never decrease).
    Returns None when ``text`` is not a media playlist.
    """
    previous = read_previous(text)
    if previous is None:
        return None
    return previous.next_media_sequence, previous.discontinuity_sequence
