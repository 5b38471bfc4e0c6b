"""gateway.backpressure: publishers wait for the disk write queue in trio, never in the loop."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest
import trio
import trio.testing

from gateway.backpressure import WriteGate, watch_write_queue
from gateway.metrics import Metrics
from segmenter.store import Data, MemoryStore, WriteBehindStore


class StuckStore(MemoryStore):
    """Writes wait in the writer thread until ``flowing`` (our own Store, a stopped disk)."""

    def __init__(self) -> None:
        super().__init__()
        self.flowing = threading.Event()

    def put(self, name: str, data: Data, *, fresh: bool = False) -> None:
        assert self.flowing.wait(30)
        super().put(name, data, fresh=fresh)


@pytest.fixture
def stuck() -> Iterator[tuple[StuckStore, WriteBehindStore]]:
    inner = StuckStore()
    behind = WriteBehindStore(inner, max_pending_bytes=100)
    yield inner, behind
    inner.flowing.set()
    assert behind.close(timeout=5)


def sample(metrics: Metrics, name: str) -> float | None:
    return metrics.registry.get_sample_value(name)


def gate(behind: WriteBehindStore, metrics: Metrics, **kw: float) -> WriteGate:
    return watch_write_queue(
        behind, metrics, warn_after=kw.get("warn", 5.0), drop_after=kw.get("drop", 0.0)
    )


async def test_paused_writers_wait_while_the_loop_runs_and_go_on_once_drained(
    stuck: tuple[StuckStore, WriteBehindStore],
) -> None:
    inner, behind = stuck
    metrics = Metrics()
    writes = gate(behind, metrics)
    assert await writes.pause("idle") is None  # below the bound: no pause
    behind.put("live/a/1.ts", b"x" * 150)  # never blocks, also past the bound
    assert writes.closed
    ticks = 0
    causes: list[str | None] = []

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.lowlevel.checkpoint()

    async def publisher(who: str) -> None:
        causes.append(await writes.pause(who))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        nursery.start_soon(publisher, "one")
        nursery.start_soon(publisher, "two")
        while ticks < 200:  # the loop runs on while both publishers wait
            await trio.lowlevel.checkpoint()
        assert causes == [] and sample(metrics, "hls_store_publishers_paused") == 2
        assert sample(metrics, "hls_store_queue_bytes") == 150
        inner.flowing.set()
        with trio.fail_after(10):
            while len(causes) < 2:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert causes == [None, None]
    assert not writes.closed
    assert sample(metrics, "hls_store_publishers_paused") == 0
    assert sample(metrics, "hls_store_publisher_pauses_total") == 2


async def test_a_writer_paused_too_long_is_logged_then_given_a_cause_to_end(
    stuck: tuple[StuckStore, WriteBehindStore],
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, behind = stuck
    metrics = Metrics()
    writes = gate(behind, metrics, warn=5.0, drop=60.0)
    behind.put("live/a/1.ts", b"x" * 150)
    with caplog.at_level(logging.WARNING, "gateway.store"):
        started = trio.current_time()
        cause = await writes.pause("rtmp #1 peer")
    assert cause == "disk write queue full for 60 s (hls_write_stall_timeout)"
    assert trio.current_time() - started == pytest.approx(60)  # the mock clock's
    assert "rtmp #1 peer: paused for 5 s: the disk write queue is full (150 bytes" in caplog.text
    assert sample(metrics, "hls_store_publishers_dropped_total") == 1
    assert sample(metrics, "hls_store_paused_seconds_total") == pytest.approx(60)
    assert sample(metrics, "hls_store_publishers_paused") == 0
