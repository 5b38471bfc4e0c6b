"""Real media for the segmenter tests: FLV files made by imageio-ffmpeg's FFmpeg, plus checks."""

from __future__ import annotations

import io
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import av
import imageio_ffmpeg

from segmenter.flv import FlvTag, TagType, iter_flv_file
from segmenter.store import Store

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
FFMPEG_TIMEOUT = 60  # seconds; generating a few seconds of 320x240 takes well under one


def make_flv(path: Path, *args: str) -> bytes:
    """Run FFmpeg with lavfi sources and return the FLV it wrote to ``path``."""
    cmd = [FFMPEG, "-v", "error", "-y", *args, "-f", "flv", str(path)]
    subprocess.run(cmd, check=True, timeout=FFMPEG_TIMEOUT, capture_output=True)
    return path.read_bytes()


def av_args(seconds: float, gop: int, size: str = "320x240", rate: int = 30) -> list[str]:
    return [
        *("-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}"),
        *("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"),
        *("-c:v", "libx264", "-preset", "ultrafast", "-g", str(gop), "-bf", "2"),
        *("-c:a", "aac", "-t", str(seconds)),
    ]


def tags(data: bytes, *, drop: Iterable[TagType] = ()) -> list[FlvTag]:
    skip = set(drop)
    return [t for t in iter_flv_file(data) if t.type not in skip]


def flv_file(items: Iterable[FlvTag]) -> bytes:
    """Write tags as an FLV file (FLV v10.1 §E.2, §E.3), e.g. after filtering some out."""
    out = bytearray(b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00")
    for t in items:
        ts = t.timestamp & 0xFFFFFFFF
        header = bytes((t.type,)) + len(t.body).to_bytes(3, "big")
        header += (ts & 0xFFFFFF).to_bytes(3, "big") + bytes((ts >> 24,)) + b"\0\0\0"
        out += header + t.body + (len(header) + len(t.body)).to_bytes(4, "big")
    return bytes(out)


def shifted(items: list[FlvTag], offset: int) -> list[FlvTag]:
    return [FlvTag(t.type, t.timestamp + offset, t.body) for t in items]


@dataclass
class Decoded:
    video_frames: int = 0
    audio_frames: int = 0
    first_video_key: bool | None = None
    video_pts: list[float] = field(default_factory=list)  # seconds, decode order
    audio_pts: list[float] = field(default_factory=list)


def decode(segment: bytes) -> Decoded:
    """Demux and DECODE a TS segment alone; any FFmpeg error raises."""
    out = Decoded()
    with av.open(io.BytesIO(segment), "r", format="mpegts") as container:
        for packet in container.demux():
            if packet.size == 0 or packet.pts is None:
                continue
            kind = packet.stream.type
            seconds = float(packet.pts * packet.time_base)
            if kind == "video":
                if out.first_video_key is None:
                    out.first_video_key = packet.is_keyframe
                out.video_pts.append(seconds)
                out.video_frames += len(packet.decode())
            elif kind == "audio":
                out.audio_pts.append(seconds)
                out.audio_frames += len(packet.decode())
        # Drain the decoders (B-frames leave pictures behind).
        for stream in container.streams.video:
            out.video_frames += len(stream.codec_context.decode(None))
    return out


def dump_store(store: Store, root: Path) -> None:
    for name in store.names():
        data = store.get(name)
        assert data is not None
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def ffmpeg_read_warnings(playlist: Path) -> str:
    """Read a playlist with FFmpeg's HLS demuxer, decoding everything; return its stderr."""
    cmd = [FFMPEG, "-nostdin", "-v", "warning", "-i", str(playlist), "-f", "null", "-"]
    done = subprocess.run(cmd, timeout=FFMPEG_TIMEOUT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stderr
