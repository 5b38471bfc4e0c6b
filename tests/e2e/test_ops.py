"""What an operator reads of a real publish session: JSON log fields, HLS viewers, process
metrics, no loss counted on a clean publish, per-stream series only when asked."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import m3u8
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import Gateway
from gateway.logs import JsonFormatter
from tests.clients import imageio_ffmpeg_exe, play_args, publish_args, run_client
from tests.conftest import start_gateway, test_settings
from tests.e2e.test_hls import http_url, rtmp_url

pytestmark = pytest.mark.e2e


@contextmanager
def json_log() -> Iterator[io.StringIO]:
    """The gateway's log lines as `--log-format json` writes them, while the block runs."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def metric_values(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    values: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values.setdefault(sample.name, []).append((sample.labels, sample.value))
    return values


async def wait_for_segments(http: httpx.AsyncClient, gw: Gateway, key: str) -> str:
    url = http_url(gw, f"/live/{key}/ts.m3u8")
    with trio.fail_after(20):
        while True:
            r = await http.get(url, headers={"User-Agent": "player-a/1"})
            if r.status_code == 200 and len(m3u8.loads(r.text).segments) >= 2:
                break
            await trio.sleep(0.2)
    return url


async def test_a_publish_session_in_json_logs_api_and_metrics(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    gw, _ = await start_gateway(nursery, test_settings(hls_viewer_window=30.0))
    entries: list[dict[str, Any]] = []
    with json_log() as out:
        publisher = publish_args(imageio_ffmpeg_exe(), rtmp_url(gw, "ops"), seconds=14)
        published = trio.Event()

        async def publish() -> None:
            result = await run_client(publisher, timeout=40)
            assert result.returncode == 0, result.stderr
            published.set()

        nursery.start_soon(publish)
        async with httpx.AsyncClient(timeout=5) as http:
            url = await wait_for_segments(http, gw, "ops")
            # Three players: two user agents from this address, and the first one again.
            for agent in ("player-a/1", "player-b/2", "player-a/1"):
                playlist = await http.get(url, headers={"User-Agent": agent})
                segment = m3u8.loads(playlist.text, uri=url).segments[0].absolute_uri
                assert (await http.get(segment, headers={"User-Agent": agent})).status_code == 200
            # A second publisher of the live name is refused; an RTMP player watches 2 s.
            refused = await run_client(
                publish_args(imageio_ffmpeg_exe(), rtmp_url(gw, "ops"), seconds=2), timeout=30
            )
            assert refused.returncode != 0
            played = await run_client(
                play_args("ffmpeg-9", rtmp_url(gw, "ops"), str(tmp_path / "p.flv"), seconds=2),
                timeout=30,
            )
            assert played.returncode == 0, played.stderr

            api = (await http.get(http_url(gw, "/api/streams"))).json()["streams"][0]
            assert api["viewers"] == 2 and api["dropped"] == 0 and api["sessions"] == 1
            stream = (await http.get(http_url(gw, "/api/streams/live/ops"))).json()
            assert stream["viewers"] == 2

            metrics = metric_values((await http.get(http_url(gw, "/metrics"))).text)
            assert metrics["hls_viewers"] == [({}, 2.0)]
            for name in (
                "process_cpu_seconds_total",
                "process_resident_memory_bytes",
                "process_open_fds",
                "process_max_fds",
            ):
                assert metrics[name][0][1] > 0, name
            assert not [n for n in metrics if n.startswith("stream_")]  # off by default

            # metrics_per_stream (a reload may switch it): series labelled by app and key.
            gw.reconfigure(dataclasses.replace(gw.settings, metrics_per_stream=True))
            metrics = metric_values((await http.get(http_url(gw, "/metrics"))).text)
            labels = {"app": "live", "key": "ops"}
            assert metrics["stream_hls_viewers"] == [(labels, 2.0)]
            assert metrics["stream_dropped_total"] == [(labels, 0.0)]
            assert metrics["stream_bytes_received_total"][0][1] > 100_000
            with trio.fail_after(40):
                await published.wait()
        with trio.fail_after(10):
            while '"publish_stop"' not in out.getvalue():
                await trio.sleep(0.1)
        entries = [json.loads(line) for line in out.getvalue().splitlines()]

    assert all({"time", "level", "logger", "message"} <= e.keys() for e in entries)

    def events(name: str) -> list[dict[str, Any]]:
        return [e for e in entries if e.get("event") == name]

    (start,) = events("publish_start")
    assert (start["app"], start["key"]) == ("live", "ops")
    assert start["peer"].startswith("127.0.0.1:") and start["level"] == "info"
    (stop,) = events("publish_stop")
    assert (stop["app"], stop["key"], stop["peer"]) == ("live", "ops", start["peer"])
    assert stop["cause"] == "publisher ended the stream"
    assert stop["duration"] > 12 and stop["bytes"] > 100_000  # 14 s of media at -re
    (refusal,) = events("publish_refused")
    assert refusal["level"] == "warning" and refusal["key"] == "ops"
    assert refusal["cause"].startswith("NetStream.Publish.BadName: live/ops is already being")
    (play_start,) = events("play_start")
    (play_stop,) = events("play_stop")
    assert play_start["key"] == play_stop["key"] == "ops"
    assert play_stop["duration"] > 0 and play_stop["bytes"] > 10_000
    closes = {e["peer"]: e for e in events("connection_close")}
    assert closes[start["peer"]]["bytes"] == stop["bytes"]
    assert closes[start["peer"]]["cause"] == "closed by peer"
