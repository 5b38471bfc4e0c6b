"""Session-wide real media fixtures (made once per test session with imageio-ffmpeg)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.segmenter.media import av_args, make_flv


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def av_flv(media_dir: Path) -> bytes:
    """6 s of H.264 (320x240, 30 fps, keyframe every 1 s, 2 B-frames) + AAC 44.1 kHz mono."""
    return make_flv(media_dir / "av.flv", *av_args(6, gop=30))


@pytest.fixture(scope="session")
def long_gop_flv(media_dir: Path) -> bytes:
    """8 s with a keyframe every 5 s (a GOP longer than a 3 s ceiling)."""
    return make_flv(media_dir / "long_gop.flv", *av_args(8, gop=150))


@pytest.fixture(scope="session")
def small_flv(media_dir: Path) -> bytes:
    """2 s at another resolution (160x120): a codec-parameter change when fed after av_flv."""
    return make_flv(media_dir / "small.flv", *av_args(2, gop=30, size="160x120"))


@pytest.fixture(scope="session")
def hevc_flv(media_dir: Path) -> bytes:
    """H.265 + AAC: FFmpeg writes HEVC as Enhanced RTMP (FourCC hvc1)."""
    return make_flv(
        media_dir / "hevc.flv",
        *("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10"),
        *("-f", "lavfi", "-i", "sine=sample_rate=44100"),
        *("-c:v", "libx265", "-x265-params", "log-level=error", "-c:a", "aac", "-t", "1"),
    )


@pytest.fixture(scope="session")
def high_cropped_flv(media_dir: Path) -> bytes:
    """High profile with custom scaling matrices (cqm=jvt) and cropping (318x178), 25 fps."""
    return make_flv(
        media_dir / "high.flv",
        *("-f", "lavfi", "-i", "testsrc2=size=318x178:rate=25", "-frames:v", "3"),
        *("-c:v", "libx264", "-profile:v", "high", "-x264-params", "cqm=jvt"),
    )
