"""Access control end to end (issue 14): real FFmpeg and GStreamer publishers, the README's
example hook as a real HTTP server, HLS reads under read_auth with signed URIs (httpx, and hls.js
in Chromium over HTTPS), the API behind api_token, and `gateway sign`."""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import httpx
import m3u8
import pytest
import trio
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.app import Gateway
from gateway.cli import main as cli_main
from tests.authhook import HookServer, start_hook
from tests.clients import (
    apt_ffmpeg_exe,
    gst_publish_args,
    imageio_ffmpeg_exe,
    publish_args,
    run_client,
)
from tests.conftest import start_gateway, test_settings
from tests.web.browser import sample_playback

pytestmark = pytest.mark.e2e

EXAMPLE_HOOK = Path(__file__).resolve().parents[2] / "docs" / "examples" / "auth_hook.py"
PLAYBACK_SECRET = "p" * 40


@pytest.fixture
async def example_hook() -> AsyncIterator[str]:
    """docs/examples/auth_hook.py, run as the README says (on a free port)."""
    proc = await trio.lowlevel.open_process(
        [sys.executable, str(EXAMPLE_HOOK), "0"], stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        line = b""
        with trio.fail_after(10):
            while b"\n" not in line:
                line += await proc.stdout.receive_some(1024)
        url = re.search(r"http://\S+", line.decode())
        assert url, line
        yield url.group(0)
    finally:
        proc.terminate()
        with trio.move_on_after(5):
            await proc.wait()


def rtmp_url(gw: Gateway, path: str) -> str:
    assert gw.bound is not None
    return f"rtmp://127.0.0.1:{gw.bound.rtmp_port}/{path}"


async def wait_live(client: httpx.AsyncClient, path: str, **params: str) -> httpx.Response:
    # params=None when there are none: an empty dict would drop the query already in ``path``.
    with trio.fail_after(25):
        while (r := await client.get(path, params=params or None)).status_code != 200:
            await trio.sleep(0.2)
    return r


async def test_example_hook_publish_with_the_secret_key_plays_under_its_public_name(
    nursery: trio.Nursery, example_hook: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    gw, _ = await start_gateway(nursery, test_settings(auth_hook_url=example_hook))
    assert gw.bound is not None
    async with trio.open_nursery() as inner, httpx.AsyncClient(base_url=gw.bound.http_url) as http:
        args = publish_args(imageio_ffmpeg_exe(), rtmp_url(gw, "live/s3cr3t-alice"), seconds=6)
        inner.start_soon(partial(run_client, args, timeout=40))
        playlist = await wait_live(http, "/live/alice/cmaf.m3u8")
        assert "#EXT-X-PART:" in playlist.text
        listing = await http.get("/api/streams")  # hook configured: the API asks it -> 403
        assert listing.status_code == 401
        status = (await http.get("/api/streams/live/alice")).json()
        assert status["state"] == "live" and "publisher" not in status
    assert "s3cr3t" not in caplog.text
    assert "s3cr3t" not in playlist.text


@pytest.mark.parametrize(
    "client", ["imageio-ffmpeg-9", "debian-ffmpeg-5.1", "gstreamer", "gstreamer-rtmpsink"]
)
async def test_a_wrong_key_is_refused_and_the_encoder_exits_with_an_error(
    nursery: trio.Nursery, example_hook: str, client: str
) -> None:
    gw, _ = await start_gateway(nursery, test_settings(auth_hook_url=example_hook))
    url = rtmp_url(gw, "live/guess")
    if client.startswith("gstreamer"):
        sink = "rtmpsink" if client.endswith("rtmpsink") else "rtmp2sink"
        args = gst_publish_args(url, seconds=20, sink=sink)
    else:
        exe = imageio_ffmpeg_exe() if client.startswith("imageio") else apt_ffmpeg_exe()
        args = publish_args(exe, url, seconds=20)
    started = time.monotonic()
    result = await run_client(args, timeout=30)
    # It fails at once (not after the 20 s it would have streamed), with an error.
    assert result.returncode != 0, result.stderr.decode(errors="replace")
    assert time.monotonic() - started < 15
    assert gw.hub.publishers() == 0 and gw.hub.get("live", "guess") is None


def sign(stream: str, ttl: str, capsys: pytest.CaptureFixture[str], base: str) -> str:
    """`gateway sign` as an operator runs it; returns the token of the printed URL."""
    code = cli_main(["sign", stream, "--ttl", ttl, "--base-url", base])
    out = capsys.readouterr().out.strip()
    assert code == 0, out
    assert out.startswith(f"{base}/{stream}/index.m3u8?token=")
    return out.rpartition("token=")[2]


async def test_read_auth_hls_through_a_signed_link(
    nursery: trio.Nursery, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATEWAY_PLAYBACK_SECRET", PLAYBACK_SECRET)
    settings = test_settings(read_auth=True, playback_secret=PLAYBACK_SECRET, read_token_ttl=30)
    gw, _ = await start_gateway(nursery, settings)
    assert gw.bound is not None
    base = gw.bound.http_url
    token = sign("live/cam", "1h", capsys, base)
    other = sign("live/other", "1h", capsys, base)
    short = sign("live/cam", "1s", capsys, base)
    async with trio.open_nursery() as inner, httpx.AsyncClient(base_url=base) as http:
        inner.start_soon(
            partial(
                run_client,
                publish_args(imageio_ffmpeg_exe(), rtmp_url(gw, "live/cam"), seconds=8),
                timeout=40,
            )
        )
        index = await wait_live(http, "/live/cam/index.m3u8", token=token)
        assert index.headers["cache-control"].startswith("private")
        variant = m3u8.loads(index.text).playlists[0].uri
        assert variant == f"cmaf.m3u8?token={token}"  # a signed link keeps its own expiry
        media = await wait_live(http, f"/live/cam/{variant}")
        parsed = m3u8.loads(media.text)
        uris = [parsed.segment_map[0].uri, parsed.preload_hint.uri]
        uris += [p.uri for s in parsed.segments for p in s.parts] + [
            s.uri for s in parsed.segments if s.uri
        ]
        assert uris and all(u.endswith(f"?token={token}") for u in uris), uris
        for uri in uris[:1] + uris[2:]:
            assert (await http.get(f"/live/cam/{uri}")).status_code == 200, uri
        # A blocking reload with the token is answered like any other.
        msn = parsed.media_sequence + len(parsed.segments)
        reload = await http.get(f"/live/cam/{variant}&_HLS_msn={msn}&_HLS_part=0")
        assert reload.status_code == 200 and f"token={token}" in reload.text
        # Refused: no token (401), another stream's, a tampered one, an expired one (403).
        segment = uris[-1].partition("?")[0]
        assert (await http.get(f"/live/cam/{segment}")).status_code == 401
        assert (await http.get("/live/cam/index.m3u8")).headers["www-authenticate"]
        assert (await http.get(f"/live/cam/{segment}?token={other}")).status_code == 403
        tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
        assert (await http.get(f"/live/cam/{segment}?token={tampered}")).status_code == 403
        huge = await http.get(
            f"/live/cam/{segment}", headers={"Authorization": "Bearer " + "A" * 100_000}
        )
        assert huge.status_code in (400, 403, 431), huge.status_code  # refused, cheaply
        await trio.sleep(2.1)
        expired = await http.get(f"/live/cam/{segment}?token={short}")
        assert expired.status_code == 403 and "expired" in expired.text
        # FFmpeg, a player with no notion of tokens, plays the signed link.
        played = await run_client(
            [apt_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-i",
             f"{base}/live/cam/index.m3u8?token={token}", "-t", "2", "-f", "null", "-"],
            timeout=30,
        )  # fmt: skip
        assert played.returncode == 0, played.stderr.decode(errors="replace")
        # The page of the stream carries the token to the player.
        page = await http.get("/live/cam/", params={"token": token})
        assert page.status_code == 200 and f'data-token="{token}"' in page.text
        assert (await http.get("/live/cam/")).status_code == 401


async def test_read_auth_with_a_hook_asks_once_per_playback_session(
    nursery: trio.Nursery,
) -> None:
    hook = await start_hook(nursery, HookServer())
    settings = test_settings(auth_hook_url=hook.url, read_auth=True)
    gw, _ = await start_gateway(nursery, settings)
    assert gw.bound is not None

    async def viewer(http: httpx.AsyncClient, seconds: float) -> int:
        """A player: the multivariant playlist without credentials, then what it names."""
        index = await wait_live(http, "/live/cam/index.m3u8")
        variant = m3u8.loads(index.text).playlists[0].uri
        assert "token=" in variant
        fetched = 0
        deadline = trio.current_time() + seconds
        while trio.current_time() < deadline:
            media = await http.get(f"/live/cam/{variant}")
            assert media.status_code == 200
            parsed = m3u8.loads(media.text)
            for part in parsed.segments[-1].parts[-2:]:
                assert (await http.get(f"/live/cam/{part.uri}")).status_code == 200
                fetched += 1
            # Each playlist carries the session's renewed token: follow it, as players do.
            variant = "cmaf.m3u8?" + parsed.segment_map[0].uri.partition("?")[2]
            await trio.sleep(0.3)
        return fetched

    async with trio.open_nursery() as inner, httpx.AsyncClient(base_url=gw.bound.http_url) as http:
        inner.start_soon(
            partial(
                run_client,
                publish_args(imageio_ffmpeg_exe(), rtmp_url(gw, "live/cam"), seconds=10),
                timeout=40,
            )
        )
        with trio.fail_after(25):  # live, without asking (each anonymous request would)
            while gw.store.get("live/cam/cmaf.m3u8") is None:
                await trio.sleep(0.1)
        fetched: list[int] = []

        async def run_viewer() -> None:
            fetched.append(await viewer(http, 4))

        async with trio.open_nursery() as viewers:
            for _ in range(3):
                viewers.start_soon(run_viewer)
    reads = hook.calls("read")
    assert len(reads) == 3, [r["query"] for r in reads]  # once per viewer, not per request
    assert all(r["protocol"] == "hls" and r["app"] == "live" for r in reads)
    assert all(n >= 4 for n in fetched), fetched
    assert len(hook.calls("publish")) == 1  # the publisher was asked once too


async def test_api_token_guards_the_api_metrics_and_index(nursery: trio.Nursery) -> None:
    gw, _ = await start_gateway(nursery, test_settings(api_token="operator-token"))
    assert gw.bound is not None
    async with trio.open_nursery() as inner, httpx.AsyncClient(base_url=gw.bound.http_url) as http:
        inner.start_soon(
            partial(
                run_client,
                publish_args(imageio_ffmpeg_exe(), rtmp_url(gw, "live/cam"), seconds=5),
                timeout=40,
            )
        )
        await wait_live(http, "/live/cam/index.m3u8")  # reads stay open (read_auth off)
        for path in ("/api/streams", "/metrics", "/"):
            anonymous = await http.get(path)
            assert anonymous.status_code == 401, path
            assert anonymous.headers["www-authenticate"].startswith("Bearer")
            wrong = await http.get(path, headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 403, path
            right = await http.get(path, headers={"Authorization": "Bearer operator-token"})
            assert right.status_code == 200, path
        listing = await http.get("/api/streams", headers={"Authorization": "Bearer operator-token"})
        [stream] = listing.json()["streams"]
        assert stream["publisher"].startswith("127.0.0.1:")
        # The player page's status poll: a viewer's view, without addresses.
        public = (await http.get("/api/streams/live/cam")).json()
        assert public["state"] == "live" and "publisher" not in public
        assert isinstance(public["players"], int)
        assert (await http.get("/healthz")).status_code == 200  # probes need no token


def spki_pin(cert_pem: bytes) -> str:
    """Chromium's --ignore-certificate-errors-spki-list value for one certificate: base64 of
    the SHA-256 of its SubjectPublicKeyInfo (trust this key only, not every certificate)."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


async def test_hls_js_plays_a_signed_link_over_https(
    nursery: trio.Nursery,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    settings = test_settings(
        read_auth=True,
        playback_secret=PLAYBACK_SECRET,
        tls_cert=str(cert_file),
        tls_key=str(key_file),
    )
    gw, _ = await start_gateway(nursery, settings)
    assert gw.bound is not None
    base = gw.bound.http_url.replace("http://", "https://")
    monkeypatch.setenv("GATEWAY_PLAYBACK_SECRET", PLAYBACK_SECRET)
    token = sign("live/tv", "1h", capsys, base)
    pin = spki_pin(cert.cert_chain_pems[0].bytes())
    async with trio.open_nursery() as inner:
        inner.start_soon(
            partial(
                run_client,
                publish_args(imageio_ffmpeg_exe(), rtmp_url(gw, "live/tv"), seconds=25),
                timeout=60,
            )
        )
        with trio.fail_after(25):
            while gw.store.get("live/tv/cmaf.m3u8") is None:
                await trio.sleep(0.1)
        [report] = await sample_playback(
            [f"{base}/live/tv/?token={token}"],
            6,
            start_timeout=25,
            chromium_args=[f"--ignore-certificate-errors-spki-list={pin}"],
        )
        inner.cancel_scope.cancel()
    why = report.describe()
    assert report.started, why
    assert not report.fatal_errors, why
    # Every URI the player followed carried a token that opened it.
    assert not [e for e in report.http_errors if e.startswith(("401", "403"))], why
    assert report.samples[-1].current_time - report.samples[0].current_time >= 4, why
    assert report.last_player.get("lowLatency") is True, why


def test_sign_refuses_without_a_secret(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GATEWAY_PLAYBACK_SECRET", raising=False)
    assert cli_main(["sign", "live/cam"]) == 2
    assert "playback_secret" in capsys.readouterr().err
    monkeypatch.setenv("GATEWAY_PLAYBACK_SECRET", PLAYBACK_SECRET)
    assert cli_main(["sign", "live/cam", "--ttl", "soon"]) == 2
    assert "--ttl" in capsys.readouterr().err
    assert cli_main(["sign", "../etc"]) == 2
