"""StoreHealth: every store records its failed writes and clears them at the next good one."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from segmenter.store import (
    Data,
    DiskStore,
    MemoryStore,
    StoreFull,
    StoreHealth,
    WriteBehindStore,
)


def test_health_logs_changes_of_state_not_each_failure(caplog: pytest.LogCaptureFixture) -> None:
    health = StoreHealth(logging.getLogger("test.store"))
    assert health.failure is None
    with caplog.at_level(logging.INFO, logger="test.store"):
        health.succeeded()
        health.failed("store: cannot write a/b/1.ts: disk full")
        health.failed("store: cannot write a/b/2.ts: disk full")
        failure = health.failure
        assert failure is not None
        assert failure.reason == "store: cannot write a/b/1.ts: disk full"  # the first cause
        assert failure.failures == 2
        health.succeeded()
        health.succeeded()
    assert health.failure is None
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages
    assert messages[0].startswith("store: cannot write a/b/1.ts: disk full")
    assert messages[1].startswith("store: ok again after 2 failed operations")
    # The facts as fields for --log-format json (gateway.logs).
    failed, recovered = caplog.records
    assert (failed.event, failed.cause) == ("store_failed", failure.reason)
    assert (recovered.event, recovered.failures) == ("store_recovered", 2)
    assert recovered.cause == failure.reason and recovered.duration >= 0


class FlakyStore(MemoryStore):
    """Fails puts of the names in ``fail`` with ENOSPC."""

    def __init__(self) -> None:
        super().__init__()
        self.fail: set[str] = set()

    def put(self, name: str, data: Data, *, fresh: bool = False) -> None:
        if name in self.fail:
            raise OSError(28, "No space left on device")
        super().put(name, data, fresh=fresh)


def test_write_behind_records_a_failed_write_until_one_succeeds() -> None:
    inner = FlakyStore()
    health = StoreHealth()
    behind = WriteBehindStore(inner, max_pending_bytes=1 << 20, health=health)
    try:
        inner.fail.add("live/k/s1.ts")
        behind.put("live/k/s1.ts", b"lost")
        assert behind.flush(timeout=10)
        failure = health.failure
        assert failure is not None
        assert failure.reason == (
            "store: cannot write live/k/s1.ts: [Errno 28] No space left on device"
        )
        behind.put("live/k/index.m3u8", b"playlist")
        assert behind.flush(timeout=10)
        assert health.failure is not None  # a playlist rewrite proves no segment is stored
        behind.put("live/k/s2.ts", b"kept", fresh=True)
        assert behind.flush(timeout=10)
        assert health.failure is None
    finally:
        assert behind.close(timeout=10)


def test_disk_store_records_a_failed_write_until_one_succeeds(tmp_path: Path) -> None:
    health = StoreHealth()
    disk = DiskStore(tmp_path, health=health)
    disk.put("live/cam/seg-1.ts", b"1", fresh=True)
    assert health.failure is None
    (tmp_path / "live" / "cam").rename(tmp_path / "moved")
    (tmp_path / "live" / "cam").write_bytes(b"")  # the stream's directory is now a file
    for name, fresh in (("live/cam/seg-2.ts", True), ("live/cam/index.m3u8", False)):
        with pytest.raises(NotADirectoryError):
            disk.put(name, b"2", fresh=fresh)
    failure = health.failure
    assert failure is not None
    assert failure.reason.startswith("store: cannot write live/cam/seg-2.ts: [Errno 20]")
    assert failure.failures == 2
    (tmp_path / "live" / "cam").unlink()
    disk.put("live/cam/seg-3.ts", b"3", fresh=True)
    assert health.failure is None
    assert disk.get("live/cam/seg-3.ts") == b"3"


def test_memory_store_full_is_failing_until_a_put_fits() -> None:
    health = StoreHealth()
    memory = MemoryStore(10, health=health)
    memory.put("a/b/1.ts", b"12345678")
    with pytest.raises(StoreFull):
        memory.put("a/b/2.ts", b"12345678")
    failure = health.failure
    assert failure is not None and failure.reason.startswith("store: memory store full: a/b/2.ts")
    memory.put("a/b/index.m3u8", b"1")  # a playlist rewrite fits: it proves no segment does
    assert health.failure is not None
    memory.delete("a/b/1.ts")
    memory.put("a/b/2.ts", b"12345678", fresh=True)
    assert health.failure is None


def test_stores_without_health_only_raise(tmp_path: Path) -> None:
    with pytest.raises(StoreFull):
        MemoryStore(1).put("a/b/1.ts", b"12")
    (tmp_path / "a").write_bytes(b"")
    with pytest.raises(ValueError):
        DiskStore(tmp_path).put("a/b/1.ts", b"1")


def test_health_is_safe_across_threads() -> None:
    health = StoreHealth()

    def churn() -> None:
        for i in range(2000):
            health.failed(f"x{i}")
            health.succeeded()

    threads = [threading.Thread(target=churn) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert health.failure is None
