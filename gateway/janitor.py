"""Start-up clean-up of a disk hls_dir (segmenter.sweep), and the retirement of the ended
playlists it found once hls_retention has passed."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import trio

from segmenter.store import Store
from segmenter.sweep import EndedPlaylist, disk_root, retire_playlist, sweep

log = logging.getLogger("gateway.store")


async def sweep_store(store: Store) -> list[EndedPlaylist]:
    """Remove what no stored playlist lists (in a thread: a large directory takes a while);
    the ended playlists found, to hand to :func:`retire_ended`. Nothing for a memory store."""
    root = disk_root(store)
    if root is None:
        return []
    result = await trio.to_thread.run_sync(sweep, root, time.time())
    if result.removed:
        log.info(
            "store: removed %d files no playlist lists (left by an earlier run), e.g. %s",
            len(result.removed),
            result.removed[0],
        )
    return result.ended


async def retire_ended(
    store: Store, ended: list[EndedPlaylist], retention: float, owned: Callable[[str], bool]
) -> None:
    """Retire each playlist ``retention`` seconds after it ended, unless ``owned("app/key")``:
    a publisher of that stream came back and its segmenter owns the directory now."""
    wall, clock = time.time(), trio.current_time()
    for playlist in sorted(ended, key=lambda e: e.ended_at):
        await trio.sleep_until(clock + max(0.0, playlist.ended_at + retention - wall))
        path = playlist.name.rpartition("/")[0]
        if owned("/".join(path.split("/")[:2])):  # the stream's "app/key"
            continue
        deleted = retire_playlist(store, playlist.name)
        if deleted:
            log.info(
                "%s: retired %s of an earlier run (%d files) after hls_retention",
                path,
                playlist.name.rpartition("/")[2],
                len(deleted),
            )
