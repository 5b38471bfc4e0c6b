"""`gateway` as operators run it: a real process, real signals, real clients."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import m3u8
import pytest
import trio

from tests.clients import imageio_ffmpeg_exe, publish_args

pytestmark = pytest.mark.e2e
GATEWAY = [sys.executable, "-m", "gateway.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_version_and_help() -> None:
    out = subprocess.run([*GATEWAY, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("gateway ")
    helptext = subprocess.run([*GATEWAY, "run", "--help"], capture_output=True, text=True).stdout
    for flag in (
        "--host",
        "--rtmp-port",
        "--http-port",
        "--hls-dir",
        "--config",
        "--max-connections",
    ):
        assert flag in helptext


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--rtmp-port", "70000"], {}, "rtmp_port (from --rtmp-port): 70000 is above the maximum"),
        ([], {"GATEWAY_HLS_WINDOW": "many"}, "hls_window (from environment GATEWAY_HLS_WINDOW)"),
        ([], {"GATEWAY_NO_SUCH": "1"}, "no_such (from environment GATEWAY_NO_SUCH): unknown"),
        (["--config", "/nonexistent.toml"], {}, "config file /nonexistent.toml"),
    ],
)
def test_bad_configuration_names_the_key(
    args: list[str], env: dict[str, str], message: str
) -> None:
    out = subprocess.run(
        [*GATEWAY, "run", *args], capture_output=True, text=True, env={"PATH": "/usr/bin", **env}
    )
    assert out.returncode == 2
    assert message in out.stderr, out.stderr


def test_unwritable_hls_dir_refuses_to_start(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    target = tmp_path / "file" / "hls"
    out = subprocess.run(
        [*GATEWAY, "run", "--hls-dir", str(target)], capture_output=True, text=True
    )
    assert out.returncode == 2
    assert f"gateway: configuration error: hls_dir: cannot write {target}: Not a directory" in (
        out.stderr
    )


def test_config_file_key_errors_name_file_and_key(tmp_path: Path) -> None:
    config = tmp_path / "g.toml"
    config.write_text("[hls]\nwindow = 1\n")
    out = subprocess.run([*GATEWAY, "run", "--config", str(config)], capture_output=True, text=True)
    assert out.returncode == 2 and f"hls_window (from {config}): 1 is below" in out.stderr


async def test_sigterm_while_publishing_ends_playlist_and_exits_zero(tmp_path: Path) -> None:
    rtmp, http = free_port(), free_port()
    hls = tmp_path / "hls"
    log = tmp_path / "gateway.log"
    with log.open("wb") as sink:
        proc = await trio.lowlevel.open_process(
            [
                *GATEWAY,
                "run",
                "--host",
                "127.0.0.1",
                "--rtmp-port",
                str(rtmp),
                "--http-port",
                str(http),
                "--hls-dir",
                str(hls),
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        try:
            with trio.fail_after(15):
                while b"gateway listening" not in log.read_bytes():
                    await trio.sleep(0.1)
            url = f"rtmp://127.0.0.1:{rtmp}/live/term"
            publisher = await trio.lowlevel.open_process(
                publish_args(imageio_ffmpeg_exe(), url, seconds=30),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            index = hls / "live" / "term" / "ts.m3u8"
            with trio.fail_after(20):
                while not index.exists() or len(m3u8.loads(index.read_text()).segments) < 2:
                    await trio.sleep(0.1)
            proc.send_signal(signal.SIGTERM)
            with trio.fail_after(15):
                code = await proc.wait()
            publisher.kill()
            await publisher.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
    text = log.read_text()
    assert code == 0, text
    assert "received SIGTERM: shutting down" in text and "gateway stopped" in text
    playlist = m3u8.loads(index.read_text())
    assert playlist.is_endlist and len(playlist.segments) >= 2
    assert all((index.parent / s.uri).is_file() for s in playlist.segments)
    cmaf = m3u8.loads((index.parent / "cmaf.m3u8").read_text())
    assert cmaf.is_endlist and len(cmaf.segments) == len(playlist.segments)


# SIGHUP reloads the configuration instead (tests/e2e/test_reload.py).
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_json_logs_and_signal_exit_zero(tmp_path: Path, signum: signal.Signals) -> None:
    log = tmp_path / "gateway.log"
    with log.open("wb") as sink:
        proc = await trio.lowlevel.open_process(
            [*GATEWAY, "run", "--host", "127.0.0.1", "--rtmp-port", str(free_port()),
             "--http-port", str(free_port()), "--log-format", "json"],
            stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            with trio.fail_after(15):
                while b"gateway listening" not in log.read_bytes():
                    await trio.sleep(0.1)
            proc.send_signal(signum)
            with trio.fail_after(15):
                code = await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
    assert code == 0
    entries = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    messages = [e["message"] for e in entries if e["logger"] == "gateway"]
    assert any(m.startswith("gateway listening: rtmp 127.0.0.1:") for m in messages)
    assert f"received {signum.name}: shutting down" in messages
    assert messages[-1] == "gateway stopped"
    assert all({"time", "level", "logger", "message"} <= e.keys() for e in entries)


@pytest.mark.parametrize("which", ["rtmp", "http"])
def test_port_in_use_is_one_clear_line(which: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        ports = {"rtmp": str(taken), "http": str(free_port())}
        if which == "http":
            ports = {"rtmp": str(free_port()), "http": str(taken)}
        out = subprocess.run(
            [*GATEWAY, "run", "--host", "127.0.0.1", "--rtmp-port", ports["rtmp"],
             "--http-port", ports["http"]],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    assert out.returncode == 1
    last = out.stderr.strip().splitlines()[-1]
    assert last == (
        f"gateway: cannot start: [Errno 98] cannot listen for {which.upper()} on "
        f"127.0.0.1:{taken}: Address already in use"
    )
    assert "Traceback" not in out.stderr
