"""RTMP publishers and players as FFmpeg processes (stream copy: the client side stays cheap)."""

from __future__ import annotations

from pathlib import Path

import trio

from bench.fixtures import ffmpeg_exe
from bench.procs import Procs

# Seconds between publisher spawns: 100 FFmpeg starting at once would measure fork, not the server.
SPAWN_STAGGER = 0.02


def publish_args(fixture: Path, url: str) -> list[str]:
    return [
        ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error",
        "-re", "-stream_loop", "-1", "-i", str(fixture), "-c", "copy", "-f", "flv", url,
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
