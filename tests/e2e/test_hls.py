"""Issues 3 and 4 end-to-end: real FFmpeg publishes; HLS is made, served, read by real clients."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
from pathlib import Path
from typing import Any

import httpx
import m3u8
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import Gateway, make_store
from segmenter.store import DiskStore, MemoryStore, WriteBehindStore
from tests.clients import (
    apt_ffmpeg_exe,
    apt_ffprobe_exe,
    imageio_ffmpeg_exe,
    publish_args,
    run_client,
)
from tests.conftest import start_gateway, test_settings

pytestmark = pytest.mark.e2e


def rtmp_url(gw: Gateway, key: str) -> str:
    assert gw.bound is not None
    return f"rtmp://127.0.0.1:{gw.bound.rtmp_port}/live/{key}"


def http_url(gw: Gateway, path: str) -> str:
    assert gw.bound is not None
    return gw.bound.http_url + path


async def publish(gw: Gateway, key: str, seconds: float, **kw: object) -> None:
    result = await run_client(
        publish_args(imageio_ffmpeg_exe(), rtmp_url(gw, key), seconds=seconds, **kw),  # type: ignore[arg-type]
        timeout=seconds + 30,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")


def read_playlist(path: Path) -> m3u8.M3U8 | None:
    try:
        return m3u8.loads(path.read_text())
    except FileNotFoundError:
        return None


def test_store_choice_follows_the_settings(tmp_path: Path) -> None:
    assert isinstance(make_store(test_settings()), MemoryStore)
    behind = make_store(test_settings(hls_dir=str(tmp_path)))
    assert isinstance(behind, WriteBehindStore) and isinstance(behind.inner, DiskStore)
    assert behind.close(timeout=5)
    direct = make_store(test_settings(hls_dir=str(tmp_path), hls_write_queue_bytes=0))
    assert isinstance(direct, DiskStore)


async def test_http_listener_drops_clients_that_stop_reading(
    nursery: trio.Nursery,
) -> None:
    # run_gateway builds hypercorn's sockets through web.tcp.HttpServerConfig: the listening
    # socket carries TCP_USER_TIMEOUT = http_send_timeout, which accepted sockets inherit.
    gw, stop = await start_gateway(nursery, test_settings(http_send_timeout=7.5))
    assert gw.bound is not None
    port = int(gw.bound.http_url.rsplit(":", 1)[1].split("/")[0])
    timeouts = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            sock = socket.socket(fileno=os.dup(int(fd)))
        except OSError:
            continue  # not a socket
        with sock:
            if sock.type == socket.SOCK_STREAM and sock.getsockname()[1:2] == (port,):
                timeouts.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT))
    assert timeouts and set(timeouts) == {7500}
    stop.set()


async def test_disk_store_grows_live_reconnect_discontinuity_then_endlist(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    hls = tmp_path / "hls"
    gw, stop = await start_gateway(
        nursery, test_settings(hls_dir=str(hls), hls_end_grace=3.0, hls_window=20)
    )
    assert isinstance(gw.store, WriteBehindStore)  # disk writes leave the event loop
    index = hls / "live" / "disk" / "ts.m3u8"
    seen_counts: list[int] = []
    unlisted: list[str] = []

    async def watch() -> None:
        while True:
            pl = read_playlist(index)
            if pl is not None:
                seen_counts.append(pl.media_sequence + len(pl.segments))
                # As an outside reader (nginx serving the directory) sees it: every listed
                # segment is already on disk (the window is long enough that none expire here).
                unlisted.extend(s.uri for s in pl.segments if not (index.parent / s.uri).is_file())
            await trio.sleep(0.1)

    async def publisher_gone() -> None:
        # The server has seen the publisher leave and the segmenter flushed its last segment,
        # and the store's writer thread has put it on disk (this test reads the files).
        with trio.fail_after(10):
            while (
                (s := gw.hub.get("live", "disk")) is None
                or s.publisher is not None
                or (gw.lives["live/disk"].state == "live")
            ):
                await trio.sleep(0.05)
        assert isinstance(gw.store, WriteBehindStore)
        assert await trio.to_thread.run_sync(gw.store.flush, 5.0)

    async with trio.open_nursery() as inner:
        inner.start_soon(watch)
        await publish(gw, "disk", 7)
        await publisher_gone()
        # The publisher reconnects on the same key before the grace period ends.
        await publish(gw, "disk", 5)
        await publisher_gone()
        inner.cancel_scope.cancel()
    assert len(set(seen_counts)) >= 4, f"playlist did not grow live: {sorted(set(seen_counts))}"
    assert unlisted == []
    assert seen_counts == sorted(seen_counts)  # segment count never goes back
    pl = read_playlist(index)
    assert pl is not None and not pl.is_endlist
    uris = [s.uri for s in pl.segments]
    assert len(uris) == len(set(uris))  # names never repeat
    assert sum(1 for s in pl.segments if s.discontinuity) == 1
    first_new = next(i for i, s in enumerate(pl.segments) if s.discontinuity)
    assert pl.segments[first_new].program_date_time is not None
    assert uris[first_new].split("-")[0] != uris[0].split("-")[0]  # new per-session prefix
    # No publisher for longer than the grace period: EXT-X-ENDLIST.
    with trio.fail_after(10):
        while not (pl := read_playlist(index)) or not pl.is_endlist:
            await trio.sleep(0.1)
    assert [s.uri for s in pl.segments][-len(uris) :] == uris  # the same list, now ended
    # Every listed segment exists on disk; no temporary file is left behind.
    assert all((index.parent / u).is_file() for u in uris)
    # The fMP4 playlist on disk lists the same media as whole segments with their init
    # segments, all on disk; LL-HLS parts are served from memory and never written.
    cmaf = read_playlist(index.parent / "cmaf.m3u8")
    assert cmaf is not None and cmaf.is_endlist
    assert (cmaf.media_sequence, len(cmaf.segments)) == (pl.media_sequence, len(pl.segments))
    assert not any(s.parts for s in cmaf.segments)
    files = [s.uri for s in cmaf.segments] + [s.init_section.uri for s in cmaf.segments]
    assert all((index.parent / f).is_file() for f in files)
    assert not [p for p in index.parent.iterdir() if p.name.count(".") == 2]  # no part files
    assert not [p for p in hls.rglob("*") if ".tmp~" in p.name]
    stop.set()


async def test_http_clients_read_and_decode_while_api_and_metrics_report(
    gateway: Gateway, tmp_path: Path
) -> None:
    url = http_url(gateway, "/live/web/index.m3u8")  # multivariant -> LL-HLS fMP4
    ts_url = http_url(gateway, "/live/web/ts.m3u8")
    results: dict[str, subprocess.CompletedProcess[bytes]] = {}
    reports: dict[str, Any] = {}  # the API's JSON and the metrics text

    async def read(name: str, exe: str, playlist: str) -> None:
        args = [exe, "-hide_banner", "-nostdin", "-v", "warning", "-i", playlist, "-t", "3"]
        results[name] = await run_client([*args, "-f", "null", "-"], timeout=30)

    async def readers() -> None:
        async with httpx.AsyncClient() as client:
            with trio.fail_after(20):
                while (r := await client.get(ts_url)).status_code != 200 or (
                    len(m3u8.loads(r.text).segments) < 2
                ):
                    await trio.sleep(0.2)
        # FFmpeg 9 and Debian's 5.1 read both formats, each through its playlist URL.
        async with trio.open_nursery() as clients:
            for exe, version in ((imageio_ffmpeg_exe(), "9"), (apt_ffmpeg_exe(), "5.1")):
                clients.start_soon(read, f"ffmpeg {version} index.m3u8", exe, url)
                clients.start_soon(read, f"ffmpeg {version} ts.m3u8", exe, ts_url)
        results["ffprobe"] = await run_client(
            [apt_ffprobe_exe(), "-v", "warning", "-print_format", "json", "-show_streams", url],
            timeout=30,
        )
        async with httpx.AsyncClient() as client:
            reports["api"] = (await client.get(http_url(gateway, "/api/streams/live/web"))).json()
            reports["metrics"] = (await client.get(http_url(gateway, "/metrics"))).text

    async with trio.open_nursery() as inner:
        inner.start_soon(publish, gateway, "web", 14)
        await readers()

    for name in [n for n in results if n.startswith("ffmpeg")]:
        ffmpeg = results[name]
        assert ffmpeg.returncode == 0 and ffmpeg.stderr.decode().strip() == "", (name, ffmpeg)
    probe = results["ffprobe"]
    assert probe.returncode == 0, probe.stderr
    streams = {s["codec_type"]: s for s in json.loads(probe.stdout)["streams"]}
    assert streams["video"]["codec_name"] == "h264" and streams["video"]["width"] == 320
    assert streams["audio"]["codec_name"] == "aac"

    api = reports["api"]
    assert api["state"] == "live" and api["publisher"].startswith("127.0.0.1:")
    assert api["codecs"][0].startswith("avc1.") and api["codecs"][1:] == ["mp4a.40.2"]
    assert (api["width"], api["height"], api["frame_rate"]) == (320, 240, 30.0)
    assert api["video_bitrate"] > 0 and api["audio_bitrate"] > 0
    assert api["keyframe_interval"] == pytest.approx(1.0, abs=0.05)
    assert api["segment_count"] >= 2 and api["newest_segment_age"] < 5
    assert api["warnings"] == []
    assert api["dropped"] == 0  # a clean publish loses nothing (it showed 1: video-first ties)

    families = {f.name: f for f in text_string_to_metric_families(reports["metrics"])}
    value = {
        f: sum(s.value for s in families[f].samples if s.name.endswith("_total"))
        for f in ("rtmp_connections", "hls_segments", "rtmp_bytes_received")
    }
    assert value["rtmp_connections"] >= 1
    assert value["hls_segments"] >= 2
    assert value["rtmp_bytes_received"] > 100_000
    publishers = [s.value for s in families["rtmp_publishers"].samples]
    assert publishers == [1.0]
    assert any(
        s.labels.get("route", "").endswith(".m3u8") or "<" in s.labels.get("route", "")
        for s in families["http_requests"].samples
    )


async def test_ended_stream_is_retired_and_a_later_publisher_continues_numbering(
    nursery: trio.Nursery,
) -> None:
    gw, _ = await start_gateway(nursery, test_settings(hls_end_grace=1.0, hls_retention=1.0))
    await publish(gw, "short", 4)
    first = m3u8.loads((gw.store.get("live/short/ts.m3u8") or b"").decode())
    with trio.fail_after(10):
        while "live/short" in gw.lives or gw.hub.get("live", "short") is not None:
            await trio.sleep(0.1)
    # Segments freed: only the playlists are left, carrying the numbering.
    names = ("cmaf.m3u8", "index.m3u8", "ts.m3u8")
    assert sorted(gw.store.names("live/short/")) == [f"live/short/{n}" for n in names]
    assert gw.stream("live", "short") is None
    await publish(gw, "short", 4)
    again = m3u8.loads((gw.store.get("live/short/ts.m3u8") or b"").decode())
    assert again.media_sequence >= first.media_sequence + len(first.segments)
    assert again.segments and again.segments[0].discontinuity


async def test_a_full_memory_store_loses_segments_not_the_gateway(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    cap = 400_000  # a few of this publisher's segments
    gw, _ = await start_gateway(nursery, test_settings(hls_memory_max_bytes=cap))
    assert gw.bound is not None
    url = f"rtmp://127.0.0.1:{gw.bound.rtmp_port}/live/big"
    with caplog.at_level(logging.ERROR):
        result = await run_client(
            publish_args(imageio_ffmpeg_exe(), url, seconds=8, size="640x360"), timeout=40
        )
    assert result.returncode == 0, result.stderr.decode(errors="replace")  # ingest unharmed
    assert isinstance(gw.store, MemoryStore) and gw.store.total_bytes <= cap
    full = [r for r in caplog.records if "memory store full" in r.getMessage()]
    assert full and len(full) <= 2  # named, once per outage, not per segment
    assert gw.metrics.store_refused._value.get() >= len(full)
    async with httpx.AsyncClient(base_url=gw.bound.http_url) as http:
        health = await http.get("/healthz")
        if gw.health.failure is not None:  # no segment has fitted since the last refusal
            assert health.status_code == 503, health.text
            assert "memory store full" in health.json()["reason"]
        else:
            assert health.status_code == 200, health.text
        assert (await http.get("/api/streams/live/big")).status_code == 200


def store_healthy(metrics: str) -> float:
    families = {f.name: f for f in text_string_to_metric_families(metrics)}
    return families["hls_store_healthy"].samples[0].value


@pytest.mark.parametrize("queue", [1 << 20, 0], ids=["write-behind", "direct"])
async def test_healthz_fails_while_the_store_cannot_write_and_recovers(
    nursery: trio.Nursery, tmp_path: Path, queue: int
) -> None:
    hls = tmp_path / "hls"
    gw, _ = await start_gateway(
        nursery, test_settings(hls_dir=str(hls), hls_write_queue_bytes=queue)
    )
    assert gw.bound is not None
    cam = hls / "live" / "cam"

    async def poll(want: int) -> dict[str, str]:
        with trio.fail_after(60):  # generous: a loaded 2-core machine
            while True:
                response = await http.get("/healthz")
                if response.status_code == want:
                    return dict(response.json())
                await trio.sleep(0.2)

    async with httpx.AsyncClient(base_url=gw.bound.http_url) as http, trio.open_nursery() as inner:
        inner.start_soon(publish, gw, "cam", 120)
        with trio.fail_after(60):
            while not (cam / "index.m3u8").exists():
                await trio.sleep(0.2)
        assert await poll(200) == {"status": "ok"}
        # The stream's directory becomes a file: every later write of the stream fails.
        with trio.fail_after(30):
            while True:
                try:
                    cam.rename(tmp_path / "moved")
                    cam.write_bytes(b"")
                    break
                except OSError:  # the writer made the directory again in between
                    await trio.sleep(0.1)
        body = await poll(503)
        assert body["status"] == "failing"
        assert body["reason"].startswith("store: cannot write live/cam/"), body
        assert "Not a directory" in body["reason"], body
        assert body["since"].endswith("+00:00")
        assert store_healthy((await http.get("/metrics")).text) == 0.0
        cam.unlink()  # the next segment is written again
        assert await poll(200) == {"status": "ok"}
        assert store_healthy((await http.get("/metrics")).text) == 1.0
        inner.cancel_scope.cancel()
