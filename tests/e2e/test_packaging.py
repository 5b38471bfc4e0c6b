"""The distribution operators install (Dockerfile, systemd unit): everything `gateway run` needs
is inside the wheel, hls.js included, so it runs from any directory."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import trio

from segmenter import native

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
# Seconds the wheel build may take: mypyc compiles the modules of segmenter/native.py (~60 s here).
WHEEL_TIMEOUT = 300
# Seconds a clean venv may take to install the wheel and its locked dependencies.
INSTALL_TIMEOUT = 300


def _build_wheel(out: Path, **env: str) -> Path:
    # As the image's build stage does: the build requirements already installed, no isolation.
    environ = {k: v for k, v in os.environ.items() if k != native.PURE_ENV}
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(out), str(ROOT)],
        check=True, capture_output=True, timeout=WHEEL_TIMEOUT, env={**environ, **env},
    )  # fmt: skip
    (wheel,) = out.glob("rtmp_hls_gateway-*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build_wheel(tmp_path_factory.mktemp("wheel"))


def test_wheel_carries_code_templates_static_files_and_hls_js(wheel: Path) -> None:
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


def test_pure_switch_builds_a_wheel_without_compiled_modules(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path, **{native.PURE_ENV: "1"})
    names = zipfile.ZipFile(wheel).namelist()
    assert "segmenter/cutter.py" in names
    assert [n for n in names if n.endswith(".so")] == []


# Environment of the installed gateway: none of the caller's settings or Python paths.
CLEAN_ENV = {
    k: v
    for k, v in os.environ.items()
    if not k.startswith(("GATEWAY_", "PYTHON")) and k != native.PURE_ENV
}


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The runtime stage of deploy/Dockerfile: a fresh venv, the wheel and the locked
    dependencies, nothing of the checkout (run from elsewhere, no PYTHONPATH)."""
    venv = tmp_path_factory.mktemp("clean") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run(
        [str(venv / "bin/pip"), "install", "-q", "-c", str(ROOT / "requirements.lock"),
         str(wheel)],
        check=True, capture_output=True, timeout=INSTALL_TIMEOUT, cwd=venv, env=CLEAN_ENV,
    )  # fmt: skip
    return venv


def test_clean_venv_runs_the_entry_point_and_the_compiled_modules(installed: Path) -> None:
    out = subprocess.run(
        [str(installed / "bin/gateway"), "--help"],
        capture_output=True, text=True, timeout=60, cwd=installed, env=CLEAN_ENV,
    )  # fmt: skip
    assert out.returncode == 0 and "health" in out.stdout, out.stderr
    probe = (
        "from segmenter import native; from gateway import cli; "
        "print(native.interpreted(), cli.__file__)"
    )
    out = subprocess.run(
        [str(installed / "bin/python"), "-c", probe],
        capture_output=True, text=True, timeout=60, cwd=installed, env=CLEAN_ENV, check=True,
    )  # fmt: skip
    interpreted, path = out.stdout.split()
    assert interpreted == "[]"
    assert path.startswith(str(installed))


async def test_image_health_check_passes_against_the_image_command(
    installed: Path, tmp_path: Path
) -> None:
    # HEALTHCHECK and CMD of deploy/Dockerfile, on the clean install, with the example config
    # moved to free ports: the check asks the port the file gives.
    gateway = str(installed / "bin/gateway")
    config = tmp_path / "gateway.toml"
    config.write_text(
        (ROOT / "deploy" / "gateway.example.toml")
        .read_text()
        .replace('host = "0.0.0.0"', 'host = "127.0.0.1"')
        .replace("http_port = 8080", f"http_port = {_free_port()}")
        .replace("rtmp_port = 1935", f"rtmp_port = {_free_port()}")
    )
    health = [gateway, "health", "--config", str(config)]
    before = await trio.run_process(health, capture_stderr=True, check=False, env=CLEAN_ENV)
    assert before.returncode == 1  # nothing listens yet
    log = tmp_path / "gateway.log"
    with log.open("wb") as sink:
        proc = await trio.lowlevel.open_process(
            [gateway, "run", "--config", str(config)],
            cwd=tmp_path, env=CLEAN_ENV, stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            with trio.fail_after(30):
                while b"gateway listening" not in log.read_bytes():
                    await trio.sleep(0.1)
            with trio.fail_after(30):
                during = await trio.run_process(
                    health, capture_stderr=True, check=False, env=CLEAN_ENV
                )
            proc.send_signal(signal.SIGTERM)
            with trio.fail_after(15):
                code = await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
    text = log.read_text()
    assert during.returncode == 0, during.stderr
    assert code == 0, text
    assert "pure Python" not in text and "older than the source" not in text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
