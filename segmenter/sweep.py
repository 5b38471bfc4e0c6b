"""What an earlier run left in a disk store: removed at start, or retired after hls_retention.

A running gateway deletes what its playlists no longer list (PlaylistKeeper), but only while it
runs: segments still waiting for deletion at a shutdown or a kill, those of a resumed playlist
that was replaced, a segment cut short by a kill, and ended playlists nobody publishes to again
would stay on disk forever. So at start :func:`sweep` keeps what the stored playlists list (a
player may still fetch it) and removes every other file the gateway could have made; the ended
playlists it found are retired (:func:`retire_playlist`) ``hls_retention`` seconds after they
ended (the playlist file's mtime; a playlist left live by a crash ends at this start) unless a
publisher of that stream came back first, whose segmenter then owns the directory. After any
sequence of restarts and kills the directory therefore holds the live windows, what
``hls_retention`` promises, and one small ended playlist per stream that keeps its numbering
(RFC 8216 §6.2.2: a later playlist at the same URL continues it).
"""

from __future__ import annotations

import contextlib
import logging
import os
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path

import m3u8

from segmenter.playlist import LivePlaylist, read_previous
from segmenter.store import DiskStore, Store, WriteBehindStore

log = logging.getLogger("segmenter.sweep")

PLAYLIST_SUFFIX = ".m3u8"
# Files the segmenter writes next to its playlists: MPEG-TS and CMAF segments, parts and init
# segments, and the store's temp files. Anything else (an operator's file) is left alone.
_OURS = re.compile(r".*\.(ts|m4s|mp4)|.*\.tmp~[0-9a-f]{16}")


@dataclass(frozen=True, slots=True)
class EndedPlaylist:
    """A media playlist found at start that no process writes: retire it at ``ended_at``
    (Unix time) plus hls_retention."""

    name: str  # store name, "app/key/ts.m3u8"
    ended_at: float


@dataclass(frozen=True, slots=True)
class SweepResult:
    removed: list[str]  # store names of the files removed
    ended: list[EndedPlaylist]


def disk_root(store: Store) -> Path | None:
    """The directory of a disk store (also behind a write queue); None for memory."""
    if isinstance(store, WriteBehindStore):
        store = store.inner
    return store.root if isinstance(store, DiskStore) else None


def sweep(root: Path, now: float) -> SweepResult:
    """At start, before anything is written: remove the files under ``root`` that no stored
    playlist lists; return the media playlists found, each with when it ended (``now`` for one
    left live by a process that died). Only files inside stream directories (``app/key/...``)
    whose names the segmenter makes are removed."""
    files: list[str] = []
    playlists: list[str] = []
    for dirpath, _dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root).as_posix()
        for filename in filenames:
            name = filename if rel == "." else f"{rel}/{filename}"
            (playlists if filename.endswith(PLAYLIST_SUFFIX) else files).append(name)
    listed: set[str] = set()
    ended: list[EndedPlaylist] = []
    for name in playlists:
        path = root / name
        try:
            text = path.read_text("utf-8", "replace")
            mtime = path.stat().st_mtime
        except OSError:
            continue
        previous = read_previous(text)
        if previous is None:
            continue  # a multivariant playlist lists playlists only, and those are kept
        directory = posixpath.dirname(name)
        listed |= {posixpath.normpath(posixpath.join(directory, uri)) for uri in previous.uris}
        ended.append(EndedPlaylist(name, mtime if previous.ended else now))
    removed = []
    for name in files:
        if name.count("/") < 2 or name in listed or not _OURS.fullmatch(name.rpartition("/")[2]):
            continue
        with contextlib.suppress(FileNotFoundError):
            os.unlink(root / name)
            removed.append(name)
    return SweepResult(removed, sorted(ended, key=lambda e: e.ended_at))


def retire_playlist(store: Store, name: str) -> list[str]:
    """Delete the segments an ended playlist lists and leave it empty and ended, carrying only
    the numbering (as PlaylistKeeper.retire does in a running segmenter). Nothing is done to a
    playlist that is live again. Returns the names deleted."""
    data = store.get(name)
    text = data.decode("utf-8", "replace") if data is not None else ""
    previous = read_previous(text)
    if previous is None or not previous.ended or not previous.uris:
        return []
    target = m3u8.loads(text).target_duration
    tombstone = LivePlaylist(
        max(1, int(target or 1)),
        1,
        media_sequence=previous.next_media_sequence,
        discontinuity_sequence=previous.discontinuity_sequence,
    )
    tombstone.end()
    store.put(name, tombstone.render(low_latency=False).encode())
    directory = posixpath.dirname(name)
    deleted = []
    for uri in previous.uris:
        target_name = posixpath.normpath(posixpath.join(directory, uri))
        if target_name.startswith(f"{directory}/"):  # never outside the stream's directory
            store.delete(target_name)
            deleted.append(target_name)
    return deleted
