"""Media fixtures for the publishers, generated once with FFmpeg (imageio-ffmpeg) and reused.

    .venv/bin/python -m bench.fixtures            # all fixtures into bench/fixtures/
    .venv/bin/python -m bench.fixtures 720p30     # one of them

Publishers then send them with ``-re -stream_loop -1 -c copy``, so a publisher costs a demuxer, not
an encoder. The video carries temporal noise so x264 really spends the bitrate asked for (a plain
test pattern compresses to almost nothing and would flatter the server).
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from dataclasses import dataclass, replace
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
    clock: bool = False  # a frame-number strip along the top (see CLOCK_BLOCKS), for `glass`

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


# The clock strip: CLOCK_BLOCKS blocks side by side across the top of the picture, each
# width/CLOCK_BLOCKS wide and height/CLOCK_HEIGHT_DIV high, white (Y 235) for a 1 bit and black
# (Y 16) for a 0 bit, least significant first: bits 0-11 the frame number within the fixture,
# 12-14 that number mod 7 (a check), 15 always 1. bench/browser.py reads it back from the <video>.
CLOCK_BLOCKS = 16
CLOCK_HEIGHT_DIV = 15
CLOCK_FRAME_BITS = 12
CLOCK_CHECK_MOD = 7


def clock_code(frame: int) -> int:
    """The 16-bit value the strip of fixture frame ``frame`` shows."""
    return (frame % (1 << CLOCK_FRAME_BITS)) | (frame % CLOCK_CHECK_MOD) << 12 | 1 << 15


def clock_frame(code: int) -> int | None:
    """The frame number a strip reading ``code`` shows, None for a misread."""
    frame = code & ((1 << CLOCK_FRAME_BITS) - 1)
    return frame if code == clock_code(frame) else None


def with_clock(f: Fixture) -> Fixture:
    """``f`` with the clock strip, named ``<name>-clock`` (generated once, like the others)."""
    if f.size is None:
        raise ValueError(f"fixture {f.name} has no video to carry a clock")
    frames = round(f.seconds * f.rate)
    if frames > 1 << CLOCK_FRAME_BITS:
        raise ValueError(f"fixture {f.name}: {frames} frames do not fit the clock strip")
    return replace(f, name=f"{f.name}-clock", clock=True)


@dataclass(frozen=True)
class ClockInfo:
    """What `glass` needs to know of a clock fixture to map a frame number to a keyframe."""

    rate: float  # frames per second
    gop: int  # frames from one keyframe to the next
    frames: int  # video frames in one pass of the file (the publisher loops it)

    @property
    def keyframes_per_loop(self) -> int:
        return self.frames // self.gop


def probe_clock(path: Path) -> ClockInfo:
    """Frame rate, GOP and length of a clock fixture, from its packets; ValueError if it has
    no video, an irregular GOP or no clock strip (its first frame must read 0)."""
    import av  # the bench's dependency; not needed to encode fixtures

    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError(f"{path}: no video")
        stream = container.streams.video[0]
        rate = float(stream.average_rate or stream.guessed_rate or 0)
        keys, frames = [], 0
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            if packet.is_keyframe:
                keys.append(frames)
            frames += 1
    with av.open(str(path)) as container:
        first = next(container.decode(video=0)).reformat(format="gray")
    plane = first.planes[0]
    data, line = bytes(plane), plane.line_size
    block = first.width // CLOCK_BLOCKS
    row = max(8, first.height // CLOCK_HEIGHT_DIV) // 2
    code = sum(
        1 << b for b in range(CLOCK_BLOCKS) if data[row * line + b * block + block // 2] > 128
    )
    if clock_frame(code) != 0:
        raise ValueError(f"{path}: no clock strip (first frame reads {code:#06x})")
    gops = {b - a for a, b in itertools.pairwise(keys)}
    if len(keys) < 2 or len(gops) != 1 or frames % keys[1] or not rate:
        raise ValueError(f"{path}: keyframes at {keys[:5]}... of {frames} frames: irregular GOP")
    return ClockInfo(rate, keys[1], frames)


def clock_name(name: str) -> str:
    """The clock variant of fixture ``name`` (``720p30`` -> ``720p30-clock``); a path or a
    name that already is one is returned as it is."""
    return f"{name}-clock" if name in FIXTURES and FIXTURES[name].size is not None else name


def _clock_filter(f: Fixture) -> str:
    assert f.size is not None
    width, height = (int(v) for v in f.size.split("x"))
    block, strip = width // CLOCK_BLOCKS, max(8, height // CLOCK_HEIGHT_DIV)
    code = f"(mod(N,{1 << CLOCK_FRAME_BITS})+4096*mod(N,{CLOCK_CHECK_MOD})+32768)"
    lum = f"if(bitand(floor({code}/pow(2,floor(X/{block}))),1),235,16)"
    return (
        f"color=c=black:size={block * CLOCK_BLOCKS}x{strip}:rate={f.rate},format=yuv420p,"
        f"geq=lum='{lum}':cb=128:cr=128[clock];[base][clock]overlay=0:0:shortest=1[v]"
    )


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
    if f.clock:
        args += ["-filter_complex", f"[0:v]null[base];{_clock_filter(f)}", "-map", "[v]"]
        args += ["-map", "1:a"]
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
    """The path of fixture ``name`` (a FIXTURES key, ``-clock`` suffix for the variant with the
    clock strip) or of an existing .flv file."""
    if name in FIXTURES:
        return generate(FIXTURES[name])
    base = name.removesuffix("-clock")
    if name.endswith("-clock") and base in FIXTURES:
        return generate(with_clock(FIXTURES[base]))
    path = Path(name)
    if not path.is_file():
        raise SystemExit(f"fixture {name!r}: neither one of {sorted(FIXTURES)} nor a file")
    return path


def main(argv: list[str]) -> None:
    for name in argv or list(FIXTURES):
        path = ensure(name)
        print(f"{path}: {path.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main(sys.argv[1:])
