"""A target is any server with an RTMP ingest URL and an HLS playlist URL per stream key.

``ours`` is ``gateway run`` and ``nginx`` is nginx-rtmp, both started here on loopback with the same
HLS settings and both writing HLS files to a temp dir (so the bench can watch segments appear
without loading the server's HTTP side).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from bench import nginx
from bench.cpus import CpuPlan
from bench.procs import Procs, descendants, free_port, wait_tcp

TARGETS = ("ours", "nginx")
LABELS = {"ours": "ours", "nginx": "nginx-rtmp"}
APP = "live"
# Our HLS formats when GATEWAY_HLS_FORMATS does not say (the gateway's default).
DEFAULT_FORMATS = ("ts", "cmaf")
# Seconds `gateway run --help` may take (the layout probe).
HELP_TIMEOUT = 60.0


@dataclass
class Target:
    name: str
    rtmp_port: int
    http_port: int
    hls_dir: Path  # playlists at <hls_dir>/<app>/<key>/<playlist>
    target_duration: float
    proc: trio.Process
    log: Path
    # HLS formats served ("ts", "cmaf"); split: index.m3u8 is a multivariant playlist naming
    # ts.m3u8 / cmaf.m3u8 (ours with hls_formats), else index.m3u8 is the TS media playlist.
    formats: tuple[str, ...] = ("ts",)
    split: bool = False

    @property
    def label(self) -> str:
        return LABELS.get(self.name, self.name)

    def rtmp_url(self, key: str) -> str:
        return f"rtmp://127.0.0.1:{self.rtmp_port}/{APP}/{key}"

    def http_base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def media_playlist(self) -> str:
        """The media playlist with the segments: TS where served (what nginx-rtmp serves too)."""
        if not self.split:
            return "index.m3u8"
        return "ts.m3u8" if "ts" in self.formats else "cmaf.m3u8"

    @property
    def ts_playlist(self) -> str | None:
        if "ts" not in self.formats:
            return None
        return "ts.m3u8" if self.split else "index.m3u8"

    @property
    def ll_playlist(self) -> str | None:
        """The Low-Latency HLS (fMP4 parts) media playlist, None where there is none."""
        return "cmaf.m3u8" if self.split and "cmaf" in self.formats else None

    def playlist_url(self, key: str, file: str | None = None) -> str:
        """URL of ``file`` (default: the media playlist) of stream ``key``."""
        return f"{self.http_base()}/{APP}/{key}/{file or self.media_playlist}"

    def playlist_path(self, key: str, file: str | None = None) -> Path:
        return self.hls_dir / APP / key / (file or self.media_playlist)

    def pids(self) -> list[int]:
        """The server process and every process below it (nginx: master + workers; ours with
        ``workers`` > 1: supervisor + worker processes). Read at each call: a worker the
        supervisor starts again has a new pid (the dead one's CPU is lost to the sample)."""
        return [self.proc.pid, *descendants(self.proc.pid)]

    def alive(self) -> bool:
        return self.proc.returncode is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def gateway_command() -> list[str]:
    script = Path(sys.executable).parent / "gateway"
    if script.exists():
        return [str(script)]
    found = shutil.which("gateway")
    return [found] if found else [sys.executable, "-m", "gateway.cli"]


@functools.cache
def ours_split() -> bool:
    """Whether our gateway has the ``hls_formats`` setting (and so the multivariant index.m3u8
    with ts.m3u8 and cmaf.m3u8), read from ``gateway run --help``, which lists every setting."""
    proc = subprocess.run(
        [*gateway_command(), "run", "--help"],
        capture_output=True, text=True, timeout=HELP_TIMEOUT, check=False,
    )  # fmt: skip
    return "--hls-formats" in proc.stdout


def parse_formats(text: str | None) -> tuple[str, ...]:
    """``"ts,cmaf"`` -> ("ts", "cmaf"); None or empty -> the gateway's default."""
    if not text:
        return DEFAULT_FORMATS
    formats = tuple(f.strip().lower() for f in text.split(",") if f.strip())
    unknown = set(formats) - {"ts", "cmaf"}
    if unknown or not formats:
        raise ValueError(f"HLS formats {text!r}: each must be ts or cmaf")
    return formats


@asynccontextmanager
async def open_target(
    name: str,
    procs: Procs,
    workdir: Path,
    *,
    target_duration: float = 2.0,
    nginx_workers: int = nginx.DEFAULT_WORKERS,
    cpus: CpuPlan | None = None,
    formats: str | None = None,
    settings: dict[str, str] | None = None,
    nginx_directives: str = "",
    disk: bool = True,
) -> AsyncIterator[Target]:
    """Start target ``name`` on free loopback ports (on ``cpus.server`` if given); stop it when
    the block ends. ``formats`` (ours): GATEWAY_HLS_FORMATS for this server, e.g. "ts" or
    "ts,cmaf"; None leaves the environment's value (or the gateway's default). ``settings``
    (ours): more GATEWAY_* variables for this server; ``nginx_directives``: lines added to
    nginx's ``application live`` block. ``disk=False`` (ours): no ``--hls-dir``, so the store
    is the memory store, or the one ``settings`` choose (GATEWAY_HLS_S3_URL)."""
    rtmp_port, http_port = free_port(), free_port()
    env: dict[str, str] = {}
    if name == "ours" and settings:
        env.update(settings)
    served: tuple[str, ...] = ("ts",)
    split = False
    directory = workdir / name
    directory.mkdir(parents=True, exist_ok=True)
    log = directory / "server.log"
    if name == "ours":
        hls_dir = directory / "hls"
        args = [
            *gateway_command(), "run", "--host", "127.0.0.1",
            "--rtmp-port", str(rtmp_port), "--http-port", str(http_port),
            *(["--hls-dir", str(hls_dir)] if disk else []),
            "--hls-target-duration", f"{target_duration:g}",
            "--log-level", "warning",
            # All bench load comes from one loopback address: per-address limits off, as
            # nginx-rtmp has none.
            "--max-connections-per-ip", "0", "--http-max-requests-per-ip", "0",
        ]  # fmt: skip
        split = ours_split()
        if split:
            if formats is not None:
                env["GATEWAY_HLS_FORMATS"] = formats
            served = parse_formats(formats or os.environ.get("GATEWAY_HLS_FORMATS"))
        elif formats is not None and parse_formats(formats) != ("ts",):
            raise RuntimeError(f"this gateway has no hls_formats setting (asked for {formats})")
    elif name == "nginx":
        nginx.ensure_installed()
        hls_dir = directory / "hls"
        conf = nginx.write_conf(
            directory,
            rtmp_port=rtmp_port,
            http_port=http_port,
            fragment=target_duration,
            playlist=6 * target_duration,
            workers=nginx_workers,
            directives=nginx_directives,
        )
        args = nginx.command(directory, conf)
    else:
        raise ValueError(f"unknown target {name!r}")
    hls_dir.mkdir(parents=True, exist_ok=True)
    if cpus is not None:
        args = [*cpus.server_prefix(), *args]
    proc = await procs.start(args, log=log, env=env)
    target = Target(name, rtmp_port, http_port, hls_dir, target_duration, proc, log, served, split)
    try:
        try:
            await wait_tcp(rtmp_port, proc)
            await wait_tcp(http_port, proc)
        except (RuntimeError, trio.TooSlowError) as exc:
            raise RuntimeError(f"{target.label} did not start: {exc}\n{target.log_tail()}") from exc
        yield target
    finally:
        with trio.CancelScope(shield=True):
            await procs.stop(proc)


RunOne = Callable[[str, Any, Path, Path], Awaitable[dict[str, Any]]]


async def run_each(
    run_one: RunOne, targets: list[str], opts: Any, fixture: Path, workdir: Path
) -> list[dict[str, Any]]:
    """Run a scenario against each target in turn; a target that fails to start or to produce
    a stream is reported with its error instead of ending the whole run."""
    runs = []
    for name in targets:
        try:
            runs.append(await run_one(name, opts, fixture, workdir))
        except RuntimeError as exc:
            runs.append({"target": name, "error": str(exc)})
    return runs
