"""RTMP publishers and players as FFmpeg processes (stream copy: the client side stays cheap)."""

from __future__ import annotations

from pathlib import Path

import trio

from bench.fixtures import ffmpeg_exe
from bench.hls import FileWatcher, PlaylistTracker
from bench.procs import Procs
from bench.targets import Target

# Seconds between publisher spawns: 100 FFmpeg starting at once would measure fork, not the server.
SPAWN_STAGGER = 0.02


def publish_args(fixture: Path, url: str, *, nodelay: bool = False) -> list[str]:
    """FFmpeg publishing ``fixture`` in a loop; ``nodelay``: with TCP_NODELAY, as OBS sends."""
    return [
        ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error",
        "-re", "-stream_loop", "-1", "-i", str(fixture), "-c", "copy", "-f", "flv",
        *(["-tcp_nodelay", "1"] if nodelay else []), url,
    ]  # fmt: skip


def play_args(url: str) -> list[str]:
    return [
        ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error",
        "-i", url, "-c", "copy", "-f", "null", "-",
    ]  # fmt: skip


async def start_many(
    procs: Procs, arg_lists: list[list[str]], logdir: Path, prefix: str
) -> list[trio.Process]:
    await trio.Path(logdir).mkdir(parents=True, exist_ok=True)
    started = []
    for i, args in enumerate(arg_lists):
        started.append(await procs.start(args, log=logdir / f"{prefix}{i}.log"))
        await trio.sleep(SPAWN_STAGGER)
    return started


def failed(processes: list[trio.Process]) -> int:
    """How many exited (a live publisher or player never exits on its own)."""
    return sum(1 for p in processes if p.returncode is not None)


def first_error(logdir: Path, prefix: str) -> str | None:
    for log in sorted(logdir.glob(f"{prefix}*.log")):
        text = log.read_text(errors="replace").strip()
        if text:
            return f"{log.name}: {text.splitlines()[-1][:300]}"
    return None


# Seconds one publisher may take to get a first segment listed.
FIRST_SEGMENT_TIMEOUT = 30.0
# Seconds between playlist file polls while waiting or tracking cadence.
WATCH_INTERVAL = 0.1


async def publish_one(
    procs: Procs, target: Target, fixture: Path, key: str, logdir: Path, url: str | None = None
) -> tuple[trio.Process, FileWatcher, PlaylistTracker]:
    """Start one publisher and wait until its playlist lists a segment (RuntimeError if never).
    ``url``: publish there instead of the target's RTMP URL (a proxy in front of it)."""
    watcher = FileWatcher(target.playlist_path(key))
    tracker = PlaylistTracker(target.target_duration)
    args = publish_args(fixture, url or target.rtmp_url(key))
    (pub,) = await start_many(procs, [args], logdir, key)
    with trio.move_on_after(FIRST_SEGMENT_TIMEOUT):
        while tracker.first_at is None and pub.returncode is None and target.alive():
            watch(watcher, tracker)
            await trio.sleep(WATCH_INTERVAL)
    if tracker.first_at is None:
        err = first_error(logdir, key) or target.log_tail()
        raise RuntimeError(f"{target.label}: no segment for {key}: {err}")
    return pub, watcher, tracker


def watch(watcher: FileWatcher, tracker: PlaylistTracker) -> None:
    text = watcher.read_if_changed()
    if text is not None:
        tracker.update(text, trio.current_time())


async def watch_forever(watcher: FileWatcher, tracker: PlaylistTracker) -> None:
    """Track segment arrivals until cancelled (run it in a nursery beside the load)."""
    while True:
        watch(watcher, tracker)
        await trio.sleep(WATCH_INTERVAL)
