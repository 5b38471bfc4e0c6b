"""HTTPS with HTTP/2 (what Safari needs for LL-HLS): a test CA from trustme, a real FFmpeg
publisher, and httpx speaking h2 (and HTTP/1.1) to the gateway, blocking reloads included."""

from __future__ import annotations

import ssl
from functools import partial
from pathlib import Path

import httpx
import m3u8
import pytest
import trio
import trustme

from gateway.config import ConfigError, load_settings
from tests.clients import imageio_ffmpeg_exe, publish_args, run_client
from tests.conftest import start_gateway, test_settings

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def pem(ca: trustme.CA, tmp_path: Path) -> tuple[str, str]:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))  # key + chain: fine for both
    cert.private_key_pem.write_to_path(str(key_file))
    return str(cert_file), str(key_file)


async def test_hls_over_https_with_http2_and_blocking_reload(
    nursery: trio.Nursery, ca: trustme.CA, pem: tuple[str, str]
) -> None:
    cert, key = pem
    gw, stop = await start_gateway(nursery, test_settings(tls_cert=cert, tls_key=key))
    assert gw.bound is not None
    base = gw.bound.http_url.replace("http://", "https://")
    assert base.startswith("https://127.0.0.1:")
    rtmp = f"rtmp://127.0.0.1:{gw.bound.rtmp_port}/live/secure"
    context = ssl.create_default_context()
    ca.configure_trust(context)
    async with trio.open_nursery() as inner:
        args = publish_args(imageio_ffmpeg_exe(), rtmp, seconds=10)
        inner.start_soon(partial(run_client, args, timeout=40))
        async with httpx.AsyncClient(http2=True, verify=context, base_url=base) as h2:
            with trio.fail_after(20):
                while (r := await h2.get("/live/secure/cmaf.m3u8")).status_code != 200:
                    await trio.sleep(0.2)
            assert r.http_version == "HTTP/2"
            variant = await h2.get("/live/secure/index.m3u8")
            assert variant.http_version == "HTTP/2" and "cmaf.m3u8" in variant.text
            # Blocking reloads for the next three parts, concurrently on one h2 connection,
            # each answered once its part exists; then the parts themselves.
            hint = m3u8.loads(r.text).preload_hint.uri
            prefix, numbers = hint.removesuffix(".m4s").rsplit("-", 1)  # <prefix>-<msn>.<part>
            msn, part = (int(x) for x in numbers.split("."))
            answers: list[httpx.Response] = []

            async def reload(n: int) -> None:
                query = f"_HLS_msn={msn}&_HLS_part={part + n}"
                answers.append(await h2.get(f"/live/secure/cmaf.m3u8?{query}"))

            with trio.fail_after(10):
                async with trio.open_nursery() as reloads:
                    for n in range(3):
                        reloads.start_soon(reload, n)
            assert [a.status_code for a in answers] == [200, 200, 200]
            assert all(a.http_version == "HTTP/2" for a in answers)
            newest = max(answers, key=lambda a: len(a.text))
            assert f"{prefix}-{msn}.{part + 2}.m4s" in newest.text or f"-{msn + 1}." in newest.text
            first_part = await h2.get(f"/live/secure/{hint}")
            assert first_part.status_code == 200 and first_part.content[4:8] == b"moof"
        # HTTP/1.1 over TLS keeps working for clients without h2.
        async with httpx.AsyncClient(http2=False, verify=context, base_url=base) as h1:
            plain = await h1.get("/live/secure/ts.m3u8")
            assert plain.status_code == 200 and plain.http_version == "HTTP/1.1"
        inner.cancel_scope.cancel()
    stop.set()


def test_tls_settings_must_come_as_a_loadable_pair(pem: tuple[str, str], tmp_path: Path) -> None:
    cert, key = pem
    with pytest.raises(ConfigError, match="tls_key: needed"):
        load_settings(env={}, overrides={"tls_cert": cert})
    with pytest.raises(ConfigError, match=r"tls_cert: '/nonexistent\.pem' is not a readable file"):
        load_settings(env={}, overrides={"tls_cert": "/nonexistent.pem", "tls_key": key})
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key\n")
    with pytest.raises(ConfigError, match="cannot load the certificate and key"):
        load_settings(env={}, overrides={"tls_cert": cert, "tls_key": str(garbage)})
    assert load_settings(env={}, overrides={"tls_cert": cert, "tls_key": key}).tls_key == key
