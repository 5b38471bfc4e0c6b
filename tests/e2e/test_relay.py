"""Issue 5 end to end: push relays over loopback with real FFmpeg on both ends.

(a) FFmpeg publishes to gateway A, which pushes to gateway B; B's HLS is decodable, and after
B crashes and comes back on the same port the relay reconnects and B produces segments again.
(b) A push to an ``ffmpeg -listen 1`` RTMP receiver writes a decodable FLV file.
"""

from __future__ import annotations

import io
import socket
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import av
import httpx
import m3u8
import pytest
import trio

from gateway.app import Gateway
from gateway.config import Settings
from tests.clients import imageio_ffmpeg_exe, publish_args, run_client
from tests.conftest import start_gateway, test_settings

pytestmark = pytest.mark.e2e

FPS = 30


async def start_crashable(
    nursery: trio.Nursery, settings: Settings
) -> tuple[Gateway, trio.CancelScope, trio.Event]:
    """A gateway in its own cancel scope: cancelling it is a crash (no graceful unpublish)."""
    done = trio.Event()

    async def run(task_status: trio.TaskStatus[tuple[Gateway, trio.CancelScope]]) -> None:
        try:
            with trio.CancelScope() as scope:
                async with trio.open_nursery() as inner:
                    gw, _ = await start_gateway(inner, settings)
                    task_status.started((gw, scope))
        finally:
            done.set()

    gw, scope = await nursery.start(run)
    return gw, scope, done


async def poll(check: Callable[[], Awaitable[Any]], *, timeout: float, what: str) -> Any:
    """Call ``check`` until it returns something truthy, within ``timeout`` seconds."""
    with trio.move_on_after(timeout):
        while True:
            result = await check()
            if result:
                return result
            await trio.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def segment_uris(base: str, path: str, http: httpx.AsyncClient) -> Callable[[], Awaitable[Any]]:
    url = f"{base}/{path}/ts.m3u8"

    async def check() -> list[str]:
        r = await http.get(url)
        if r.status_code != 200:
            return []
        playlist = m3u8.loads(r.text, uri=url)
        return [s.absolute_uri for s in playlist.segments]

    return check


def decode_video_frames(data: bytes, fmt: str) -> int:
    with av.open(io.BytesIO(data), mode="r", format=fmt) as container:
        return len(list(container.decode(video=0)))


async def test_push_to_second_gateway_survives_its_restart(nursery: trio.Nursery) -> None:
    b, b_scope, b_done = await start_crashable(nursery, test_settings())
    assert b.bound is not None
    b_port = b.bound.rtmp_port
    a, _a_stop = await start_gateway(
        nursery, test_settings(push=f"live=rtmp://127.0.0.1:{b_port}/live/{{key}}")
    )
    assert a.bound is not None
    publish = publish_args(
        imageio_ffmpeg_exe(),
        f"rtmp://127.0.0.1:{a.bound.rtmp_port}/live/relayed",
        seconds=14,
        gop=FPS,
    )
    result: list[subprocess.CompletedProcess[bytes]] = []

    async def publisher() -> None:
        result.append(await run_client(publish, timeout=40))

    nursery.start_soon(publisher)
    async with httpx.AsyncClient(timeout=5) as http:
        uris = await poll(
            segment_uris(b.bound.http_url, "live/relayed", http), timeout=12, what="B's segments"
        )
        segment = (await http.get(uris[0])).content
        assert decode_video_frames(segment, "mpegts") >= FPS  # >= 1 s (one GOP) of pictures
        relay = a.relays.relays_for("live/relayed")[0]
        assert relay["state"] == "publishing" and relay["reconnects"] == 0

        # B crashes; a new B binds the same port while FFmpeg still publishes to A.
        b_scope.cancel()
        await b_done.wait()
        b2, _b2_scope, _ = await start_crashable(nursery, test_settings(rtmp_port=b_port))
        assert b2.bound is not None
        uris = await poll(
            segment_uris(b2.bound.http_url, "live/relayed", http),
            timeout=10,
            what="segments from the restarted B",
        )
        assert decode_video_frames((await http.get(uris[0])).content, "mpegts") >= FPS
        relay = a.relays.relays_for("live/relayed")[0]
        assert relay["state"] == "publishing" and relay["reconnects"] >= 1
        assert relay["last_error"] and relay["bytes_sent"] > 100_000
        api = (await http.get(f"{a.bound.http_url}/api/streams/live/relayed")).json()
        assert api["relays"][0]["target"] == f"rtmp://127.0.0.1:{b_port}/live/relayed"
        metrics = (await http.get(f"{a.bound.http_url}/metrics")).text
        assert "relays_active 1.0" in metrics and "relay_reconnects_total{" in metrics

    # The publisher ends: the relay unpublishes and B2's publisher slot is released.
    await poll(lambda: _true(bool(result)), timeout=25, what="FFmpeg to finish")
    assert result[0].returncode == 0, result[0].stderr.decode(errors="replace")
    await poll(
        lambda: _true(a.relays.relays_for("live/relayed")[0]["state"] == "stopped"),
        timeout=5,
        what="the relay to stop",
    )
    stream_b2 = b2.hub.get("live", "relayed")
    assert stream_b2 is not None
    await poll(lambda: _true(stream_b2.publisher is None), timeout=5, what="B2's unpublish")


async def _true(value: bool) -> bool:
    return value


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_push_to_ffmpeg_listener_writes_decodable_flv(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    port = free_port()
    out = tmp_path / "out.flv"
    listen = [
        imageio_ffmpeg_exe(),
        *("-hide_banner", "-nostdin", "-loglevel", "error", "-listen", "1"),
        *("-i", f"rtmp://127.0.0.1:{port}/live/x", "-c", "copy", "-y", str(out)),
    ]
    received: list[subprocess.CompletedProcess[bytes]] = []

    async def receiver() -> None:
        received.append(await run_client(listen, timeout=30))

    nursery.start_soon(receiver)
    gw, _stop = await start_gateway(
        nursery, test_settings(push=f"live/cam=rtmp://127.0.0.1:{port}/live/x")
    )
    assert gw.bound is not None
    seconds = 5
    url = f"rtmp://127.0.0.1:{gw.bound.rtmp_port}/live/cam"
    pub = await run_client(
        publish_args(imageio_ffmpeg_exe(), url, seconds=seconds, gop=FPS), timeout=30
    )
    assert pub.returncode == 0, pub.stderr.decode(errors="replace")
    # deleteStream + close from the relay ends the receiver's input: it finishes the file.
    await poll(lambda: _true(bool(received)), timeout=10, what="the FFmpeg receiver to exit")
    assert received[0].returncode == 0, received[0].stderr.decode(errors="replace")
    frames = decode_video_frames(out.read_bytes(), "flv")
    relay = gw.relays.relays_for("live/cam")[0]
    print(f"receiver decoded {frames} frames of {seconds * FPS}; relay {relay}")
    # The relay may wait for the receiver to listen (backoff 1 s) and starts at a keyframe.
    assert frames >= (seconds - 2) * FPS
    assert relay["state"] == "stopped" and relay["bytes_sent"] > 100_000
