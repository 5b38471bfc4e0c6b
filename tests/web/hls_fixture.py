"""A real short HLS stream (FFmpeg: testsrc2 + sine, H.264/AAC in MPEG-TS) fed into a Store as a
live stream: a sliding-window playlist without EXT-X-ENDLIST, one new segment per segment
duration of wall time. Reusable by end-to-end tests that need a player to play something."""

from __future__ import annotations

import math
import subprocess
from dataclasses import dataclass
from pathlib import Path

import imageio_ffmpeg
import trio

from segmenter.store import Store

# Segments visible in the live playlist (RFC 8216 §6.2.2 wants >= 3 target durations).
WINDOW = 6
# Segments in the store before the feeder reports started (a player needs ~3 to start).
PRELOAD = 3
# FFmpeg must finish encoding within this (seconds); 320x240 ultrafast is ~50x real time.
ENCODE_TIMEOUT = 60.0


@dataclass(frozen=True)
class Segment:
    name: str
    duration: float
    data: bytes


def encode_test_stream(
    out_dir: Path, seconds: float = 30.0, *, segment_time: float = 1.0, prefix: str = "s1"
) -> list[Segment]:
    """Encode ``seconds`` of test pattern + tone into TS segments with FFmpeg's hls muxer."""
    out_dir.mkdir(parents=True, exist_ok=True)
    fps = 30
    command = [
        imageio_ffmpeg.get_ffmpeg_exe(),
        "-hide_banner",
        "-loglevel",
        "error",
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=size=320x240:rate={fps}",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=44100",
        "-t",
        str(seconds),
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",  # testsrc2 is RGB: without this x264 picks 4:4:4, which browsers cannot decode
        "-g",
        str(round(fps * segment_time)),
        "-sc_threshold",
        "0",
        "-c:a",
        "aac",
        "-b:a",
        "64k",
        "-f",
        "hls",
        "-hls_time",
        str(segment_time),
        "-hls_list_size",
        "0",
        "-hls_segment_filename",
        str(out_dir / f"{prefix}-%05d.ts"),
        str(out_dir / "source.m3u8"),
    ]
    subprocess.run(command, check=True, timeout=ENCODE_TIMEOUT, capture_output=True)
    segments = []
    duration: float | None = None
    for line in (out_dir / "source.m3u8").read_text().splitlines():
        if line.startswith("#EXTINF:"):
            duration = float(line.removeprefix("#EXTINF:").split(",")[0])
        elif line and not line.startswith("#"):
            assert duration is not None
            segments.append(Segment(line, duration, (out_dir / line).read_bytes()))
            duration = None
    return segments


def live_playlist(segments: list[Segment], first_sequence: int, *, ended: bool = False) -> bytes:
    """A media playlist (RFC 8216 §4.3) listing ``segments``; without ENDLIST it is live."""
    target = max(math.ceil(s.duration) for s in segments)
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:3",
        f"#EXT-X-TARGETDURATION:{target}",
        f"#EXT-X-MEDIA-SEQUENCE:{first_sequence}",
    ]
    for segment in segments:
        lines += [f"#EXTINF:{segment.duration:.3f},", segment.name]
    if ended:
        lines.append("#EXT-X-ENDLIST")
    return ("\n".join(lines) + "\n").encode()


async def feed_live(
    store: Store,
    app: str,
    key: str,
    segments: list[Segment],
    *,
    end: bool = True,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Publish ``segments`` into ``store`` in real time; reports started once PRELOAD are in.
    With ``end``, the last playlist carries EXT-X-ENDLIST (the publisher stopped)."""
    for index, segment in enumerate(segments):
        store.put(f"{app}/{key}/{segment.name}", segment.data)
        first = max(0, index + 1 - WINDOW)
        last = index == len(segments) - 1
        store.put(
            f"{app}/{key}/index.m3u8",
            live_playlist(segments[first : index + 1], first, ended=end and last),
        )
        if index + 1 == PRELOAD or (last and index + 1 < PRELOAD):
            task_status.started()
        if index + 1 >= PRELOAD and not last:
            # A live source produces one segment per segment duration of wall time.
            await trio.sleep(segment.duration)
