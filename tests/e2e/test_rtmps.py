"""RTMPS (issue 14): real FFmpeg builds publish and play over TLS with a test CA from trustme,
push relays reach an rtmps:// listener (and fail visibly on an untrusted certificate), and peers
that never speak TLS or speak something else are dropped without touching a running stream."""

from __future__ import annotations

import logging
import os
import ssl
import subprocess
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio
import trustme

from gateway.app import Gateway
from tests.clients import (
    apt_ffmpeg_exe,
    imageio_ffmpeg_exe,
    play_args,
    publish_args,
    run_client,
)
from tests.conftest import start_gateway, test_settings
from tests.e2e.test_play import decode
from tests.e2e.test_relay import FPS, decode_video_frames, poll, segment_uris

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def issue(ca: trustme.CA, directory: Path, name: str) -> tuple[str, str]:
    """A server certificate for 127.0.0.1 signed by ``ca``: (cert chain file, key file)."""
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file = directory / f"{name}-cert.pem", directory / f"{name}-key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    for extra in cert.cert_chain_pems[1:]:
        extra.write_to_path(str(cert_file), append=True)
    cert.private_key_pem.write_to_path(str(key_file))
    return str(cert_file), str(key_file)


@pytest.fixture
def pem(ca: trustme.CA, tmp_path: Path) -> tuple[str, str]:
    return issue(ca, tmp_path, "server")


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def https(ca: trustme.CA) -> httpx.AsyncClient:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return httpx.AsyncClient(verify=context, timeout=5)


def rtmps_url(gw: Gateway, key: str) -> str:
    assert gw.bound is not None
    return f"rtmps://127.0.0.1:{gw.bound.rtmps_port}/live/{key}"


async def wait_live(gw: Gateway, key: str) -> None:
    with trio.fail_after(20):
        while (s := gw.hub.get("live", key)) is None or s.publisher is None or not s.gop:
            await trio.sleep(0.05)


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records]


@pytest.mark.parametrize("client", ["ffmpeg-9", "ffmpeg-5.1"])
async def test_ffmpeg_publishes_and_plays_over_rtmps(
    nursery: trio.Nursery,
    ca: trustme.CA,
    pem: tuple[str, str],
    ca_file: str,
    tmp_path: Path,
    client: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    exe = imageio_ffmpeg_exe() if client == "ffmpeg-9" else apt_ffmpeg_exe()
    cert, key = pem
    # RTMPS only: with rtmp_port -1 nothing listens for plain RTMP.
    settings = test_settings(tls_cert=cert, tls_key=key, rtmp_port=-1)
    with caplog.at_level(logging.INFO, logger="gateway"):
        gw, stop = await start_gateway(nursery, settings)
        assert gw.bound is not None and gw.bound.rtmp == [] and len(gw.bound.rtmps) == 1
        url = rtmps_url(gw, "tls")
        out = tmp_path / "played.flv"
        published: list[subprocess.CompletedProcess[bytes]] = []

        async def publisher() -> None:
            args = publish_args(exe, url, seconds=10, gop=FPS, ca_file=ca_file)
            published.append(await run_client(args, timeout=40))

        nursery.start_soon(publisher)
        await wait_live(gw, "tls")
        async with https(ca) as http:
            base = gw.bound.http_url.replace("http://", "https://")
            uris = await poll(segment_uris(base, "live/tls", http), timeout=15, what="segments")
            segment = (await http.get(uris[0])).content
            assert decode_video_frames(segment, "mpegts") >= FPS  # one GOP of pictures at least
        played = await run_client(
            play_args(client, url, str(out), seconds=3, ca_file=ca_file), timeout=30
        )
        assert played.returncode == 0, played.stderr.decode(errors="replace")
        await poll(partial(_true, published), timeout=25, what="the publisher to finish")
        assert published[0].returncode == 0, published[0].stderr.decode(errors="replace")
        stop.set()
    rec = decode(out)
    assert rec.first_video_key and rec.video >= 60 and rec.audio >= 60, rec  # >= 2 of 3 s
    lines = messages(caplog)
    start = f"gateway listening: rtmps 127.0.0.1:{gw.bound.rtmps_port}, http "
    assert any(m.startswith(start) for m in lines), lines
    # Both clients came over TLS: the publisher's and the player's connections say so.
    assert len([m for m in lines if m.startswith("rtmps connection #") and "closed" in m]) >= 2
    assert not [m for m in lines if "TLS error" in m or m.startswith("rtmp connection")]


async def _true(items: list[subprocess.CompletedProcess[bytes]]) -> bool:
    return bool(items)


async def test_push_relay_to_an_rtmps_listener(
    nursery: trio.Nursery, ca: trustme.CA, pem: tuple[str, str], ca_file: str
) -> None:
    cert, key = pem
    b, _b_stop = await start_gateway(
        nursery, test_settings(tls_cert=cert, tls_key=key, rtmp_port=-1)
    )
    target = rtmps_url(b, "relayed")
    a, _a_stop = await start_gateway(
        nursery, test_settings(push=f"live={target}", tls_ca_file=ca_file)
    )
    assert a.bound is not None and b.bound is not None and a.bound.rtmps == []
    publish = publish_args(
        imageio_ffmpeg_exe(), f"rtmp://127.0.0.1:{a.bound.rtmp_port}/live/relayed", seconds=8
    )
    published: list[subprocess.CompletedProcess[bytes]] = []

    async def publisher() -> None:
        published.append(await run_client(publish, timeout=40))

    nursery.start_soon(publisher)
    async with https(ca) as http:
        base = b.bound.http_url.replace("http://", "https://")
        uris = await poll(segment_uris(base, "live/relayed", http), timeout=15, what="B's HLS")
        assert decode_video_frames((await http.get(uris[0])).content, "mpegts") >= FPS
    relay = a.relays.relays_for("live/relayed")[0]
    assert relay["target"] == target and relay["state"] == "publishing", relay
    assert relay["last_error"] is None
    await poll(partial(_true, published), timeout=25, what="the publisher to finish")
    assert published[0].returncode == 0, published[0].stderr.decode(errors="replace")


async def test_push_to_an_untrusted_certificate_fails_visibly_and_spares_the_publisher(
    nursery: trio.Nursery,
    ca: trustme.CA,
    ca_file: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # B's certificate comes from a CA that A's tls_ca_file (and the system) does not hold.
    cert, key = issue(trustme.CA(), tmp_path, "stranger")
    b, _b_stop = await start_gateway(nursery, test_settings(tls_cert=cert, tls_key=key))
    target = rtmps_url(b, "cam")
    a, _a_stop = await start_gateway(
        nursery, test_settings(push=f"live={target}", tls_ca_file=ca_file)
    )
    assert a.bound is not None
    publish = publish_args(
        imageio_ffmpeg_exe(), f"rtmp://127.0.0.1:{a.bound.rtmp_port}/live/cam", seconds=6
    )
    with caplog.at_level(logging.INFO, logger="gateway"):
        result = await run_client(publish, timeout=40)
        async with httpx.AsyncClient(timeout=5) as http:
            uris = await segment_uris(a.bound.http_url, "live/cam", http)()
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert uris, "A made no HLS of its own publisher"
    relay = a.relays.relays_for("live/cam")[0]
    assert relay["state"] in ("backoff", "stopped") and relay["reconnects"] >= 1, relay
    assert relay["last_error"].startswith("connection failed: TLS certificate not accepted:")
    failed = [
        m
        for m in messages(caplog)
        if m.startswith(f"relay live/cam -> {target}: connection failed: ")
    ]
    assert failed, messages(caplog)
    assert "connection failed: TLS certificate not accepted: " in failed[0]
    assert "self-signed certificate in certificate chain" in failed[0] or (
        "unable to get local issuer certificate" in failed[0]
    )
    assert "retrying in" in failed[0]
    assert b.hub.get("live", "cam") is None  # nothing reached B
    b_lines = [m for m in messages(caplog) if m.startswith("rtmps connection #") and "closed" in m]
    assert b_lines and all(m.endswith("0 bytes in, 0 out") for m in b_lines), b_lines


async def test_peers_that_do_not_speak_tls_are_dropped_without_touching_a_stream(
    nursery: trio.Nursery,
    pem: tuple[str, str],
    ca_file: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cert, key = pem
    setup_timeout = 3.0
    gw, _stop = await start_gateway(
        nursery, test_settings(tls_cert=cert, tls_key=key, setup_timeout=setup_timeout)
    )
    assert gw.bound is not None
    published: list[subprocess.CompletedProcess[bytes]] = []

    async def publisher() -> None:
        args = publish_args(
            imageio_ffmpeg_exe(), rtmps_url(gw, "steady"), seconds=14, gop=FPS, ca_file=ca_file
        )
        published.append(await run_client(args, timeout=50))

    with caplog.at_level(logging.INFO, logger="gateway.rtmp"):
        nursery.start_soon(publisher)
        await wait_live(gw, "steady")
        stream = gw.hub.get("live", "steady")
        assert stream is not None and stream.publisher is not None
        holder = stream.publisher.connection_id
        # A plain RTMP client on the RTMPS port: C0 + C1 where a ClientHello belongs.
        garbage_port = await _send_and_wait_closed(
            gw.bound.rtmps_port, b"\x03" + os.urandom(1536), timeout=setup_timeout + 20
        )
        # Opens TCP and says nothing: the setup deadline ends it.
        began = trio.current_time()
        silent_port = await _send_and_wait_closed(
            gw.bound.rtmps_port, b"", timeout=setup_timeout + 20
        )
        assert trio.current_time() - began >= setup_timeout
        bytes_before = stream.bytes_in
        await trio.sleep(1.0)
        assert stream.publisher is not None and stream.publisher.connection_id == holder
        assert stream.bytes_in > bytes_before  # still flowing
        await poll(partial(_true, published), timeout=30, what="the publisher to finish")
    assert published[0].returncode == 0, published[0].stderr.decode(errors="replace")
    lines = messages(caplog)
    garbage = [m for m in lines if f"127.0.0.1:{garbage_port} closed" in m]
    silent = [m for m in lines if f"127.0.0.1:{silent_port} closed" in m]
    assert len(garbage) == 1 and garbage[0].startswith("rtmps connection #"), lines
    assert "closed (TLS error: " in garbage[0] and "0 bytes in, 0 out" in garbage[0]
    assert len(silent) == 1 and "closed (setup timeout)" in silent[0], lines


async def _send_and_wait_closed(port: int, data: bytes, *, timeout: float) -> int:
    """Connect, send ``data``, wait for the server to close; returns our local port."""
    sock = await trio.open_tcp_stream("127.0.0.1", port)
    local = int(sock.socket.getsockname()[1])
    try:
        with trio.fail_after(timeout):
            if data:
                await sock.send_all(data)
            while await sock.receive_some(65536):
                pass  # a TLS alert, then EOF
    except trio.BrokenResourceError:
        pass  # reset: closed with our bytes unread
    finally:
        await sock.aclose()
    return local
