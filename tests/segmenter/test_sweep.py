"""segmenter.sweep: what a start removes from a disk store, and retiring an ended playlist."""

from __future__ import annotations

import os
from pathlib import Path

import m3u8

from segmenter.playlist import LivePlaylist, SegmentEntry
from segmenter.store import DiskStore, MemoryStore, WriteBehindStore
from segmenter.sweep import disk_root, retire_playlist, sweep


def playlist(uris: list[str], *, ended: bool, sequence: int = 0, init: str | None = None) -> str:
    live = LivePlaylist(2, 10, media_sequence=sequence)
    for uri in uris:
        live.add_segment(SegmentEntry(uri, 2.0, init_uri=init), 0.0)
    if ended:
        live.end()
    return live.render(low_latency=False)


def files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_sweep_keeps_what_playlists_list_and_removes_the_rest(tmp_path: Path) -> None:
    cam = tmp_path / "live" / "cam"
    cam.mkdir(parents=True)
    (cam / "ts.m3u8").write_text(playlist(["b-5.ts", "b-6.ts"], ended=True, sequence=5))
    (cam / "cmaf.m3u8").write_text(playlist(["b-5.m4s"], ended=False, init="init-1.mp4"))
    (cam / "index.m3u8").write_text("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\ncmaf.m3u8\n")
    for name in ("b-5.ts", "b-6.ts", "b-5.m4s", "init-1.mp4"):  # listed: kept
        (cam / name).write_bytes(b"x")
    for name in ("a-1.ts", "a-1.m4s", "init-0.mp4", "b-7.ts", "b-7.m4s.tmp~0123456789abcdef"):
        (cam / name).write_bytes(b"x")  # earlier playlists' or cut short by a kill: removed
    (cam / "notes.txt").write_text("an operator's")  # not a name the segmenter makes: kept
    (tmp_path / "live" / "x.ts").write_bytes(b"x")  # outside a stream directory: kept
    os.utime(cam / "ts.m3u8", (1000.0, 1000.0))
    result = sweep(tmp_path, now=5000.0)
    assert sorted(result.removed) == [
        "live/cam/a-1.m4s",
        "live/cam/a-1.ts",
        "live/cam/b-7.m4s.tmp~0123456789abcdef",
        "live/cam/b-7.ts",
        "live/cam/init-0.mp4",
    ]
    assert files(tmp_path) == [
        "live/cam/b-5.m4s",
        "live/cam/b-5.ts",
        "live/cam/b-6.ts",
        "live/cam/cmaf.m3u8",
        "live/cam/index.m3u8",
        "live/cam/init-1.mp4",
        "live/cam/notes.txt",
        "live/cam/ts.m3u8",
        "live/x.ts",
    ]
    # Ended at the file's mtime; one left live by a dead process ends now.
    assert [(e.name, e.ended_at) for e in result.ended] == [
        ("live/cam/ts.m3u8", 1000.0),
        ("live/cam/cmaf.m3u8", 5000.0),
    ]


def test_retiring_deletes_the_listed_segments_and_keeps_the_numbering(tmp_path: Path) -> None:
    store = DiskStore(tmp_path)
    text = playlist(["b-5.m4s", "b-6.m4s"], ended=True, sequence=5, init="init-1.mp4")
    store.put("live/cam/cmaf.m3u8", text.encode())
    for name in ("b-5.m4s", "b-6.m4s", "init-1.mp4", "other.m4s"):
        store.put(f"live/cam/{name}", b"x")
    deleted = retire_playlist(store, "live/cam/cmaf.m3u8")
    assert sorted(deleted) == ["live/cam/b-5.m4s", "live/cam/b-6.m4s", "live/cam/init-1.mp4"]
    assert store.names() == ["live/cam/cmaf.m3u8", "live/cam/other.m4s"]
    data = store.get("live/cam/cmaf.m3u8")
    assert data is not None
    tombstone = m3u8.loads(data.decode())
    assert tombstone.is_endlist and not tombstone.segments
    assert tombstone.media_sequence == 7  # the next playlist continues after b-6
    assert retire_playlist(store, "live/cam/cmaf.m3u8") == []  # once


def test_a_live_playlist_is_not_retired() -> None:
    store = MemoryStore()
    store.put("live/cam/ts.m3u8", playlist(["b-5.ts"], ended=False).encode())
    store.put("live/cam/b-5.ts", b"x")
    assert retire_playlist(store, "live/cam/ts.m3u8") == []
    assert sorted(store.names()) == ["live/cam/b-5.ts", "live/cam/ts.m3u8"]


def test_disk_root_sees_through_the_write_queue(tmp_path: Path) -> None:
    disk = DiskStore(tmp_path)
    behind = WriteBehindStore(disk, max_pending_bytes=1024)
    assert disk_root(behind) == disk_root(disk) == tmp_path.resolve()
    assert disk_root(MemoryStore()) is None
    assert behind.close(timeout=5)
