"""The distribution operators install (Dockerfile, systemd unit): everything `gateway run` needs
is inside the wheel, hls.js included, so it runs from any directory."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from gateway import native

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
# Seconds the wheel build may take: mypyc compiles the modules of gateway/native.py (~60 s here).
WHEEL_TIMEOUT = 300


def test_wheel_carries_code_templates_static_files_and_hls_js(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True, timeout=WHEEL_TIMEOUT,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("rtmp_hls_gateway-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "gateway/cli.py",
        "gateway/rtmp/connection.py",
        "segmenter/live.py",
        "web/app.py",
        "web/templates/player.html",
        "web/static/player.js",
        "web/node_modules/hls.js/dist/hls.min.js",
    ):
        assert required in names, required
    assert not [n for n in names if n.startswith(("tests/", "bench/"))]
    # The per-message modules ship compiled, beside their sources, with mypyc's shared library.
    for module in native.COMPILED:
        stem = module.replace(".", "/") + "."
        assert [n for n in names if n.startswith(stem) and n.endswith(".so")], module
    assert [n for n in names if n.startswith(f"{native.GROUP}__mypyc.") and n.endswith(".so")]
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "gateway = gateway.cli:main" in text
