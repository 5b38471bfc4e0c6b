"""The app behind a real hypercorn on loopback: raw request targets no client would normalise,
HEAD Content-Length, and a client that stops reading costs only its own connection."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import trio

from segmenter.store import MemoryStore
from tests.web.conftest import PLAYLIST, SEGMENT, FakeStatus
from tests.web.server import parse_response, raw_request, serving
from tests.web.test_traversal import SECRET, NaiveDiskStore
from web.app import create_app
from web.names import store_name

RAW_TARGETS = [
    "/..%2f..%2fetc/passwd",
    "/live/cam1/..%2f..%2fsecret.ts",
    "/live/cam1/%2e%2e/%2e%2e/secret.ts",
    "/live/cam1/%2E%2E%2F%2E%2E%2Fsecret.ts",
    "/live/cam1/../../secret.ts",
    "/live/cam1/..\\..\\secret.ts",
    "/live/cam1/%5c..%5csecret.ts",
    "/live/cam1/%00.ts",
    "/live/cam1/index.m3u8%00.ts",
    "//secret.ts",
    "/live/cam1//secret.ts",
    "/live/cam1/%2fsecret.ts",
    "http://127.0.0.1/../secret.ts",
    "/live/%2e%2e/secret.ts",
    "/live/cam1/.%2e/.%2e/secret.ts",
    "/live/cam1/%252e%252e%252fsecret.ts",
    "/live/cam1/" + "s" * 300 + ".ts",
    "/etc/passwd",
]


@pytest.mark.parametrize("target", RAW_TARGETS)
async def test_raw_traversal_targets(tmp_path: Path, status: FakeStatus, target: str) -> None:
    root = tmp_path / "hls"
    (root / "live" / "cam1").mkdir(parents=True)
    for place in (tmp_path, root, root / "live"):
        (place / "secret.ts").write_bytes(SECRET)
    disk = NaiveDiskStore(root)
    app = create_app(disk, status)
    async with serving(app) as base:
        raw = await raw_request(
            base, f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
        )
    assert raw, target
    code, _, body = parse_response(raw)
    assert code in (400, 404), (target, code)
    assert SECRET not in raw
    assert b"root:" not in body
    for name in disk.looked_up:
        app_name, key, file = name.split("/")
        assert store_name(app_name, key, file) == name


async def test_head_content_length_matches_get(store: MemoryStore, status: FakeStatus) -> None:
    web = create_app(store, status)
    async with serving(web) as base, httpx.AsyncClient(base_url=base) as client:
        for url, body in (
            ("/live/cam1/index.m3u8", PLAYLIST),
            ("/live/cam1/ab12-00012.ts", SEGMENT),
        ):
            get = await client.get(url, headers={"Accept-Encoding": "identity"})
            head = await client.head(url, headers={"Accept-Encoding": "identity"})
            assert get.content == body
            assert head.status_code == 200
            assert head.content == b""
            assert head.headers["content-length"] == str(len(body))
            assert head.headers["content-type"] == get.headers["content-type"]
        gz = await client.head("/live/cam1/index.m3u8", headers={"Accept-Encoding": "gzip"})
        assert gz.headers["content-encoding"] == "gzip"
        assert 0 < int(gz.headers["content-length"]) < len(PLAYLIST)
        ranged = await client.head("/live/cam1/ab12-00012.ts", headers={"Range": "bytes=0-99"})
        assert ranged.status_code == 206
        assert ranged.headers["content-length"] == "100"


async def test_stalled_reader_does_not_block_others(status: FakeStatus) -> None:
    store = MemoryStore()
    big = b"\x47" * (32 << 20)  # far more than the socket buffers hold
    store.put("live/cam1/big.ts", big)
    app = create_app(store, status)
    async with serving(app) as base:
        host, port = base.removeprefix("http://").rsplit(":", 1)
        stalled = await trio.open_tcp_stream(host, int(port))
        async with stalled:
            await stalled.send_all(b"GET /live/cam1/big.ts HTTP/1.1\r\nHost: x\r\n\r\n")
            first = await stalled.receive_some(1024)  # the answer started, then we stop reading
            assert first.startswith(b"HTTP/1.1 200")
            with trio.fail_after(5):
                async with httpx.AsyncClient(base_url=base) as client:
                    for _ in range(20):
                        assert (await client.get("/healthz")).status_code == 200
                    ranged = await client.get("/live/cam1/big.ts", headers={"Range": "bytes=0-9"})
                    assert ranged.content == big[:10]
