"""A stream's playlists in the store, across publishers and restarts (RFC 8216 §6.2.1, §6.2.2).

:class:`PlaylistKeeper` owns which LivePlaylist is current, ended playlists whose removed segments
still await deletion, segments left by an earlier run (resumed with a discontinuity), EXT-X-ENDLIST,
and retirement; :func:`end_stale_playlists` ends what a dead process left live. The numbering of
a URL never goes back: every new playlist continues from the one before it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from functools import partial

from segmenter.playlist import LivePlaylist, read_previous
from segmenter.store import Store

# The media playlists, one per format (TS for every player, fMP4/CMAF for LL-HLS), and the
# multivariant playlist at the URL players are given.
TS_PLAYLIST_NAME = "ts.m3u8"
CMAF_PLAYLIST_NAME = "cmaf.m3u8"
MULTIVARIANT_NAME = "index.m3u8"
MEDIA_PLAYLIST_NAMES = (TS_PLAYLIST_NAME, CMAF_PLAYLIST_NAME)
# A multitrack publish's other renditions: video track N (N > 0) and audio track N, each its own
# LL-HLS playlist beside cmaf.m3u8 (track 0 video keeps cmaf.m3u8).
RENDITION_PLAYLIST_PREFIX = "cmaf-"
MAX_TRACK_ID = 255  # Enhanced RTMP v2 trackId is a u8


def rendition_playlist_name(letter: str, track_id: int) -> str:
    """``cmaf-v<ID>.m3u8`` (video track ID) or ``cmaf-a<ID>.m3u8`` (audio track ID)."""
    return f"{RENDITION_PLAYLIST_PREFIX}{letter}{track_id}.m3u8"


def is_media_playlist(name: str) -> bool:
    """A media playlist name this segmenter writes (ts.m3u8, cmaf.m3u8, cmaf-v1.m3u8, ...)."""
    if name in MEDIA_PLAYLIST_NAMES:
        return True
    middle = name[len(RENDITION_PLAYLIST_PREFIX) : -len(".m3u8")]
    return (
        name.startswith(RENDITION_PLAYLIST_PREFIX)
        and name.endswith(".m3u8")
        and middle[:1] in ("v", "a")
        and middle[1:].isdigit()
        and int(middle[1:]) <= MAX_TRACK_ID
    )


class PlaylistKeeper:
    def __init__(
        self,
        path: str,
        store: Store,
        window_segments: int,
        log: logging.Logger,
        *,
        name: str = TS_PLAYLIST_NAME,
        part_target: float | None = None,
    ) -> None:
        self.path = path
        self.store = store
        self.name = name
        self._window = window_segments
        self._log = log
        self._part_target = part_target
        self.playlist: LivePlaylist | None = None
        # Before segment and init URIs in rendered playlists (SegmenterConfig.public_base), for
        # those ``published(store name)`` says the public copy has (all when None).
        self.uri_base = ""
        self.published: Callable[[str], bool] | None = None
        self._retired: list[LivePlaylist] = []  # ended playlists whose removals are pending
        self._orphans: list[tuple[str, float]] = []  # (uri, delete-after) of retired listings
        self.ended_at: float | None = None  # when the current playlist got EXT-X-ENDLIST
        self._resume: tuple[int, int] | None = None  # numbering left by an earlier run
        self._resume_orphans: tuple[list[str], float] | None = None
        self._read_previous()

    def _read_previous(self) -> None:
        """A playlist left by an earlier process (disk store): continue its numbering with a
        discontinuity, and delete its segments once nobody can still be fetching them."""
        data = self.store.get(f"{self.path}/{self.name}")
        previous = read_previous(data.decode("utf-8", "replace")) if data is not None else None
        if previous is None:
            return
        self._resume = (previous.next_media_sequence, previous.discontinuity_sequence)
        # §6.2.2: listed segments stay available for their duration plus the playlist's; the
        # clock starts at the first call that passes ``now`` (start_clock).
        self._resume_orphans = ([u for u in previous.uris if "/" not in u], 2 * previous.duration)
        self._log.info(
            "%s: %s resuming at media sequence %d", self.path, self.name, self._resume[0]
        )

    def start_clock(self, now: float) -> None:
        if self._resume_orphans is not None:
            uris, delay = self._resume_orphans
            self._orphans += [(uri, now + delay) for uri in uris]
            self._resume_orphans = None

    @property
    def next_sequence(self) -> int:
        """The media sequence number the next segment will get (in this or a new playlist)."""
        playlist = self.playlist
        if playlist is not None:
            return playlist.next_media_sequence
        return self._resume[0] if self._resume is not None else 0

    @property
    def continues(self) -> bool:
        """The next playlist continues an earlier one (its first segment is a discontinuity)."""
        return self.playlist is not None or self._resume is not None

    def open(
        self,
        target_duration: int,
        now: float,
        *,
        part_target: float | None = None,
        part_hold_back: float | None = None,
        floor: int = 0,
    ) -> LivePlaylist:
        """Start a new playlist (none yet, or the current one ended); numbering continues, from
        ``floor`` at least (a rendition numbered like the ladder's first, which is ahead)."""
        old = self.playlist
        sequence, discontinuities = self._resume or (0, 0)
        sequence = max(sequence, floor)
        if old is not None:
            sequence = max(old.next_media_sequence, floor)
            listed = old.segments
            discontinuities = old.discontinuity_sequence + sum(s.discontinuity for s in listed)
            deadline = now + 2 * sum((s.duration for s in listed), 0.0)
            self._orphans += [(uri, deadline) for uri in old.listed_uris()]
            self._retired.append(old)
        self._resume = None
        self.ended_at = None
        self.playlist = LivePlaylist(
            target_duration,
            self._window,
            media_sequence=sequence,
            discontinuity_sequence=discontinuities,
            part_target=part_target if part_target is not None else self._part_target,
            part_hold_back=part_hold_back,
            uri_base=self.uri_base,
            published=partial(_published, self.published, self.path) if self.published else None,
        )
        return self.playlist

    def published_now(self, uri: str) -> None:
        """``uri`` (a segment or init segment) reached the public copy: when the playlist lists
        it, render it with its public URI from now on and store that version."""
        playlist = self.playlist
        if playlist is not None and self.uri_base and playlist.names(uri):
            playlist.refresh()
            self.write()

    def write(self) -> None:
        if self.playlist is not None:
            # The stored copy has whole segments only: parts, the hint and blocking reload are
            # served by this process from memory (web.lowlatency), which a file cannot do.
            text = self.playlist.render(low_latency=False)
            self.store.put(f"{self.path}/{self.name}", text.encode())

    def end(self, now: float) -> None:
        """EXT-X-ENDLIST on the current playlist (once)."""
        if self.playlist is not None and not self.playlist.ended:
            self.ended_at = now
            self.playlist.end()
            self.write()
            self._log.info("%s: playlist ended", self.path)

    def delete_expired(self, now: float) -> None:
        uris = self.playlist.expired(now) if self.playlist is not None else []
        for old in self._retired:
            uris += old.expired(now)
        self._retired = [p for p in self._retired if p.pending_removals]
        uris += [uri for uri, deadline in self._orphans if deadline <= now]
        self._orphans = [(uri, d) for uri, d in self._orphans if d > now]
        if self.playlist is not None:  # an earlier playlist's init that the current one uses
            in_use = self.playlist.init_uris()
            uris = [uri for uri in uris if uri not in in_use]
        self._delete(uris)

    def retirable(self, now: float, retention: float) -> bool:
        """The current playlist ended at least ``retention`` seconds ago."""
        return (
            self.playlist is not None
            and self.playlist.ended
            and self.ended_at is not None
            and now - self.ended_at >= retention
        )

    def retire(self) -> None:
        """Delete every segment still in the store and leave an empty ended playlist that only
        carries the numbering (§6.2.2: a later playlist at this URL continues it)."""
        playlist = self.playlist
        if playlist is None:
            return
        uris = playlist.listed_uris() + [u for u, _ in self._orphans]
        for old in [playlist, *self._retired]:
            uris += old.expired(math.inf)
        tombstone = LivePlaylist(
            playlist.target_duration,
            self._window,
            media_sequence=playlist.next_media_sequence,
            discontinuity_sequence=playlist.discontinuity_sequence
            + sum(s.discontinuity for s in playlist.segments),
        )
        tombstone.end()
        self.playlist, self._retired, self._orphans = tombstone, [], []
        self.write()
        self._delete(uris)

    def _delete(self, uris: list[str]) -> None:
        for uri in uris:
            self.store.delete(f"{self.path}/{uri}")


def _published(published: Callable[[str], bool], path: str, uri: str) -> bool:
    return published(f"{path}/{uri}")


def end_stale_playlists(store: Store, prefix: str = "") -> list[str]:
    """At start-up: a live playlist left by a process that died can never grow again; end it
    (§6.2.1 allows adding EXT-X-ENDLIST) so players stop waiting. A publisher coming back later
    continues the numbering (PlaylistKeeper resumes from it)."""
    ended = []
    for name in store.names(prefix):  # a prefix "app/key/": that stream's only
        if not is_media_playlist(name.rpartition("/")[2]):
            continue
        data = store.get(name)
        previous = read_previous(data.decode("utf-8", "replace")) if data is not None else None
        if data is not None and previous is not None and not previous.ended:
            store.put(name, data.rstrip(b"\n") + b"\n#EXT-X-ENDLIST\n")
            ended.append(name)
    return ended
