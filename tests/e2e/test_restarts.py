"""Issue 16: no disk leaks across restarts. A real gateway process with a disk hls_dir, FFmpeg
publishing, SIGTERM, a restart that resumes the stream, kill -9, a last restart: after
hls_retention the directory holds only playlists and what they list."""

from __future__ import annotations

import posixpath
import signal
import subprocess
from pathlib import Path

import m3u8
import pytest
import trio

from tests.clients import imageio_ffmpeg_exe, publish_args
from tests.e2e.test_cli import GATEWAY, free_port

pytestmark = pytest.mark.e2e

RETENTION = 4.0


class Run:
    """One gateway process (its output appended to ``log``)."""

    def __init__(self, hls: Path, log: Path) -> None:
        self.hls, self.log = hls, log
        self.rtmp, self.http = free_port(), free_port()
        self.proc: trio.Process | None = None
        self.publisher: trio.Process | None = None

    async def start(self) -> None:
        mark = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as sink:
            self.proc = await trio.lowlevel.open_process(
                [*GATEWAY, "run", "--host", "127.0.0.1", "--rtmp-port", str(self.rtmp),
                 "--http-port", str(self.http), "--hls-dir", str(self.hls),
                 "--hls-target-duration", "0.5", "--hls-max-segment-duration", "1",
                 "--hls-part-duration", "0.25", "--hls-window", "6",
                 "--hls-end-grace", "1", "--hls-retention", str(RETENTION)],
                stdout=sink, stderr=subprocess.STDOUT,
            )  # fmt: skip
        with trio.fail_after(30):
            while b"gateway listening" not in self.log.read_bytes()[mark:]:
                await trio.sleep(0.1)

    async def publish(self, key: str) -> None:
        url = f"rtmp://127.0.0.1:{self.rtmp}/live/{key}"
        self.publisher = await trio.lowlevel.open_process(
            publish_args(imageio_ffmpeg_exe(), url, seconds=120, gop=15),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    async def stop(self, signum: signal.Signals) -> int:
        assert self.proc is not None
        self.proc.send_signal(signum)
        with trio.fail_after(30):
            code = await self.proc.wait()
        if self.publisher is not None:
            self.publisher.kill()
            await self.publisher.wait()
        return code

    def kill(self) -> None:
        for proc in (self.proc, self.publisher):
            if proc is not None and proc.returncode is None:
                proc.kill()


def listed(playlist: Path) -> list[str]:
    """The segment URIs ``playlist`` lists (none while it does not exist)."""
    if not playlist.exists():
        return []
    return [s.uri for s in m3u8.loads(playlist.read_text()).segments]


async def segments_after(playlist: Path, count: int, *, prefix_not: str = "") -> list[str]:
    """Wait until ``playlist`` lists ``count`` segments whose prefix is not ``prefix_not``."""
    with trio.fail_after(60):
        while True:
            uris = listed(playlist)
            fresh = [u for u in uris if not (prefix_not and u.startswith(prefix_not))]
            if len(fresh) >= count:
                return uris
            await trio.sleep(0.1)


def leftovers(hls: Path) -> list[str]:
    """Files not allowed once everything has ended and hls_retention passed: anything but a
    playlist, and any playlist still listing a segment or not ended."""
    out = []
    for path in sorted(p for p in hls.rglob("*") if p.is_file()):
        name = path.relative_to(hls).as_posix()
        if not name.endswith(".m3u8"):
            out.append(name)
            continue
        playlist = m3u8.loads(path.read_text())
        if playlist.is_variant:
            continue
        if not playlist.is_endlist or playlist.segments:
            out.append(f"{name} (ended: {playlist.is_endlist}, {len(playlist.segments)} listed)")
    return out


def unlisted(hls: Path) -> list[str]:
    """Files that no playlist beside them lists."""
    listed: set[str] = set()
    for path in hls.rglob("*.m3u8"):
        playlist = m3u8.loads(path.read_text())
        base = path.parent.relative_to(hls).as_posix()
        for segment in playlist.segments:
            listed.add(posixpath.join(base, segment.uri))
            if segment.init_section is not None:
                listed.add(posixpath.join(base, segment.init_section.uri))
    files = [p.relative_to(hls).as_posix() for p in hls.rglob("*") if p.is_file()]
    return sorted(n for n in files if not n.endswith(".m3u8") and n not in listed)


async def test_restarts_and_kill_9_leave_only_what_playlists_and_retention_allow(
    tmp_path: Path,
) -> None:
    hls, log = tmp_path / "hls", tmp_path / "gateway.log"
    ts = hls / "live" / "cam" / "ts.m3u8"
    runs: list[Run] = []
    try:
        # 1: publishing until SIGTERM; segments slid out of the window wait for deletion.
        runs.append(first := Run(hls, log))
        await first.start()
        await first.publish("cam")
        uris = await segments_after(ts, 3)
        with trio.fail_after(60):  # the window slid: removed segments wait for their deletion
            while m3u8.loads(ts.read_text()).media_sequence < 3:
                await trio.sleep(0.1)
        assert await first.stop(signal.SIGTERM) == 0
        assert unlisted(hls), "run 1 left nothing unlisted: the test would prove nothing"
        prefix = uris[0].split("-")[0]
        # 2: a restart resumes the stream (the old playlist is replaced); then kill -9.
        runs.append(second := Run(hls, log))
        await second.start()
        await second.publish("cam")
        await segments_after(ts, 1, prefix_not=prefix)
        assert second.proc is not None
        second.proc.send_signal(signal.SIGKILL)
        await second.proc.wait()
        assert second.publisher is not None
        second.publisher.kill()
        await second.publisher.wait()
        # The resumed playlist's old segments wait for their deletion (2 x its 3 s) unless
        # hls_retention passed first on a slow start; either way they must not outlive run 3.
        # 3: a restart without publishers; after hls_retention only ended, empty playlists.
        runs.append(third := Run(hls, log))
        await third.start()
        with trio.fail_after(60):
            while leftovers(hls):
                await trio.sleep(0.2)
        assert await third.stop(signal.SIGTERM) == 0
    finally:
        for run in runs:
            run.kill()
    assert leftovers(hls) == []
    text = log.read_text()
    assert "files no playlist lists (left by an earlier run)" in text
    assert "after hls_retention" in text
    # The numbering goes on across everything (RFC 8216 §6.2.2): the empty playlist keeps it.
    assert m3u8.loads(ts.read_text()).media_sequence > 3
