"""Stores: shared behaviour of MemoryStore and DiskStore, then DiskStore's disk-specific rules."""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from segmenter.playlist import LivePlaylist, SegmentEntry, parse_resume_state
from segmenter.store import (
    Data,
    DiskStore,
    MemoryStore,
    Store,
    StoreFull,
    WriteBehindStore,
    validate_name,
)


@pytest.fixture(params=["memory", "disk", "write-behind"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
    elif request.param == "disk":
        yield DiskStore(tmp_path / "store")
    else:
        behind = WriteBehindStore(DiskStore(tmp_path / "store"), max_pending_bytes=1 << 20)
        yield behind
        assert behind.close(timeout=5)


def files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


# -- shared contract ------------------------------------------------------------------------------


def test_put_get_replace_delete(store: Store) -> None:
    assert store.get("live/key/a.ts") is None
    store.put("live/key/a.ts", b"one")
    assert store.get("live/key/a.ts") == b"one"
    store.put("live/key/a.ts", b"two!")
    assert store.get("live/key/a.ts") == b"two!"
    store.delete("live/key/a.ts")
    assert store.get("live/key/a.ts") is None
    store.delete("live/key/a.ts")  # deleting a missing name is fine


def test_names_with_prefix(store: Store) -> None:
    for name in ["live/k1/index.m3u8", "live/k1/s0.ts", "live/k2/s0.ts", "other/x/y.ts"]:
        store.put(name, name.encode())
    assert sorted(store.names()) == [
        "live/k1/index.m3u8",
        "live/k1/s0.ts",
        "live/k2/s0.ts",
        "other/x/y.ts",
    ]
    assert sorted(store.names("live/k1/")) == ["live/k1/index.m3u8", "live/k1/s0.ts"]
    assert sorted(store.names("live/k")) == ["live/k1/index.m3u8", "live/k1/s0.ts", "live/k2/s0.ts"]
    assert store.names("nothing/") == []


def test_chunks_are_stored_as_one_object(store: Store) -> None:
    # A segment handed over as its parts (segmenter.store.Data) reads back as their bytes.
    chunks = (b"moof1", b"", b"mdat-one", b"moof2mdat-two")
    store.put("live/k/seg.m4s", chunks)
    assert store.get("live/k/seg.m4s") == b"".join(chunks)
    assert store.get("live/k/seg.m4s") == b"".join(chunks)  # again, from what the first joined
    store.put("live/k/seg.m4s", b"replaced")
    assert store.get("live/k/seg.m4s") == b"replaced"


def test_disk_writes_many_chunks_through_short_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # More chunks than one writev(2) takes, and a kernel that writes only part of each call.
    real = os.writev

    def short_writev(fd: int, buffers: list[bytes | memoryview]) -> int:
        head = b"".join(bytes(b) for b in buffers[:3])
        return real(fd, [head[: max(1, len(head) // 2)]])  # a prefix of what was asked

    monkeypatch.setattr(os, "writev", short_writev)
    store = DiskStore(tmp_path)
    chunks = tuple(bytes([i % 251]) * (i % 7) for i in range(3000))
    store.put("live/k/seg.m4s", chunks, fresh=True)
    store.put("live/k/seg.m4s", chunks[::-1])
    assert store.get("live/k/seg.m4s") == b"".join(chunks[::-1])


def test_empty_bytes_are_stored(store: Store) -> None:
    store.put("a/b/empty.ts", b"")
    assert store.get("a/b/empty.ts") == b""


def test_restart_resume_from_stored_playlist(store: Store) -> None:
    """A restarted segmenter reads the old playlist back and continues its numbering."""
    pl = LivePlaylist(2, 3)
    for i in range(7):
        store.put(f"live/k/s{i}.ts", b"ts")
        pl.add_segment(SegmentEntry(f"s{i}.ts", 2.0, discontinuity=i == 5), float(i))
        store.put("live/k/index.m3u8", pl.render().encode())
    data = store.get("live/k/index.m3u8")
    assert data is not None
    state = parse_resume_state(data.decode())
    assert state == (7, 1)  # s5 is still listed with its discontinuity
    resumed = LivePlaylist(2, 3, media_sequence=state[0], discontinuity_sequence=state[1])
    assert resumed.next_media_sequence == pl.next_media_sequence
    resumed.add_segment(SegmentEntry("r0.ts", 2.0, discontinuity=True), 0.0)
    store.put("live/k/index.m3u8", resumed.render().encode())
    again = store.get("live/k/index.m3u8")
    assert again is not None
    assert parse_resume_state(again.decode()) == (8, 2)


# -- DiskStore -------------------------------------------------------------------------------------


def test_disk_layout_and_no_temp_files_left(tmp_path: Path) -> None:
    ds = DiskStore(tmp_path)
    for i in range(50):
        ds.put("live/key/index.m3u8", f"version {i}".encode())
        ds.put(f"live/key/s{i}.ts", bytes([i]) * 100)
    assert files_under(tmp_path) == sorted(
        ["live/key/index.m3u8"] + [f"live/key/s{i}.ts" for i in range(50)]
    )
    assert (tmp_path / "live/key/index.m3u8").read_bytes() == b"version 49"
    assert ds.total_bytes == 50 * 100 + len(b"version 49")


def test_data_survives_a_new_store_instance(tmp_path: Path) -> None:
    DiskStore(tmp_path).put("a/b/c.ts", b"kept")
    ds = DiskStore(tmp_path)
    assert ds.get("a/b/c.ts") == b"kept"
    assert ds.names() == ["a/b/c.ts"]


def test_leftover_temp_files_are_removed_on_start(tmp_path: Path) -> None:
    (tmp_path / "live/key").mkdir(parents=True)
    leftover = tmp_path / "live/key/s3.ts.tmp~0123456789abcdef"
    leftover.write_bytes(b"half a segm")
    top = tmp_path / "index.m3u8.tmp~fedcba9876543210"
    top.write_bytes(b"#EXTM3U")
    keep = tmp_path / "live/key/s2.ts"
    keep.write_bytes(b"whole")
    unrelated = tmp_path / "live/key/notes.tmp~x"  # not our exact pattern: left alone
    unrelated.write_bytes(b"?")
    ds = DiskStore(tmp_path)
    assert not leftover.exists()
    assert not top.exists()
    assert keep.read_bytes() == b"whole"
    assert unrelated.exists()
    # Files whose names are not valid store names are never listed.
    assert ds.names() == ["live/key/s2.ts"]


def test_temp_files_are_not_listed_while_present(tmp_path: Path) -> None:
    ds = DiskStore(tmp_path)
    ds.put("a/b/c.ts", b"x")
    (tmp_path / "a/b/d.ts.tmp~0123456789abcdef").write_bytes(b"partial")
    assert ds.names() == ["a/b/c.ts"]


def test_failed_write_leaves_no_temp_file(tmp_path: Path) -> None:
    ds = DiskStore(tmp_path)
    (tmp_path / "a/b/dir.ts").mkdir(parents=True)  # a directory where the file should go
    with pytest.raises(OSError):
        ds.put("a/b/dir.ts", b"data")
    assert files_under(tmp_path) == []


def test_readers_never_see_partial_content(tmp_path: Path) -> None:
    ds = DiskStore(tmp_path)
    # Large, distinct versions so a torn read would be visible.
    versions = [bytes([v]) * (256 * 1024 + v * 1000) for v in range(8)]
    ds.put("live/key/index.m3u8", versions[0])
    stop = threading.Event()
    writes = 0

    def writer() -> None:
        nonlocal writes
        while not stop.is_set():
            ds.put("live/key/index.m3u8", versions[writes % len(versions)])
            writes += 1

    seen: set[int] = set()
    reader_store = DiskStore(tmp_path)  # a second instance, as a separate reader process would
    thread = threading.Thread(target=writer)
    thread.start()
    try:
        deadline = time.monotonic() + 1.0
        reads = 0
        while time.monotonic() < deadline and (reads < 300 or writes < 50):
            data = reader_store.get("live/key/index.m3u8")
            assert data is not None
            assert data in versions
            seen.add(data[0])
            reads += 1
    finally:
        stop.set()
        thread.join()
    assert writes > 10 and reads > 10
    assert len(seen) > 1  # the reader really raced the writer
    assert [n for n in os.listdir(tmp_path / "live/key") if "tmp" in n] == []


BAD_NAMES = [
    "",
    "/etc/passwd",
    "../escape.ts",
    "a/../../escape.ts",
    "a/./b.ts",
    "a//b.ts",
    "a/b/",
    "a\\b.ts",
    "..\\..\\escape.ts",
    "a/b\x00.ts",
    "a/b c.ts",
    "a/b.ts\n",
    "C:/x.ts",
    "a/b.ts.tmp~0123456789abcdef",
    "~/x.ts",
    "a/" + "x" * 201,
    "/".join(["abc"] * 300),
    "a/ümlaut.ts",
    "..",
    ".",
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names_raise_everywhere(tmp_path: Path, name: str) -> None:
    root = tmp_path / "root"
    ds = DiskStore(root)
    calls: list[Callable[[], object]] = [
        lambda: ds.put(name, b"x"),
        lambda: ds.get(name),
        lambda: ds.delete(name),
        lambda: validate_name(name),
    ]
    for call in calls:
        with pytest.raises(ValueError):
            call()
    assert files_under(tmp_path) == []


@pytest.mark.parametrize("name", ["a.ts", "live/key-1/s_0.ts", "A/B/C/.hidden", "x/y/1.2.3-4_5"])
def test_good_names(tmp_path: Path, name: str) -> None:
    ds = DiskStore(tmp_path)
    ds.put(name, b"ok")
    assert ds.get(name) == b"ok"
    assert ds.names() == [name]


def test_symlinks_never_lead_outside_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.ts").write_bytes(b"secret")
    ds = DiskStore(root)
    (root / "live").symlink_to(outside, target_is_directory=True)
    (root / "file.ts").symlink_to(outside / "secret.ts")
    with pytest.raises(ValueError):
        ds.put("live/new.ts", b"x")
    with pytest.raises(ValueError):
        ds.put("live/deeper/new.ts", b"x")
    assert ds.get("live/secret.ts") is None
    assert ds.get("file.ts") is None
    ds.delete("live/secret.ts")
    assert sorted(os.listdir(outside)) == ["secret.ts"]
    assert ds.names() == []
    # Replacing a symlinked name swaps the link itself, never writing through it.
    ds.put("file.ts", b"mine")
    assert (outside / "secret.ts").read_bytes() == b"secret"
    assert ds.get("file.ts") == b"mine"


def test_get_on_a_directory_is_none(tmp_path: Path) -> None:
    ds = DiskStore(tmp_path)
    ds.put("a/b/c.ts", b"x")
    assert ds.get("a/b") is None
    ds.delete("a/b")  # a directory is not a stored name: nothing happens
    assert ds.get("a/b/c.ts") == b"x"
    assert ds.get("a/b/c.ts/d.ts") is None


# -- WriteBehindStore ---------------------------------------------------------------------------


class GatedStore(MemoryStore):
    """A MemoryStore that records each operation and waits for ``gate`` before doing it."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.ops: list[tuple[str, str]] = []
        self.fail: set[str] = set()

    def put(self, name: str, data: Data, *, fresh: bool = False) -> None:
        assert self.gate.wait(10)
        if name in self.fail:
            raise OSError(28, "No space left on device")
        self.ops.append(("put", name))
        super().put(name, data, fresh=fresh)

    def delete(self, name: str) -> None:
        assert self.gate.wait(10)
        self.ops.append(("delete", name))
        super().delete(name)


@pytest.fixture
def gated() -> Iterator[tuple[GatedStore, WriteBehindStore]]:
    inner = GatedStore()
    behind = WriteBehindStore(inner, max_pending_bytes=1 << 20)
    yield inner, behind
    inner.gate.set()
    assert behind.close(timeout=5)


def test_write_behind_keeps_order_and_reads_see_pending_writes(
    gated: tuple[GatedStore, WriteBehindStore],
) -> None:
    inner, behind = gated
    inner.gate.set()
    inner.put("live/k/old.ts", b"old")
    inner.gate.clear()
    inner.ops.clear()
    behind.put("live/k/s1.ts", b"segment")
    behind.put("live/k/index.m3u8", b"v1")
    behind.delete("live/k/old.ts")
    behind.put("live/k/index.m3u8", b"v2")
    # Nothing reached the inner store yet, but this process already sees the new state.
    assert inner.ops == []
    assert behind.get("live/k/s1.ts") == b"segment"
    assert behind.get("live/k/index.m3u8") == b"v2"
    assert behind.get("live/k/old.ts") is None
    assert behind.names("live/k/") == ["live/k/index.m3u8", "live/k/s1.ts"]
    assert behind.pending_bytes == len(b"segment") + 4
    assert not behind.flush(timeout=0.05)
    inner.gate.set()
    assert behind.flush(timeout=5)
    # The segment reached the inner store before the playlist naming it, as queued.
    assert inner.ops == [
        ("put", "live/k/s1.ts"),
        ("put", "live/k/index.m3u8"),
        ("delete", "live/k/old.ts"),
        ("put", "live/k/index.m3u8"),
    ]
    assert inner.get("live/k/index.m3u8") == b"v2"
    assert behind.pending_bytes == 0


def test_write_behind_never_blocks_the_caller_and_calls_back_once_drained() -> None:
    inner = GatedStore()  # the writer thread is stuck until the gate opens
    behind = WriteBehindStore(inner, max_pending_bytes=10)
    timed: list[tuple[float, bool]] = []
    behind.on_write = lambda seconds, ok: timed.append((seconds, ok))
    drained = threading.Event()
    try:
        assert not behind.when_writable(drained.set)  # below the bound: no callback
        behind.put("a/b/1.ts", b"x" * 8)
        assert not behind.congested  # 8 < 10
        behind.put("a/b/2.ts", b"x" * 8)
        behind.put("a/b/3.ts", b"x" * 8)  # past the bound: queued all the same, at once
        assert behind.congested
        assert (behind.pending_bytes, behind.pending_items) == (24, 3)
        assert behind.when_writable(drained.set)
        assert not drained.wait(0.05)
        inner.gate.set()  # the writer thread drains the queue and calls back
        assert drained.wait(5)
        assert behind.flush(timeout=5)
        assert not behind.congested
        assert [n for _, n in inner.ops] == ["a/b/1.ts", "a/b/2.ts", "a/b/3.ts"]
        assert [ok for _, ok in timed] == [True, True, True]
    finally:
        inner.gate.set()
        assert behind.close(timeout=5)


def test_write_behind_close_calls_back_the_waiters() -> None:
    inner = GatedStore()
    behind = WriteBehindStore(inner, max_pending_bytes=4)
    behind.put("a/b/1.ts", b"x" * 8)
    drained = threading.Event()
    assert behind.when_writable(drained.set)
    behind.close(timeout=0)  # closed: later writes go straight through, nobody waits
    assert drained.is_set() and not behind.congested
    inner.gate.set()
    assert behind.close(timeout=5)


def test_write_behind_logs_a_failed_write_and_goes_on(
    gated: tuple[GatedStore, WriteBehindStore], caplog: pytest.LogCaptureFixture
) -> None:
    inner, behind = gated
    inner.fail.add("live/k/s1.ts")
    with caplog.at_level(logging.ERROR):
        behind.put("live/k/s1.ts", b"lost")
        behind.put("live/k/s2.ts", b"kept")
        inner.gate.set()
        assert behind.flush(timeout=5)
    assert behind.failures == 1
    assert behind.get("live/k/s1.ts") is None  # the failed write is not pretended
    assert behind.get("live/k/s2.ts") == b"kept"
    assert "cannot write live/k/s1.ts" in caplog.text
    assert "No space left on device" in caplog.text


def test_write_behind_rejects_bad_names_in_the_caller(
    gated: tuple[GatedStore, WriteBehindStore],
) -> None:
    _, behind = gated
    with pytest.raises(ValueError):
        behind.put("../escape.ts", b"x")
    with pytest.raises(ValueError):
        behind.delete("a/../../b.ts")
    assert behind.pending_bytes == 0


def test_write_behind_close_finishes_queued_writes_then_writes_directly(tmp_path: Path) -> None:
    behind = WriteBehindStore(DiskStore(tmp_path), max_pending_bytes=1 << 20)
    for i in range(20):
        behind.put(f"live/k/s{i}.ts", bytes([i]) * 1000)
    behind.put("live/k/index.m3u8", b"#EXTM3U\n#EXT-X-ENDLIST\n")
    assert behind.close(timeout=5)
    assert (tmp_path / "live/k/index.m3u8").read_bytes().endswith(b"#EXT-X-ENDLIST\n")
    assert len(files_under(tmp_path)) == 21
    behind.put("live/k/late.ts", b"after close")  # no thread left: straight to disk
    assert (tmp_path / "live/k/late.ts").read_bytes() == b"after close"


def test_disk_put_remakes_a_directory_removed_by_hand(tmp_path: Path) -> None:
    import shutil

    ds = DiskStore(tmp_path)
    ds.put("live/key/s1.ts", b"one")
    shutil.rmtree(tmp_path / "live")  # an operator cleaning up while the stream runs
    ds.put("live/key/s2.ts", b"two")
    assert ds.get("live/key/s2.ts") == b"two"
    assert files_under(tmp_path) == ["live/key/s2.ts"]


def test_disk_temp_names_are_unique_and_recognised(tmp_path: Path) -> None:
    first, second = DiskStore(tmp_path), DiskStore(tmp_path)
    names = {f"{s._temp_prefix}{i:08x}" for s in (first, second) for i in range(3)}
    assert len(names) == 6  # two stores sharing a directory never pick the same temp name
    leftover = tmp_path / f"a.ts.tmp~{first._temp_prefix}{7:08x}"
    leftover.write_bytes(b"half")
    DiskStore(tmp_path)  # a restart removes what a crashed writer left
    assert not leftover.exists()


def test_disk_store_on_a_file_says_it_is_not_a_directory(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_bytes(b"")
    with pytest.raises(NotADirectoryError, match="not a directory"):
        DiskStore(afile)


def test_fresh_put_writes_in_place_and_replaces_atomically_otherwise(tmp_path: Path) -> None:
    store = DiskStore(tmp_path / "store")
    store.put("live/k/a-1.ts", (b"seg", b"ment"), fresh=True)  # a new segment: no temp file
    assert (tmp_path / "store/live/k/a-1.ts").read_bytes() == b"segment"
    store.put("live/k/a-1.ts", b"again", fresh=True)  # the name exists: replaced as usual
    assert store.get("live/k/a-1.ts") == b"again"
    assert files_under(tmp_path / "store") == ["live/k/a-1.ts"]


def test_memory_store_refuses_a_put_past_its_cap_and_keeps_count() -> None:
    store = MemoryStore(max_bytes=100)
    store.put("a/1.ts", b"x" * 60)
    store.put("a/p.m3u8", (b"y" * 10, b"z" * 10))  # chunks count by their sum
    assert store.total_bytes == 80
    with pytest.raises(StoreFull, match="hls_memory_max_bytes") as caught:
        store.put("a/2.ts", b"x" * 30)
    assert caught.value.errno == errno.ENOSPC
    assert store.get("a/2.ts") is None and store.total_bytes == 80  # nothing half-stored
    store.put("a/p.m3u8", b"w" * 40)  # a replacement counts only what it adds
    assert store.total_bytes == 100
    store.delete("a/1.ts")
    store.delete("a/1.ts")  # twice: counted once
    store.put("a/2.ts", b"x" * 30)
    assert store.total_bytes == 70 == sum(len(store.get(n) or b"") for n in store.names())
    assert MemoryStore().max_bytes == 0  # no cap unless asked
