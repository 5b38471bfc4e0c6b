"""SIGHUP reloads the configuration of a running `gateway run` without dropping its stream."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import m3u8
import pytest
import trio

from tests.clients import imageio_ffmpeg_exe, publish_args
from tests.e2e.test_cli import free_port

pytestmark = pytest.mark.e2e
GATEWAY = [sys.executable, "-m", "gateway.cli"]
TOKEN = "reload-operator-token"


def config_text(rtmp: int, http: int, hls: Path, extra: str = "") -> str:
    return (
        f'host = "127.0.0.1"\nrtmp_port = {rtmp}\nhttp_port = {http}\nhls_dir = "{hls}"\n'
        f'log_format = "json"\n{extra}'
    )


def entries(log: Path) -> list[dict[str, Any]]:
    lines = log.read_text().splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


async def wait_for_entry(log: Path, event: str, after: int) -> dict[str, Any]:
    with trio.fail_after(10):
        while True:
            found = [e for e in entries(log)[after:] if e.get("event") == event]
            if found:
                return found[0]
            await trio.sleep(0.1)


async def test_sighup_applies_new_settings_keeps_the_publish_and_refuses_a_bad_file(
    tmp_path: Path,
) -> None:
    rtmp, http = free_port(), free_port()
    hls = tmp_path / "hls"
    config = tmp_path / "gateway.toml"
    config.write_text(config_text(rtmp, http, hls))
    log = tmp_path / "gateway.log"
    base = f"http://127.0.0.1:{http}"
    operator = {"Authorization": f"Bearer {TOKEN}"}
    playlist = hls / "live" / "cam" / "ts.m3u8"

    def sequence() -> int:
        text = playlist.read_text() if playlist.exists() else ""
        parsed = m3u8.loads(text)
        return (parsed.media_sequence or 0) + len(parsed.segments)

    with log.open("wb") as sink:
        proc = await trio.lowlevel.open_process(
            [*GATEWAY, "run", "--config", str(config)], stdout=sink, stderr=subprocess.STDOUT
        )
        publisher = None
        try:
            with trio.fail_after(15):
                while b"gateway listening" not in log.read_bytes():
                    await trio.sleep(0.1)
            publisher = await trio.lowlevel.open_process(
                publish_args(imageio_ffmpeg_exe(), f"rtmp://127.0.0.1:{rtmp}/live/cam", seconds=60),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            with trio.fail_after(20):
                while sequence() < 2:
                    await trio.sleep(0.1)
            async with httpx.AsyncClient(timeout=5) as client:
                assert (await client.get(f"{base}/api/streams")).status_code == 200  # open

                # A new API token, a per-address limit the publisher already fills, the debug
                # level, and a port change that needs a restart.
                config.write_text(
                    config_text(
                        rtmp,
                        free_port(),
                        hls,
                        f'api_token = "{TOKEN}"\nmax_connections_per_ip = 1\nlog_level = "debug"\n',
                    )
                )
                seen = len(entries(log))
                assert not any(e["level"] == "debug" for e in entries(log))  # info until now
                proc.send_signal(signal.SIGHUP)
                reloaded = await wait_for_entry(log, "reload", seen)
                assert reloaded["changed"] == ["log_level", "api_token", "max_connections_per_ip"]
                restart = await wait_for_entry(log, "reload_needs_restart", seen)
                assert restart["setting"] == "http_port" and restart["level"] == "warning"

                # Auth: the API now wants the token (still on the old port).
                assert (await client.get(f"{base}/api/streams")).status_code == 401
                listing = await client.get(f"{base}/api/streams", headers=operator)
                assert listing.status_code == 200
                # Limits: a second connection from this address is refused at accept.
                with trio.fail_after(10):
                    extra = await trio.open_tcp_stream("127.0.0.1", rtmp)
                    assert await extra.receive_some(1) == b""  # closed at once
                    await extra.aclose()
                assert any("max_connections_per_ip (1)" in e["message"] for e in entries(log))

                # A broken file is refused whole: the old settings (the token) stay.
                config.write_text(config_text(rtmp, http, hls, "hls_windw = 3\n"))
                seen = len(entries(log))
                proc.send_signal(signal.SIGHUP)
                refused = await wait_for_entry(log, "reload_refused", seen)
                assert refused["level"] == "error"
                assert (
                    "hls_windw" in refused["cause"]
                    and "did you mean 'hls_window'" in (refused["cause"])
                )
                assert (await client.get(f"{base}/api/streams")).status_code == 401

                # The publish went on: same session, segments still coming.
                before = sequence()
                with trio.fail_after(15):
                    while sequence() < before + 2:
                        await trio.sleep(0.2)
                (stream,) = (await client.get(f"{base}/api/streams", headers=operator)).json()[
                    "streams"
                ]
                assert stream["sessions"] == 1 and stream["state"] == "live"
                # Log level: the segmenter's debug lines (one per segment) are written now.
                assert any(e["level"] == "debug" for e in entries(log))
                assert publisher.returncode is None  # FFmpeg is still publishing
            proc.send_signal(signal.SIGTERM)
            with trio.fail_after(15):
                code = await proc.wait()
        finally:
            for p in (publisher, proc):
                if p is not None and p.returncode is None:
                    p.kill()
                    await p.wait()
    assert code == 0
    assert m3u8.loads(playlist.read_text()).is_endlist
