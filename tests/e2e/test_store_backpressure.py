"""Issue 16: a disk slower than the streams pauses the publishers, through trio, not the loop.

The disk is our own Store whose writes wait (in the writer thread) until the test lets them
through: a stuck disk, without a mock of anything the gateway talks to. Publishers are FFmpeg.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import Gateway, run_gateway
from gateway.config import Settings
from segmenter.store import Data, DiskStore, Store, StoreHealth, WriteBehindStore
from tests.clients import imageio_ffmpeg_exe, publish_args, run_client
from tests.conftest import start_gateway, test_settings

pytestmark = pytest.mark.e2e

# Even a gateway whose loop the stuck disk froze (the bug) ends the test: the disk lets writes
# through after this long, and the test then fails on what it saw.
STUCK_AT_MOST = 90.0


class StuckDisk(DiskStore):
    """A DiskStore whose writes and deletes wait while ``stuck`` (a disk that stopped)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.flowing = threading.Event()
        self.flowing.set()

    def put(self, name: str, data: Data, *, fresh: bool = False) -> None:
        self.flowing.wait(STUCK_AT_MOST)
        super().put(name, data, fresh=fresh)

    def delete(self, name: str) -> None:
        self.flowing.wait(STUCK_AT_MOST)
        super().delete(name)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[StuckDisk]:
    disk = StuckDisk(tmp_path / "hls")
    yield disk
    disk.flowing.set()


def factory(disk: StuckDisk) -> Callable[[Settings, StoreHealth], Store]:
    def make(settings: Settings, health: StoreHealth) -> Store:
        return WriteBehindStore(
            disk, max_pending_bytes=settings.hls_write_queue_bytes, health=health
        )

    return make


async def start(nursery: trio.Nursery, disk: StuckDisk, **overrides: object) -> Gateway:
    settings = test_settings(
        hls_dir=str(disk.root),
        hls_write_queue_bytes=16 * 1024,
        hls_target_duration=1.0,
        hls_part_duration=0.5,
        **overrides,
    )
    run = partial(run_gateway, settings, handle_signals=False, store_factory=factory(disk))
    gw: Gateway = await nursery.start(run)
    return gw


def url(gw: Gateway, key: str) -> str:
    assert gw.bound is not None
    return f"rtmp://127.0.0.1:{gw.bound.rtmp_port}/live/{key}"


def metric(text: str, name: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    raise KeyError(name)


async def wait_metric(http: httpx.AsyncClient, name: str, ok: Callable[[float], bool]) -> str:
    with trio.fail_after(60):
        while True:
            text = (await http.get("/metrics")).text
            try:
                if ok(metric(text, name)):
                    return text
            except KeyError:
                pass
            await trio.sleep(0.2)


async def test_a_stuck_disk_pauses_publishers_while_http_and_the_loop_go_on(
    nursery: trio.Nursery, disk: StuckDisk, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "gateway.store")
    gw = await start(nursery, disk, hls_write_stall_warn=1.0, hls_write_stall_timeout=0.0)
    assert gw.bound is not None
    ffmpeg = imageio_ffmpeg_exe()
    # Another stream, published while the disk still took writes: its playlist is on disk.
    done = await run_client(publish_args(ffmpeg, url(gw, "other"), seconds=3), timeout=60)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    ticks = 0

    async def ticker() -> None:  # any task of the event loop
        nonlocal ticks
        while True:
            ticks += 1
            await trio.sleep(0.01)

    result: list[int] = []

    async def cam() -> None:
        done = await run_client(publish_args(ffmpeg, url(gw, "cam"), seconds=6), timeout=200)
        result.append(done.returncode)

    async with httpx.AsyncClient(base_url=gw.bound.http_url) as http, trio.open_nursery() as inner:
        inner.start_soon(ticker)
        disk.flowing.clear()  # the disk stops
        inner.start_soon(cam)
        text = await wait_metric(http, "hls_store_publishers_paused", lambda v: v == 1)
        assert metric(text, "hls_store_queue_bytes") >= 16 * 1024
        assert metric(text, "hls_store_queue_items") >= 1
        assert metric(text, "hls_store_publisher_pauses_total") >= 1
        # While the publisher waits: HTTP answers, the other stream plays, the loop runs.
        before = ticks
        health = await http.get("/healthz")
        assert health.status_code == 200, health.text
        playlist = await http.get("/live/other/index.m3u8")
        assert playlist.status_code == 200 and playlist.text.startswith("#EXTM3U")
        media = await http.get("/live/other/ts.m3u8")
        assert media.status_code == 200, media.text
        first = next(line for line in media.text.splitlines() if line.endswith(".ts"))
        segment = await http.get(f"/live/other/{first}")
        assert segment.status_code == 200 and segment.content[:1] == b"G"  # MPEG-TS sync byte
        status = (await http.get("/api/streams/live/cam")).json()
        assert status["state"] == "live", status
        with trio.fail_after(30):
            while "paused for 1 s" not in caplog.text:
                await trio.sleep(0.1)
        assert ticks > before
        assert not list((disk.root / "live" / "cam").glob("*.ts"))  # nothing written yet
        disk.flowing.set()  # the disk is back: the publisher resumes and finishes its stream
        with trio.fail_after(120):
            while not result:
                await trio.sleep(0.2)
        assert result == [0]
        text = await wait_metric(http, "hls_store_publishers_paused", lambda v: v == 0)
        assert metric(text, "hls_store_paused_seconds_total") > 0
        assert metric(text, "hls_store_write_seconds_count") > 0
        assert metric(text, "hls_store_write_failures_total") == 0
        assert metric(text, "hls_store_publishers_dropped_total") == 0
        inner.cancel_scope.cancel()
    assert "resumed after" in caplog.text
    assert list((disk.root / "live" / "cam").glob("*.ts"))  # its segments reached the disk


# The shared reader of publishers (readmux) and a connection's own read loop both pause.
@pytest.mark.parametrize("interval", [0.005, 0.0], ids=["shared-reader", "own-loop"])
async def test_a_publisher_stuck_past_the_stall_timeout_is_dropped_with_the_reason(
    nursery: trio.Nursery, disk: StuckDisk, caplog: pytest.LogCaptureFixture, interval: float
) -> None:
    caplog.set_level(logging.INFO)
    gw = await start(
        nursery,
        disk,
        hls_write_stall_warn=0.5,
        hls_write_stall_timeout=2.0,
        rtmp_read_interval=interval,
    )
    assert gw.bound is not None
    disk.flowing.clear()
    done = await run_client(
        publish_args(imageio_ffmpeg_exe(), url(gw, "cam"), seconds=60), timeout=200
    )
    assert done.returncode != 0  # the gateway ended its connection long before its 60 s
    assert "disk write queue full for 2 s (hls_write_stall_timeout)" in caplog.text
    async with httpx.AsyncClient(base_url=gw.bound.http_url) as http:
        text = (await http.get("/metrics")).text
        assert metric(text, "hls_store_publishers_dropped_total") == 1
        assert metric(text, "hls_store_publishers_paused") == 0
    disk.flowing.set()


async def test_a_pull_relay_pauses_like_a_publisher(
    nursery: trio.Nursery, disk: StuckDisk, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    source, _ = await start_gateway(nursery, test_settings())  # memory store: never paused
    src = url(source, "src")
    mirror = await start(
        nursery, disk, pull=f"live/mirror={src}", hls_write_stall_warn=0.5,
        hls_write_stall_timeout=3.0,
    )  # fmt: skip
    assert mirror.bound is not None
    disk.flowing.clear()
    async with (
        httpx.AsyncClient(base_url=mirror.bound.http_url) as http,
        trio.open_nursery() as inner,
    ):
        inner.start_soon(
            partial(run_client, publish_args(imageio_ffmpeg_exe(), src, seconds=60), timeout=200)
        )
        await wait_metric(http, "hls_store_publishers_paused", lambda v: v == 1)
        assert (await http.get("/healthz")).status_code == 200
        await wait_metric(http, "hls_store_publishers_dropped_total", lambda v: v == 1)
        with trio.fail_after(30):
            while "disk write queue full for 3 s" not in caplog.text:
                await trio.sleep(0.1)
        assert "pull rtmp://127.0.0.1:" in caplog.text
        inner.cancel_scope.cancel()
