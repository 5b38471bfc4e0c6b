"""Real clients for end-to-end tests: FFmpeg 9 from imageio-ffmpeg and Debian's FFmpeg 5.1.

Nothing here skips: a missing client is a test failure with a message saying how to install it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import imageio_ffmpeg
import trio

APT_FFMPEG = "/usr/bin/ffmpeg"
APT_FFPROBE = "/usr/bin/ffprobe"


def imageio_ffmpeg_exe() -> str:
    return imageio_ffmpeg.get_ffmpeg_exe()


def apt_ffmpeg_exe() -> str:
    if not Path(APT_FFMPEG).exists():
        raise AssertionError("Debian's ffmpeg is missing: run deploy/system-packages.sh")
    return APT_FFMPEG


def apt_ffprobe_exe() -> str:
    path = shutil.which("ffprobe") or APT_FFPROBE
    if not Path(path).exists():
        raise AssertionError("ffprobe is missing: run deploy/system-packages.sh")
    return path


def publish_args(
    exe: str,
    url: str,
    *,
    seconds: float,
    size: str = "320x240",
    rate: int = 30,
    gop: int = 30,
    ts_offset: float | None = None,
    audio: bool = True,
    video: bool = True,
    realtime: bool = True,
) -> list[str]:
    """A real encoder: testsrc2 + sine to H.264/AAC, published over RTMP."""
    args = [exe, "-hide_banner", "-nostdin", "-loglevel", "error"]
    if video:
        args += [
            *(["-re"] if realtime else []),
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=size={size}:rate={rate}",
        ]
    if audio:
        args += [
            *(["-re"] if realtime else []),
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=44100",
        ]
    if video:
        args += ["-c:v", "libx264", "-preset", "ultrafast", "-g", str(gop), "-pix_fmt", "yuv420p"]
    if audio:
        args += ["-c:a", "aac", "-b:a", "64k"]
    args += ["-t", str(seconds)]
    if ts_offset is not None:
        args += ["-output_ts_offset", str(ts_offset)]
    args += ["-f", "flv", url]
    return args


async def run_client(args: list[str], *, timeout: float) -> subprocess.CompletedProcess[bytes]:
    """Run a client to completion within ``timeout`` seconds, capturing its output."""
    with trio.fail_after(timeout):
        return await trio.run_process(args, capture_stdout=True, capture_stderr=True, check=False)
