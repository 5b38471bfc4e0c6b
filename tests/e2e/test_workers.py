"""Issue 17: worker processes. A real `gateway run --workers 2` (supervisor + two workers), FFmpeg
publishers on both workers, HLS viewers and RTMP players on every worker for every stream, a
blocking LL-HLS reload answered by the worker that does not make the stream, a killed worker
that comes back (and serves the other worker's stream again), SIGTERM ending them all."""

from __future__ import annotations

import os
import re
import signal
import ssl
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import m3u8
import pytest
import trio
import trustme

from tests.clients import imageio_ffmpeg_exe, play_args, publish_args
from tests.e2e.test_cli import GATEWAY, free_port
from tests.s3server import aws_environment, serving

pytestmark = pytest.mark.e2e

# Fresh connections tried before both workers must have answered (the kernel picks by hash).
TRIES = 200


class Gateway:
    """A `gateway run --workers 2` process; its output goes to ``log``."""

    def __init__(self, log: Path, *extra: str) -> None:
        self.log = log
        self.rtmp, self.http, self.rtmps = free_port(), free_port(), free_port()
        self.scheme = "https" if "--tls-cert" in extra else "http"
        self.extra = extra
        self.proc: trio.Process | None = None
        self.publishers: dict[str, trio.Process] = {}

    @property
    def base(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.http}"

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    async def start(self) -> None:
        with self.log.open("ab") as sink:
            self.proc = await trio.lowlevel.open_process(
                [*GATEWAY, "run", "--workers", "2", "--host", "127.0.0.1",
                 "--rtmp-port", str(self.rtmp), "--http-port", str(self.http),
                 "--rtmps-port", str(self.rtmps),
                 "--hls-target-duration", "1", "--hls-part-duration", "0.25",
                 "--hls-window", "6", "--hls-end-grace", "1", "--worker-restart-delay", "0.2",
                 *self.extra],
                stdout=sink, stderr=subprocess.STDOUT,
            )  # fmt: skip
        await self.wait_log("gateway listening")

    async def wait_log(self, pattern: str, count: int = 1) -> None:
        with trio.fail_after(30):
            while len(re.findall(pattern, self.text())) < count:
                await trio.sleep(0.1)

    async def publish(self, key: str, seconds: float = 120) -> None:
        url = f"rtmp://127.0.0.1:{self.rtmp}/live/{key}"
        self.publishers[key] = await trio.lowlevel.open_process(
            publish_args(imageio_ffmpeg_exe(), url, seconds=seconds, gop=15),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def worker_pid(self, index: int) -> int:
        found = re.findall(rf"worker {index} ready \(pid (\d+)\)", self.text())
        assert found, self.text()
        return int(found[-1])

    def stop(self) -> None:
        for proc in [self.proc, *self.publishers.values()]:
            if proc is not None and proc.returncode is None:
                proc.kill()


@asynccontextmanager
async def running(tmp_path: Path, *extra: str) -> AsyncIterator[Gateway]:
    gw = Gateway(tmp_path / "gateway.log", *extra)
    try:
        await gw.start()
        yield gw
    finally:
        gw.stop()
        if gw.proc is not None:
            with trio.move_on_after(10):
                await gw.proc.wait()


async def streams(client: httpx.AsyncClient, gw: Gateway) -> dict[str, dict[str, object]]:
    answer = await client.get(f"{gw.base}/api/streams")
    assert answer.status_code == 200, answer.text
    return {f"{s['app']}/{s['key']}": s for s in answer.json()["streams"]}


async def wait_owners(gw: Gateway, keys: list[str]) -> dict[str, int]:
    """Wait until every stream is live and listed with its owner (and 2 segments exist)."""
    async with httpx.AsyncClient(timeout=10) as client:
        with trio.fail_after(40):
            while True:
                found = await streams(client, gw)
                ready = [
                    found[f"live/{k}"]
                    for k in keys
                    if f"live/{k}" in found
                    and int(str(found[f"live/{k}"].get("segment_count") or 0)) >= 2
                ]
                if len(ready) == len(keys):
                    return {str(s["key"]): int(str(s["worker"])) for s in ready}
                await trio.sleep(0.3)


async def answered_by_both(gw: Gateway, path: str) -> dict[int, httpx.Response]:
    """GET ``path`` on fresh connections until each worker has answered it once."""
    seen: dict[int, httpx.Response] = {}
    for _ in range(TRIES):
        async with httpx.AsyncClient(timeout=10) as client:  # a new connection each time
            answer = await client.get(f"{gw.base}{path}")
        worker = int(answer.headers["gateway-worker"])
        seen.setdefault(worker, answer)
        if len(seen) == 2:
            return seen
    raise AssertionError(f"{path}: only workers {sorted(seen)} answered in {TRIES} connections")


async def check_hls_everywhere(gw: Gateway, key: str) -> None:
    """Every worker serves the stream's playlists, a segment and a part."""
    for file in ("index.m3u8", "cmaf.m3u8", "ts.m3u8"):
        for worker, answer in (await answered_by_both(gw, f"/live/{key}/{file}")).items():
            assert answer.status_code == 200, (worker, file, answer.text)
            assert answer.text.startswith("#EXTM3U"), (worker, file)
    answer = next(iter((await answered_by_both(gw, f"/live/{key}/cmaf.m3u8")).values()))
    complete = [s for s in m3u8.loads(answer.text).segments if s.uri]
    last = complete[-1]
    init = last.init_section.uri if last.init_section is not None else None
    part = last.parts[0].uri if last.parts else None
    assert init is not None and part is not None, answer.text
    for name in (last.uri, part, init):
        for worker, got in (await answered_by_both(gw, f"/live/{key}/{name}")).items():
            assert got.status_code == 200, (worker, name, got.text[:200])
            assert len(got.content) > 0, (worker, name)


async def blocking_reload_on(gw: Gateway, key: str, worker: int) -> None:
    """A blocking playlist reload for the next part, sent to ``worker`` (found by asking
    /healthz on fresh connections), returns a playlist that lists that part."""
    for _ in range(TRIES):
        async with httpx.AsyncClient(timeout=15) as client:
            probe = await client.get(f"{gw.base}/healthz")
            if int(probe.headers["gateway-worker"]) != worker:
                continue
            now = m3u8.loads((await client.get(f"{gw.base}/live/{key}/cmaf.m3u8")).text)
            hint = re.search(r'PRELOAD-HINT:TYPE=PART,URI="[^"]*-(\d+)\.(\d+)\.m4s"', now.dumps())
            assert hint is not None, now.dumps()
            msn, part = int(hint.group(1)), int(hint.group(2))
            query = f"_HLS_msn={msn}&_HLS_part={part}"
            answer = await client.get(f"{gw.base}/live/{key}/cmaf.m3u8?{query}")
            assert int(answer.headers["gateway-worker"]) == worker  # same connection
            assert answer.status_code == 200, answer.text
            assert f"-{msn}.{part}.m4s" in answer.text, answer.text
            return
    raise AssertionError(f"no connection reached worker {worker} in {TRIES} tries")


async def play(gw: Gateway, key: str, out: Path) -> None:
    """An RTMP player (FFmpeg) records 3 s of the stream to ``out``."""
    url = f"rtmp://127.0.0.1:{gw.rtmp}/live/{key}"
    args = play_args("ffmpeg-9", url, str(out), seconds=3)
    with trio.fail_after(30):
        result = await trio.run_process(args, capture_stdout=True, capture_stderr=True, check=False)
    assert result.returncode == 0, result.stderr.decode(errors="replace")


def frames(path: Path) -> int:
    probe = subprocess.run(
        [imageio_ffmpeg_exe(), "-hide_banner", "-i", str(path), "-map", "0:v", "-f", "null", "-"],
        capture_output=True,
        check=False,
    )
    found = re.findall(rb"frame=\s*(\d+)", probe.stderr)
    return int(found[-1]) if found else 0


async def test_two_workers_serve_every_stream_and_survive_a_worker(tmp_path: Path) -> None:
    async with running(tmp_path) as gw:
        # Connections are handed to the workers in turn: one publisher each.
        await gw.publish("one")
        await trio.sleep(0.5)
        await gw.publish("two")
        owners = await wait_owners(gw, ["one", "two"])
        assert sorted(owners.values()) == [0, 1], owners

        for key in ("one", "two"):
            await check_hls_everywhere(gw, key)
            other = 1 - owners[key]
            await blocking_reload_on(gw, key, other)
            # Each worker describes the stream as its owner does (the player page's poll).
            for answer in (await answered_by_both(gw, f"/api/streams/live/{key}")).values():
                info = answer.json()
                assert info["worker"] == owners[key] and info["publisher"], info
                assert info["viewers"] >= 1, info  # this test's own requests, on both workers

        # RTMP players: four connections in turn, so each stream is played on each worker.
        recorded = {}
        for n, key in enumerate(["one", "one", "two", "two"]):
            out = tmp_path / f"play-{n}.flv"
            await play(gw, key, out)
            recorded[n] = frames(out)
        assert all(count > 30 for count in recorded.values()), recorded
        for key in ("one", "two"):
            played_on = set(
                re.findall(rf"\[worker (\d)\] [\w.]+: play start live/{key} ", gw.text())
            )
            assert played_on == {"0", "1"}, (key, played_on)

        # A second publisher of a live name is refused whichever worker it reaches.
        for _ in range(2):
            url = f"rtmp://127.0.0.1:{gw.rtmp}/live/one"
            args = publish_args(imageio_ffmpeg_exe(), url, seconds=2, gop=15)
            with trio.fail_after(30):
                second = await trio.run_process(args, capture_stderr=True, check=False)
            assert second.returncode != 0
        assert "already being published" in gw.text()

        # /metrics speaks for both workers: both publishers' connections are counted.
        async with httpx.AsyncClient(timeout=10) as client:
            text = (await client.get(f"{gw.base}/metrics")).text
        published = re.search(r"^rtmp_publishers (\S+)", text, re.M)
        assert published is not None and float(published.group(1)) == 2.0, text[:2000]

        # kill -9 the worker that owns "two": the supervisor starts it again; the encoder
        # reconnects (FFmpeg does not by itself: published again, as OBS would).
        victim = owners["two"]
        os.kill(gw.worker_pid(victim), signal.SIGKILL)
        await gw.wait_log(rf"worker {victim} died")
        await gw.wait_log(rf"worker {victim} ready \(pid", count=2)
        publisher = gw.publishers.pop("two")
        with trio.fail_after(10):
            await publisher.wait()  # its connection died with the worker
        await gw.publish("two")
        owners = await wait_owners(gw, ["one", "two"])
        # The restarted worker got copies of the stream it does not own, and serves both.
        for key in ("one", "two"):
            await check_hls_everywhere(gw, key)

        # SIGTERM: every worker ends gracefully, then the supervisor.
        pids = [gw.worker_pid(0), gw.worker_pid(1)]
        assert gw.proc is not None
        gw.proc.send_signal(signal.SIGTERM)
        with trio.fail_after(40):
            code = await gw.proc.wait()
        assert code == 0, gw.text()[-3000:]
        for pid in pids:
            assert _gone(pid), pid
        assert "gateway stopped" in gw.text()


def _gone(pid: int) -> bool:
    """The process has exited (a zombie waiting to be reaped counts as exited)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


async def test_two_workers_share_a_disk_directory(tmp_path: Path) -> None:
    """With hls_dir the workers share the directory: both serve a stream one of them makes,
    and the supervisor's start-up sweep ran once."""
    hls = tmp_path / "hls"
    async with running(tmp_path, "--hls-dir", str(hls)) as gw:
        await gw.publish("disk")
        await wait_owners(gw, ["disk"])
        await check_hls_everywhere(gw, "disk")
        async with httpx.AsyncClient(timeout=10) as client:
            info = (await streams(client, gw))["live/disk"]
        assert info["worker"] in (0, 1)
        assert (hls / "live" / "disk" / "index.m3u8").exists()
        assert gw.text().count("removed") == 0  # nothing to sweep in a new directory
        # A supervisor killed outright: its workers see the link close and stop by themselves
        # (gracefully: the playlist on disk gets its EXT-X-ENDLIST).
        pids = [gw.worker_pid(0), gw.worker_pid(1)]
        assert gw.proc is not None
        gw.proc.kill()
        with trio.fail_after(30):
            while not all(_gone(pid) for pid in pids):
                await trio.sleep(0.1)
        for name in ("ts.m3u8", "cmaf.m3u8"):
            assert "#EXT-X-ENDLIST" in (hls / "live" / "disk" / name).read_text(), name


def watch_across_workers(url: str, seconds: float, want: str) -> dict[str, object]:
    """hls.js (lowLatencyMode) in headless Chromium plays ``url`` for ``seconds``; which workers
    answered, the media requests that failed, and how far playback got. The kernel picks the
    worker of each of the browser's connections: a browser whose first connections all reached
    other workers than ``want`` is closed and another one started. Blocking: run in a thread."""
    for _ in range(TRIES // 10):
        seen = _watch(url, seconds, want)
        if seen is not None:
            return seen
    raise AssertionError(f"no browser reached worker {want} in {TRIES // 10} tries")


def _watch(url: str, seconds: float, want: str) -> dict[str, object] | None:
    from bench.browser import chromium, open_player

    workers: set[str] = set()
    failed: list[str] = []

    def listen(page: Any) -> None:
        def seen(response: Any) -> None:
            if "/live/" not in response.url:
                return
            workers.add(response.headers.get("gateway-worker", "?"))
            if response.status >= 400:
                failed.append(f"{response.status} {response.url}")

        page.on("response", seen)

    with chromium("workers-chromium-") as context:
        page = open_player(context, url, {"lowLatencyMode": True}, before_load=listen)
        page.wait_for_function("document.getElementById('v').currentTime > 1", timeout=30_000)
        if want not in workers:
            return None
        start = page.evaluate("document.getElementById('v').currentTime")
        page.wait_for_timeout(seconds * 1000)
        played = page.evaluate("document.getElementById('v').currentTime") - start
        errors = page.evaluate("bench.errors")
    return {"workers": workers, "failed": failed, "played": played, "errors": errors}


async def test_hlsjs_plays_low_latency_from_both_workers(tmp_path: Path) -> None:
    async with running(tmp_path) as gw:
        await gw.publish("browser")
        owner = (await wait_owners(gw, ["browser"]))["browser"]
        url = f"{gw.base}/live/browser/index.m3u8"
        other = str(1 - owner)
        seen = await trio.to_thread.run_sync(watch_across_workers, url, 10.0, other)
    workers = seen["workers"]
    assert isinstance(workers, set) and other in workers, seen
    assert seen["failed"] == [], seen
    assert float(str(seen["played"])) > 8.0, seen
    errors = seen["errors"]
    assert isinstance(errors, list) and not [e for e in errors if e.get("fatal")], seen


async def test_rtmps_https_and_reload_through_the_supervisor(tmp_path: Path) -> None:
    """RTMPS connections handed to the workers are TLS-wrapped there; HTTPS on both workers; a
    SIGHUP to the supervisor reloads every worker."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file, ca_file = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    ca.cert_pem.write_to_path(str(ca_file))
    config = tmp_path / "gateway.toml"
    config.write_text('log_level = "info"\n')
    tls = ("--tls-cert", str(cert_file), "--tls-key", str(key_file), "--config", str(config))
    async with running(tmp_path, *tls) as gw:
        url = f"rtmps://127.0.0.1:{gw.rtmps}/live/secure"
        gw.publishers["secure"] = await trio.lowlevel.open_process(
            publish_args(imageio_ffmpeg_exe(), url, seconds=60, gop=15, ca_file=str(ca_file)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        context = ssl.create_default_context(cafile=str(ca_file))
        async with httpx.AsyncClient(timeout=10, verify=context) as client:
            with trio.fail_after(40):
                while "live/secure" not in await streams(client, gw):
                    await trio.sleep(0.3)
        for n in range(2):  # one player per worker (connections go in turn)
            out = tmp_path / f"secure-{n}.flv"
            args = play_args("ffmpeg-9", url, str(out), seconds=3, ca_file=str(ca_file))
            with trio.fail_after(30):
                played = await trio.run_process(args, capture_stderr=True, check=False)
            assert played.returncode == 0, played.stderr.decode(errors="replace")
            assert frames(out) > 30
        assert set(re.findall(r"\[worker (\d)\] [\w.]+: play start live/secure ", gw.text())) == {
            "0",
            "1",
        }
        config.write_text('log_level = "debug"\n')
        assert gw.proc is not None
        gw.proc.send_signal(signal.SIGHUP)
        await gw.wait_log(r"\[worker \d\] gateway: configuration reloaded: log_level", count=2)


async def test_a_stuck_worker_is_restarted(tmp_path: Path) -> None:
    """A worker whose event loop stops (SIGSTOP here; an endless loop alike) misses the
    supervisor's heartbeat and is killed and started again."""
    async with running(tmp_path, "--worker-heartbeat-timeout", "2") as gw:
        os.kill(gw.worker_pid(1), signal.SIGSTOP)
        await gw.wait_log(r"worker 1 did not answer for 2 s: killed")
        await gw.wait_log(r"worker 1 ready \(pid", count=2)
        async with httpx.AsyncClient(timeout=10) as client:
            assert (await client.get(f"{gw.base}/healthz")).status_code == 200


async def test_two_workers_with_the_s3_store_upload_each_object_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With an S3 store the owner uploads; the other worker keeps its copy in memory only (it
    serves the stream, it does not upload it again)."""
    for name, value in aws_environment().items():
        monkeypatch.setenv(name, value)  # the workers inherit botocore's credentials
    for moto in serving():
        moto.create_bucket("workers")
        s3 = ("--hls-s3-url", "s3://workers/hls", "--s3-endpoint-url", moto.endpoint)
        async with running(tmp_path, *s3) as gw:
            await gw.publish("bucket")
            await wait_owners(gw, ["bucket"])
            await check_hls_everywhere(gw, "bucket")
            with trio.fail_after(30):
                while len([k for k in moto.keys("workers", "hls/live/bucket") if ".m4s" in k]) < 3:
                    await trio.sleep(0.2)
        puts = [
            e.key
            for e in moto.recorder.snapshot()
            if e.phase == "end" and e.method == "PUT" and not e.key.endswith(".m3u8") and e.key
        ]
        assert puts and len(puts) == len(set(puts)), sorted(puts)
