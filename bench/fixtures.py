"""Media fixtures for the publishers, generated once with FFmpeg (imageio-ffmpeg) and reused.

    .venv/bin/python -m bench.fixtures            # all fixtures into bench/fixtures/
    .venv/bin/python -m bench.fixtures 720p30     # one of them

Publishers then send them with ``-re -stream_loop -1 -c copy``, so a publisher costs a demuxer, not
an encoder. The video carries temporal noise so x264 really spends the bitrate asked for (a plain
test pattern compresses to almost nothing and would flatter the server).
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import imageio_ffmpeg

FIXTURE_DIR = Path(__file__).resolve().parent / "fixtures"
# Seconds of media per fixture: long enough that the loop point is rare.
DEFAULT_SECONDS = 60.0
# Seconds an encode may take before it is abandoned (1080p60 for 60 s on 2 cores takes ~2 min).
ENCODE_TIMEOUT = 900.0


@dataclass(frozen=True)
class Fixture:
    name: str
    size: str | None  # WxH, None for audio only
    rate: int = 30
    video_kbps: int = 2500
    audio_kbps: int = 128
    keyframe_seconds: float = 2.0
    seconds: float = DEFAULT_SECONDS
    noise: int = 12  # temporal noise strength (FFmpeg noise filter alls)

    def path(self, directory: Path = FIXTURE_DIR) -> Path:
        return directory / f"{self.name}.flv"


FIXTURES: dict[str, Fixture] = {
    f.name: f
    for f in (
        Fixture("720p30", "1280x720", 30, 2500),
        Fixture("1080p60", "1920x1080", 60, 6000),
        Fixture("audio", None, audio_kbps=128),
    )
}


def ffmpeg_exe() -> str:
    return str(imageio_ffmpeg.get_ffmpeg_exe())


def encode_args(f: Fixture, out: Path) -> list[str]:
    args = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
    if f.size is not None:
        src = f"testsrc2=size={f.size}:rate={f.rate}"
        if f.noise:
            src += f",noise=alls={f.noise}:allf=t"
        args += ["-f", "lavfi", "-i", src]
    args += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"]
    if f.size is not None:
        gop = round(f.rate * f.keyframe_seconds)
        kbps = f.video_kbps
        args += [
            "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
            # Fixed GOP, no scene cuts: a keyframe exactly every keyframe_seconds.
            "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0",
            "-b:v", f"{kbps}k", "-maxrate", f"{kbps}k", "-bufsize", f"{2 * kbps}k",
        ]  # fmt: skip
    args += ["-c:a", "aac", "-b:a", f"{f.audio_kbps}k", "-t", str(f.seconds), "-f", "flv", str(out)]
    return args


def generate(f: Fixture, directory: Path = FIXTURE_DIR, *, force: bool = False) -> Path:
    """Encode ``f`` into ``directory`` unless it is already there; return its path."""
    out = f.path(directory)
    if out.exists() and out.stat().st_size > 0 and not force:
        return out
    directory.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.flv")
    subprocess.run(encode_args(f, tmp), check=True, timeout=ENCODE_TIMEOUT)
    tmp.replace(out)
    return out


def ensure(name: str) -> Path:
    """The path of fixture ``name`` (a FIXTURES key) or of an existing .flv file."""
    if name in FIXTURES:
        return generate(FIXTURES[name])
    path = Path(name)
    if not path.is_file():
        raise SystemExit(f"fixture {name!r}: neither one of {sorted(FIXTURES)} nor a file")
    return path


def main(argv: list[str]) -> None:
    for name in argv or list(FIXTURES):
        path = generate(FIXTURES[name])
        print(f"{path}: {path.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main(sys.argv[1:])
