"""Live HLS media playlist: sliding window, sequence numbers and removal grace (RFC 8216), and
the Low-Latency HLS additions (draft-pantos-hls-rfc8216bis §4.4.3.7-4.4.5.2, §6.2.5-6.2.6):
partial segments, a preload hint, server control and delta updates.

Pure state, no I/O: the caller passes a monotonic ``now`` (seconds) and writes ``render()`` to
the store itself. The rendered text is built from the ``m3u8`` package's models.

Window rule (RFC 8216 §6.2.2, docs/protocol.md §6): the head segment is dropped only while more than
``window_segments`` segments are listed AND the segments left after dropping it still last at
least 3 x target duration. So the effective window is max(window_segments, as many segments as
it takes to cover 3 x target duration), capped by ``MAX_WINDOW_SEGMENTS`` for memory safety.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import m3u8
from m3u8.model import PartInformation, ServerControl, Skip

# Version 3 is the lowest that allows decimal EXTINF (RFC 8216 §7); no other tag we emit needs more.
PLAYLIST_VERSION = 3
# rfc8216bis §8: EXT-X-MAP in a playlist without EXT-X-I-FRAMES-ONLY needs 6; EXT-X-SKIP needs 9.
MAP_PLAYLIST_VERSION = 6
SKIP_PLAYLIST_VERSION = 9
# rfc8216bis §6.2.5.1 / Apple's LL-HLS rules: parts are listed for the segments of about the last
# three target durations; older segments are listed whole.
PART_LIST_TARGET_DURATIONS = 3
# rfc8216bis §4.4.3.8: CAN-SKIP-UNTIL is at least six target durations.
SKIP_TARGET_DURATIONS = 6
# PART-HOLD-BACK in part targets (rfc8216bis §4.4.3.8 requires at least 2; Apple advises 3).
PART_HOLD_BACK_PARTS = 3
MIN_PART_HOLD_BACK_PARTS = 2
# DURATION precision of EXT-X-PART and PART-TARGET (milliseconds, like EXTINF).
PART_DECIMALS = 3
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
class PartEntry:
    """One partial segment (rfc8216bis §4.4.4.9): a CMAF fragment of the segment being made."""

    uri: str
    duration: float
    independent: bool  # starts with a keyframe (INDEPENDENT=YES)


@dataclass(frozen=True, slots=True)
class SegmentEntry:
    """One media segment as listed in the playlist."""

    uri: str
    duration: float
    discontinuity: bool = False
    program_date_time: datetime | None = None
    init_uri: str | None = None  # EXT-X-MAP of an fMP4 segment
    parts: tuple[PartEntry, ...] = ()  # its parts, in order (LL-HLS)

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
class Position:
    """Where the live edge of a low-latency playlist is (rfc8216bis §6.2.5.2).

    ``msn`` is the media sequence number of the segment being made, ``parts`` how many of its
    parts are complete; ``ended`` once EXT-X-ENDLIST was added.
    """

    msn: int
    parts: int
    ended: bool


@dataclass(frozen=True, slots=True)
class RenditionReport:
    """EXT-X-RENDITION-REPORT of another rendition of the ladder (rfc8216bis §4.4.5.4)."""

    uri: str
    last_msn: int
    last_part: int | None  # None: that rendition lists no parts (LAST-PART left out)


@dataclass(frozen=True, slots=True)
class _Pending:
    uri: str
    deadline: float


def _rounded(duration: float) -> float:
    return round(duration, EXTINF_DECIMALS)


def nearest_int(value: float) -> int:
    # RFC 8216 §4.3.3.1 "rounded to the nearest integer": half rounds up (as clients do), not
    # Python's banker's rounding, so 2.5 counts as 3.
    return math.floor(value + 0.5)


class _Reports(list[RenditionReport]):
    """Rendition reports frozen when a playlist was copied; called like the live source."""

    def __call__(self) -> list[RenditionReport]:
        return self


class _Held(frozenset[str]):
    """Public URIs when a playlist was copied; called like the store's ``published``."""

    def __call__(self, uri: str) -> bool:
        return uri in self


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
        part_target: float | None = None,
        part_hold_back: float | None = None,
        uri_base: str = "",
        published: Callable[[str], bool] | None = None,
    ) -> None:
        """``uri_base``: put before segment and EXT-X-MAP URIs when rendered (the public URL of
        the stream's directory in a bucket or CDN, ending in "/"), for those ``published(uri)``
        says are there (all when None): one not uploaded yet stays relative, fetched from the
        origin, so no player is sent to a bucket that does not have it yet; :meth:`refresh`
        once it is. Parts and the preload hint stay relative, served by the origin. Removals
        and ``listed_uris`` stay relative."""
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
        if part_target is not None and not 0 < part_target <= target_duration:
            raise ValueError("part_target must be in (0, target_duration]")
        self._part_target = part_target  # None: not a low-latency playlist
        if part_target is not None:
            # PART-HOLD-BACK: three part targets unless given (three nominal part lengths when
            # PART-TARGET is a bound above them); never below two part targets.
            floor = MIN_PART_HOLD_BACK_PARTS * part_target
            held = PART_HOLD_BACK_PARTS * part_target if part_hold_back is None else part_hold_back
            part_hold_back = round(max(held, floor), PART_DECIMALS)
        self._part_hold_back = part_hold_back
        self._open_parts: list[PartEntry] = []  # parts of the segment being made
        self._open_init: str | None = None
        self._open_discontinuity = False
        self._hint: str | None = None  # EXT-X-PRELOAD-HINT URI
        self._uri_base = uri_base
        self._published = published
        # render() by (skip, low latency), until the next change
        self._rendered: dict[tuple[bool, bool], str] = {}
        # The part before the open segment's parts, by skip: it changes once per segment, the
        # open parts and the hint once per part (m3u8's dumps costs ~0.3 ms for a playlist).
        self._heads: dict[tuple[bool, bool], str] = {}
        # The other renditions of a ladder, asked at each render (they move on their own).
        self.rendition_reports: Callable[[], list[RenditionReport]] | None = None

    def __getstate__(self) -> dict[str, object]:
        """A copy for another worker process (gateway.cluster): the renditions' reports as
        they are now; of the render caches only the head, which changes once a segment (the
        whole playlist changes every part: the receiver renders that itself)."""
        state = dict(vars(self))
        state["_rendered"] = {}
        reports = self.rendition_reports
        state["rendition_reports"] = _Reports(reports()) if reports is not None else None
        published = self._published
        if published is not None:  # which URIs the bucket holds now (hls_public_base_url)
            uris = {self._open_init} | {i.entry.uri for i in self._listed}
            uris |= {i.entry.init_uri for i in self._listed}
            state["_published"] = _Held(frozenset(u for u in uris if u and published(u)))
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        vars(self).update(state)

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
    def part_target(self) -> float | None:
        return self._part_target

    @property
    def position(self) -> Position:
        return Position(self.next_media_sequence, len(self._open_parts), self._ended)

    def last_part(self) -> tuple[int, int | None] | None:
        """(LAST-MSN, LAST-PART) of this playlist as a rendition report gives them (§4.4.5.4):
        the last part when there are parts, else the last segment; None when empty."""
        if self._open_parts:
            return self.next_media_sequence, len(self._open_parts) - 1
        if not self._listed:
            return None
        parts = self._listed[-1].entry.parts
        return self.next_media_sequence - 1, (len(parts) - 1 if parts else None)

    @property
    def preload_hint(self) -> str | None:
        return self._hint

    @property
    def skip_until(self) -> float:
        """CAN-SKIP-UNTIL in seconds (rfc8216bis §4.4.3.8)."""
        return float(SKIP_TARGET_DURATIONS * self._target_duration)

    @property
    def pending_removals(self) -> int:
        """Removed segments still inside their grace period (for statistics and tests)."""
        return len(self._pending)

    # -- changes (RFC 8216 §6.2.1: append, drop from the head, bump sequences, add ENDLIST) ------

    def add_part(self, part: PartEntry, init_uri: str | None, discontinuity: bool = False) -> None:
        """A part of the segment being made is complete (LL-HLS). ``discontinuity``: that
        segment starts a new timeline or configuration (its parts follow EXT-X-DISCONTINUITY)."""
        if self._ended:
            raise PlaylistEndedError("playlist already ended")
        if self._part_target is None:
            raise ValueError("not a low-latency playlist")
        self._open_parts.append(PartEntry(part.uri, _rounded(part.duration), part.independent))
        self._open_init = init_uri
        self._open_discontinuity = discontinuity
        if discontinuity and not self._had_discontinuity:
            self._had_discontinuity = True
            self._heads.clear()  # EXT-X-DISCONTINUITY-SEQUENCE appears
        self._rendered.clear()

    def set_preload_hint(self, uri: str | None) -> None:
        """EXT-X-PRELOAD-HINT TYPE=PART for the part being made (rfc8216bis §4.4.5.3)."""
        if uri != self._hint:
            self._hint = uri
            self._rendered.clear()

    def add_segment(self, entry: SegmentEntry, now: float) -> list[str]:
        """Append ``entry``; return the URIs that just left the window.

        The removed URIs must stay downloadable: delete them from the store only once
        ``expired()`` returns them.
        """
        if self._ended:
            raise PlaylistEndedError("playlist already ended")
        duration = _rounded(entry.duration)
        if nearest_int(duration) > self._target_duration:
            # RFC 8216 §4.3.3.1: every EXTINF rounded to the nearest integer <= target duration,
            # and §6.2.1: the target duration never changes.
            raise ValueError(
                f"segment duration {duration} exceeds target duration {self._target_duration}"
            )
        if entry.discontinuity:
            self._had_discontinuity = True
        self._open_parts, self._open_init, self._open_discontinuity = [], None, False
        self._rendered.clear()
        self._heads.clear()
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
        inits = {item.entry.init_uri for item in self._listed}
        for head in removed:
            # RFC 8216 §6.2.2: keep a removed segment available for its duration plus the
            # duration of the longest playlist that contained it; an init segment no listed
            # segment uses any more goes with it. Parts are not here: they never reach the store
            # (CmafOutput keeps them in memory), and deleting ten missing files per segment
            # cost the store's writer thread more than writing the segment.
            deadline = now + head.duration + head.longest_playlist
            uris = [head.entry.uri]
            if head.entry.init_uri is not None and head.entry.init_uri not in inits:
                uris.append(head.entry.init_uri)
                inits.add(head.entry.init_uri)
            self._pending += [_Pending(uri, deadline) for uri in uris]
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
        """URIs whose removal grace is over: delete them from the store now (they are forgotten).
        An init segment that a listed segment uses again (same content, same name) is kept."""
        due = [p.uri for p in self._pending if p.deadline <= now]
        if due:
            self._pending = [p for p in self._pending if p.deadline > now]
            in_use = self.init_uris()
            due = [uri for uri in due if uri not in in_use]
        return due

    def init_uris(self) -> set[str]:
        """The init segments (EXT-X-MAP) of the listed segments and of the open parts."""
        uris = {item.entry.init_uri for item in self._listed if item.entry.init_uri}
        if self._open_init:
            uris.add(self._open_init)
        return uris

    def end(self) -> None:
        """Add EXT-X-ENDLIST (RFC 8216 §4.3.3.4); the playlist is final afterwards. Parts of an
        unfinished segment are dropped (its media went into no segment) and so is the hint."""
        self._ended = True
        self._open_parts, self._open_init, self._hint = [], None, None
        self._rendered.clear()
        self._heads.clear()

    def listed_uris(self) -> list[str]:
        """Every stored URI listed now (segments, init segments; not parts, which are never
        stored), for a final clean-up."""
        uris = []
        for item in self._listed:
            entry = item.entry
            uris.append(entry.uri)
            if entry.init_uri is not None:
                uris.append(entry.init_uri)
        return list(dict.fromkeys(uris))

    def names(self, uri: str) -> bool:
        """``uri`` is a segment or init segment this playlist lists (or its open parts use)."""
        return uri == self._open_init or any(
            uri in (item.entry.uri, item.entry.init_uri) for item in self._listed
        )

    def refresh(self) -> None:
        """Render again at the next ``render``: an object became published (``uri_base``)."""
        self._rendered.clear()
        self._heads.clear()

    def _public(self, uri: str) -> str:
        if self._uri_base and (self._published is None or self._published(uri)):
            return self._uri_base + uri
        return uri

    # -- output ---------------------------------------------------------------------------------

    def render(self, skip: bool = False, low_latency: bool = True) -> str:
        """The playlist text (RFC 8216 §4.3.3, §4.3.4.2: no EXT-X-PLAYLIST-TYPE while live).

        ``skip`` asks for a delta update (rfc8216bis §6.2.5.1, ``_HLS_skip=YES``): segments
        more than CAN-SKIP-UNTIL from the end are replaced by EXT-X-SKIP. ``low_latency=False``
        leaves out every LL-HLS tag (server control, parts, hint): the whole segments only, as a
        static file server can serve them.
        """
        low_latency = low_latency and self._part_target is not None
        key = (skip and low_latency, low_latency)
        text = self._rendered.get(key)
        if text is None:
            text = self._rendered[key] = self._render(*key)
        if low_latency and self.rendition_reports is not None and not self._ended:
            # Last, after the hint: the others' positions change without this playlist changing.
            lines = [_report_line(r) for r in self.rendition_reports()]
            if lines:
                text = text + "\n".join(lines) + "\n"
        return text

    def _render(self, skip: bool, low_latency: bool) -> str:
        text = self._heads.get((skip, low_latency))
        if text is None:
            text = self._heads[skip, low_latency] = self._render_head(skip, low_latency)
        if not low_latency or not (self._open_parts or self._hint):
            return text
        # The segment being made: its parts so far and the hint for the next (§4.4.5.3).
        # m3u8 would print a blank URI line for a segment without a URI; written here.
        lines = []
        if self._open_discontinuity and self._open_parts:
            lines.append("#EXT-X-DISCONTINUITY")  # RFC 8216 §4.3.2.3, before its parts
        listed = self._listed
        if self._open_init and (not listed or listed[-1].entry.init_uri != self._open_init):
            lines.append(f'#EXT-X-MAP:URI="{self._public(self._open_init)}"')
        lines += [_part_line(p) for p in self._open_parts]
        if self._hint:
            lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{self._hint}"')
        return text.rstrip("\n") + "\n" + "\n".join(lines) + "\n"

    def _render_head(self, skip: bool, low_latency: bool) -> str:
        playlist = m3u8.M3U8()
        maps = low_latency or any(item.entry.init_uri for item in self._listed)
        version = MAP_PLAYLIST_VERSION if maps else PLAYLIST_VERSION
        playlist.target_duration = self._target_duration
        # Always print MEDIA-SEQUENCE, even 0 (m3u8 drops falsy values; explicit is clearer).
        playlist.media_sequence = _ShownZero(self._media_sequence)
        if self._had_discontinuity:
            # RFC 8216 §4.3.3.3: lets clients line up discontinuities after a head removal.
            playlist.discontinuity_sequence = _ShownZero(self._discontinuity_sequence)
        playlist.is_independent_segments = self._independent_segments
        playlist.is_endlist = self._ended
        listed = self._listed
        if low_latency and self._part_target is not None:
            part_target = round(self._part_target, PART_DECIMALS)
            playlist.server_control = ServerControl(
                can_block_reload="YES",
                hold_back=float(MIN_WINDOW_TARGET_DURATIONS * self._target_duration),
                part_hold_back=self._part_hold_back,
                can_skip_until=self.skip_until,
            )
            playlist.part_inf = PartInformation(part_target=part_target)
            if skip:
                skipped = self._skippable()
                if skipped:
                    version = SKIP_PLAYLIST_VERSION
                    playlist.skip = Skip(skipped_segments=skipped)
                    listed = listed[skipped:]
        playlist.version = version
        with_parts = self._parts_from() if low_latency else len(self._listed)
        for index, item in enumerate(listed, start=len(self._listed) - len(listed)):
            entry = item.entry
            parts = entry.parts if index >= with_parts else ()
            init = {"uri": self._public(entry.init_uri)} if entry.init_uri else None
            playlist.add_segment(
                m3u8.Segment(
                    uri=self._public(entry.uri),
                    duration=item.duration,
                    discontinuity=entry.discontinuity,
                    program_date_time=entry.program_date_time,
                    init_section=init,
                    parts=[_part_dict(p) for p in parts],
                )
            )
        text: str = playlist.dumps(timespec="milliseconds", infspec="milliseconds")
        return text

    @property
    def first_part_sequence(self) -> int:
        """Media sequence number of the oldest segment whose parts are listed."""
        return self._media_sequence + self._parts_from()

    def _parts_from(self) -> int:
        """Index of the first listed segment whose parts are listed: those of the last 3 TDs
        of complete segments (so the listing changes once per segment, not per part)."""
        remaining = float(PART_LIST_TARGET_DURATIONS * self._target_duration)
        index = len(self._listed)
        while index > 0 and remaining > 0:
            index -= 1
            remaining -= self._listed[index].duration
        return index

    def _skippable(self) -> int:
        """How many head segments start more than CAN-SKIP-UNTIL before the end of the last
        complete segment (§6.2.5.1; the open parts would only allow skipping more)."""
        after = 0.0
        for index in range(len(self._listed) - 1, -1, -1):
            after += self._listed[index].duration
            if after > self.skip_until + 1e-9:
                return index + 1
        return 0


def _part_dict(part: PartEntry) -> dict[str, object]:
    attributes: dict[str, object] = {"uri": part.uri, "duration": part.duration}
    if part.independent:
        attributes["independent"] = "YES"
    return attributes


def _report_line(report: RenditionReport) -> str:
    line = f'#EXT-X-RENDITION-REPORT:URI="{report.uri}",LAST-MSN={report.last_msn}'
    return line if report.last_part is None else f"{line},LAST-PART={report.last_part}"


def _part_line(part: PartEntry) -> str:
    duration = f"{part.duration:.{PART_DECIMALS}f}".rstrip("0").rstrip(".")  # as m3u8 prints it
    line = f'#EXT-X-PART:DURATION={duration},URI="{part.uri}"'
    return line + (",INDEPENDENT=YES" if part.independent else "")


@dataclass(frozen=True, slots=True)
class Variant:
    """One EXT-X-STREAM-INF of a multivariant playlist (rfc8216bis §4.4.6.2)."""

    uri: str
    bandwidth: int  # peak segment bit rate, bits/s
    average_bandwidth: int
    codecs: tuple[str, ...]  # RFC 6381, from the sequence headers
    resolution: tuple[int, int] | None
    frame_rate: float | None
    audio: str | None = None  # GROUP-ID of its EXT-X-MEDIA audio renditions


# rfc8216bis §4.4.6.1: LANGUAGE is an RFC 5646 tag; NAME a quoted-string (no '"', CR or LF).
_LANGUAGE = re.compile(r"[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*")
MAX_RENDITION_NAME = 64


def rendition_name(value: object) -> str | None:
    """A NAME from a publisher's metadata: printable, without quotes, bounded; None if empty."""
    if not isinstance(value, str):
        return None
    name = "".join(c for c in value if c.isprintable() and c != '"')[:MAX_RENDITION_NAME].strip()
    return name or None


def rendition_language(value: object) -> str | None:
    """A LANGUAGE from a publisher's metadata when it is an RFC 5646 tag, else None."""
    if isinstance(value, str) and len(value) <= 35 and _LANGUAGE.fullmatch(value):
        return value
    return None


@dataclass(frozen=True, slots=True)
class AudioRendition:
    """One EXT-X-MEDIA TYPE=AUDIO of a multivariant playlist (rfc8216bis §4.4.6.1)."""

    uri: str
    group: str
    name: str  # unique within the group
    language: str | None
    default: bool


def render_multivariant(variants: list[Variant], audio: list[AudioRendition] | None = None) -> str:
    """A multivariant playlist listing ``variants`` and the ``audio`` renditions of their
    groups (rfc8216bis §4.4.6)."""
    playlist = m3u8.M3U8()
    playlist.version = PLAYLIST_VERSION
    playlist.is_independent_segments = True
    media = [
        m3u8.Media(
            uri=a.uri,
            type="AUDIO",
            group_id=a.group,
            language=a.language,
            name=a.name,
            default="YES" if a.default else "NO",
            # §4.4.6.1: DEFAULT=YES needs AUTOSELECT=YES; every track may be picked by language.
            autoselect="YES",
        )
        for a in audio or []
    ]
    for item in media:
        playlist.add_media(item)
    for variant in variants:
        info: dict[str, object] = {
            "bandwidth": max(1, variant.bandwidth),
            "average_bandwidth": max(1, variant.average_bandwidth),
        }
        if variant.codecs:
            info["codecs"] = ",".join(variant.codecs)
        if variant.resolution is not None:
            info["resolution"] = "{}x{}".format(*variant.resolution)
        if variant.frame_rate:
            info["frame_rate"] = round(variant.frame_rate, 3)
        group = [m for m in media if variant.audio is not None and m.group_id == variant.audio]
        if group:
            info["audio"] = variant.audio
        playlist.add_playlist(m3u8.Playlist(variant.uri, info, media=group, base_uri=None))
    text: str = playlist.dumps()
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
    # m3u8 reads the parts of an unfinished LL-HLS segment as a segment without a URI.
    segments = [segment for segment in playlist.segments if segment.uri]
    uris: list[str] = []
    for segment in playlist.segments:
        if segment.uri:
            uris.append(str(segment.uri))
        uris += [str(part.uri) for part in segment.parts if part.uri]
        if segment.init_section is not None and segment.init_section.uri:
            uris.append(str(segment.init_section.uri))
    return PreviousPlaylist(
        next_media_sequence=int(playlist.media_sequence or 0) + len(segments),
        discontinuity_sequence=int(playlist.discontinuity_sequence or 0)
        + sum(1 for segment in segments if segment.discontinuity),
        uris=tuple(dict.fromkeys(uris)),  # segments, parts and init segments, each once
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
