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
    return str(imageio_ffmpeg.get_ffmpeg_exe())


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
    ca_file: str | None = None,
) -> list[str]:
    """A real encoder: testsrc2 + sine to H.264/AAC, published over RTMP (rtmps:// URLs: the
    server's certificate verified against ``ca_file``)."""
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
    args += ["-f", "flv", *tls_args(ca_file), url]
    return args


def tls_args(ca_file: str | None) -> list[str]:
    """FFmpeg's tls protocol options, which rtmps:// passes on: verify the server against
    ``ca_file`` (FFmpeg 9 verifies by default, 5.1 only with tls_verify; both take ca_file)."""
    return ["-tls_verify", "1", "-ca_file", ca_file] if ca_file is not None else []


async def run_client(args: list[str], *, timeout: float) -> subprocess.CompletedProcess[bytes]:
    """Run a client to completion within ``timeout`` seconds, capturing its output."""
    with trio.fail_after(timeout):
        return await trio.run_process(args, capture_stdout=True, capture_stderr=True, check=False)


def gst_publish_args(url: str, *, seconds: float, sink: str = "rtmp2sink") -> list[str]:
    """GStreamer as a publisher: x264 + AAC in FLV over rtmp2sink (the third real encoder), or
    ``sink="rtmpsink"`` (the librtmp-based element)."""
    frames = int(seconds * 30)
    return [
        "gst-launch-1.0", "-q", "-e",
        "videotestsrc", "is-live=true", f"num-buffers={frames}", "!",
        "video/x-raw,width=320,height=240,framerate=30/1", "!",
        "x264enc", "tune=zerolatency", "key-int-max=30", "speed-preset=ultrafast", "!",
        "h264parse", "!", "flvmux", "name=m", "streamable=true", "!",
        sink, f"location={url}",
        "audiotestsrc", "is-live=true", f"num-buffers={int(seconds * 44100 / 1024)}", "!",
        "audioconvert", "!", "avenc_aac", "!", "aacparse", "!", "m.",
    ]  # fmt: skip


def play_args(
    client: str, url: str, out: str, *, seconds: float, ca_file: str | None = None
) -> list[str]:
    """A real RTMP player recording ``seconds`` of a live stream to an FLV file (FFmpeg only:
    rtmps:// verified against ``ca_file``)."""
    if client == "rtmpdump":
        return ["rtmpdump", "-q", "-r", url, "--live", "-B", str(seconds), "-o", out]
    if client == "gstreamer":
        return [
            "timeout", "-s", "INT", str(seconds + 1),
            "gst-launch-1.0", "-q", "-e", "rtmp2src", f"location={url}", "!",
            "filesink", f"location={out}",
        ]  # fmt: skip
    exe = imageio_ffmpeg_exe() if client == "ffmpeg-9" else apt_ffmpeg_exe()
    return [exe, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *tls_args(ca_file),
            "-i", url, "-t", str(seconds), "-c", "copy", "-f", "flv", out]  # fmt: skip
