"""Playlists and segments over the Quart test client: MIME, caching, HEAD, ranges, gzip, CORS."""

from __future__ import annotations

import gzip

import pytest
from quart_trio import QuartTrio

from segmenter.store import MemoryStore
from tests.web.conftest import PLAYLIST, SEGMENT, FakeStatus
from web.app import WebConfig, create_app

PLAYLIST_URL = "/live/cam1/index.m3u8"
SEGMENT_URL = "/live/cam1/ab12-00012.ts"


async def test_playlist_headers_and_body(app: QuartTrio) -> None:
    response = await app.test_client().get(PLAYLIST_URL)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/vnd.apple.mpegurl"
    assert response.headers["Cache-Control"] == "public, max-age=1"
    assert response.headers["Vary"] == "Accept-Encoding"
    assert "Content-Encoding" not in response.headers
    assert await response.get_data() == PLAYLIST


async def test_segment_headers_and_body(app: QuartTrio) -> None:
    response = await app.test_client().get(SEGMENT_URL)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "video/mp2t"
    assert response.headers["Cache-Control"] == "public, max-age=86400, immutable"
    assert response.headers["Accept-Ranges"] == "bytes"
    assert await response.get_data() == SEGMENT


async def test_fmp4_mime_types(store: MemoryStore, app: QuartTrio) -> None:
    store.put("live/cam1/init.mp4", b"init")
    store.put("live/cam1/s1.m4s", b"part")
    client = app.test_client()
    assert (await client.get("/live/cam1/init.mp4")).headers["Content-Type"] == "video/mp4"
    assert (await client.get("/live/cam1/s1.m4s")).headers["Content-Type"] == "video/iso.segment"


@pytest.mark.parametrize(
    "config, expected",
    [
        (WebConfig(playlist_max_age=3.0), "public, max-age=3"),
        (WebConfig(playlist_max_age=0.5), "no-cache"),
    ],
)
async def test_playlist_max_age_from_config(
    store: MemoryStore, status: FakeStatus, config: WebConfig, expected: str
) -> None:
    app = create_app(store, status, config=config)
    response = await app.test_client().get(PLAYLIST_URL)
    assert response.headers["Cache-Control"] == expected


async def test_segment_max_age_from_config(store: MemoryStore, status: FakeStatus) -> None:
    app = create_app(store, status, config=WebConfig(segment_max_age=600))
    response = await app.test_client().get(SEGMENT_URL)
    assert response.headers["Cache-Control"] == "public, max-age=600, immutable"


@pytest.mark.parametrize("url", [PLAYLIST_URL, SEGMENT_URL])
async def test_head_has_headers_and_no_body(app: QuartTrio, url: str) -> None:
    client = app.test_client()
    get = await client.get(url)
    head = await client.head(url)
    assert head.status_code == 200
    assert await head.get_data() == b""
    for name in ("Content-Type", "Cache-Control"):
        assert head.headers[name] == get.headers[name]
    # Content-Length of HEAD is checked over a real server in test_server.py: the test client
    # rebuilds the response from the (empty) body and overwrites it.


@pytest.mark.parametrize(
    "header, status, content_range, body",
    [
        ("bytes=0-9", 206, "bytes 0-9/2048", SEGMENT[0:10]),
        ("bytes=2000-", 206, "bytes 2000-2047/2048", SEGMENT[2000:]),
        ("bytes=-100", 206, "bytes 1948-2047/2048", SEGMENT[-100:]),
        ("bytes=100-100", 206, "bytes 100-100/2048", SEGMENT[100:101]),
        ("bytes=1000-99999", 206, "bytes 1000-2047/2048", SEGMENT[1000:]),
        ("bytes=0-", 206, "bytes 0-2047/2048", SEGMENT),
        ("bytes=2048-", 416, "bytes */2048", None),
        ("bytes=5000-6000", 416, "bytes */2048", None),
        ("bytes=-0", 416, "bytes */2048", None),
        ("bytes=9-3", 200, None, SEGMENT),  # invalid -> ignored (RFC 9110 §14.1.1)
        ("bytes=0-1,5-6", 200, None, SEGMENT),  # several ranges: we serve the whole body
        ("lines=1-2", 200, None, SEGMENT),
    ],
)
async def test_segment_ranges(
    app: QuartTrio, header: str, status: int, content_range: str | None, body: bytes | None
) -> None:
    response = await app.test_client().get(SEGMENT_URL, headers={"Range": header})
    assert response.status_code == status
    assert response.headers.get("Content-Range") == content_range
    data = await response.get_data()
    if body is not None:
        assert data == body
        assert response.headers["Content-Length"] == str(len(body))
    else:
        assert b"2048 bytes" in data
    assert response.headers["Content-Type"] == (
        "video/mp2t" if status != 416 else "text/plain; charset=utf-8"
    )


async def test_if_range_without_validator_serves_everything(app: QuartTrio) -> None:
    response = await app.test_client().get(
        SEGMENT_URL, headers={"Range": "bytes=0-9", "If-Range": '"some-etag"'}
    )
    assert response.status_code == 200
    assert await response.get_data() == SEGMENT


async def test_head_with_range(app: QuartTrio) -> None:
    response = await app.test_client().head(SEGMENT_URL, headers={"Range": "bytes=0-9"})
    assert response.status_code == 206
    assert response.headers["Content-Range"] == "bytes 0-9/2048"
    assert await response.get_data() == b""


async def test_playlist_ignores_range(app: QuartTrio) -> None:
    response = await app.test_client().get(PLAYLIST_URL, headers={"Range": "bytes=0-9"})
    assert response.status_code == 200
    assert await response.get_data() == PLAYLIST


@pytest.mark.parametrize("accept", ["gzip", "gzip, deflate, br", "br;q=1, gzip;q=0.8", "*"])
async def test_playlist_gzip(app: QuartTrio, accept: str) -> None:
    assert len(PLAYLIST) >= WebConfig().gzip_min_size
    response = await app.test_client().get(PLAYLIST_URL, headers={"Accept-Encoding": accept})
    assert response.status_code == 200
    assert response.headers["Content-Encoding"] == "gzip"
    assert response.headers["Vary"] == "Accept-Encoding"
    data = await response.get_data()
    assert response.headers["Content-Length"] == str(len(data))
    assert len(data) < len(PLAYLIST)
    assert isinstance(data, bytes)
    assert gzip.decompress(data) == PLAYLIST


@pytest.mark.parametrize("accept", ["identity", "gzip;q=0", "deflate", "br, *;q=0"])
async def test_playlist_not_gzipped_when_refused(app: QuartTrio, accept: str) -> None:
    response = await app.test_client().get(PLAYLIST_URL, headers={"Accept-Encoding": accept})
    assert "Content-Encoding" not in response.headers
    assert await response.get_data() == PLAYLIST


async def test_small_playlist_not_gzipped(store: MemoryStore, app: QuartTrio) -> None:
    store.put("live/cam1/tiny.m3u8", b"#EXTM3U\n")
    response = await app.test_client().get(
        "/live/cam1/tiny.m3u8", headers={"Accept-Encoding": "gzip"}
    )
    assert "Content-Encoding" not in response.headers
    assert await response.get_data() == b"#EXTM3U\n"


async def test_segments_never_gzipped(app: QuartTrio) -> None:
    response = await app.test_client().get(SEGMENT_URL, headers={"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in response.headers
    assert await response.get_data() == SEGMENT


@pytest.mark.parametrize(
    "url",
    [
        "/live/cam1/missing.ts",
        "/live/cam1/other.m3u8",
        "/live/nobody/index.m3u8",
        "/nobody/cam1/index.m3u8",
    ],
)
async def test_unknown_stream_or_file_is_404(app: QuartTrio, url: str) -> None:
    response = await app.test_client().get(url)
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-cache"
    assert (await response.get_data(as_text=True)).startswith("404 Not Found: ")


async def test_segment_deleted_from_store_is_404(store: MemoryStore, app: QuartTrio) -> None:
    client = app.test_client()
    assert (await client.get(SEGMENT_URL)).status_code == 200
    store.delete("live/cam1/ab12-00012.ts")
    assert (await client.get(SEGMENT_URL)).status_code == 404


async def test_read_in_thread(store: MemoryStore, status: FakeStatus) -> None:
    app = create_app(store, status, config=WebConfig(read_in_thread=True))
    client = app.test_client()
    assert await (await client.get(SEGMENT_URL)).get_data() == SEGMENT
    assert (await client.get("/live/cam1/missing.ts")).status_code == 404


async def test_cors_any_origin_by_default(app: QuartTrio) -> None:
    client = app.test_client()
    for url in (PLAYLIST_URL, SEGMENT_URL, "/api/streams", "/live/cam1/missing.ts"):
        response = await client.get(url, headers={"Origin": "https://player.example"})
        assert response.headers["Access-Control-Allow-Origin"] == "*", url
        assert "Content-Range" in response.headers["Access-Control-Expose-Headers"]


async def test_cors_configured_origins(store: MemoryStore, status: FakeStatus) -> None:
    app = create_app(store, status, config=WebConfig(cors_origins=("https://ok.example",)))
    client = app.test_client()
    allowed = await client.get(PLAYLIST_URL, headers={"Origin": "https://ok.example"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://ok.example"
    assert allowed.headers["Vary"] == "Accept-Encoding, Origin"
    other = await client.get(PLAYLIST_URL, headers={"Origin": "https://evil.example"})
    assert other.status_code == 200
    assert "Access-Control-Allow-Origin" not in other.headers
    preflight = await client.options(
        SEGMENT_URL,
        headers={"Origin": "https://ok.example", "Access-Control-Request-Method": "GET"},
    )
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://ok.example"


@pytest.mark.parametrize("url", [PLAYLIST_URL, SEGMENT_URL, "/api/streams/live/cam1"])
async def test_cors_preflight(app: QuartTrio, url: str) -> None:
    response = await app.test_client().options(
        url,
        headers={
            "Origin": "https://player.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "range",
        },
    )
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert set(response.headers["Access-Control-Allow-Methods"].split(", ")) == {
        "GET",
        "HEAD",
        "OPTIONS",
    }
    assert response.headers["Access-Control-Allow-Headers"] == "Range"
    assert response.headers["Access-Control-Max-Age"] == "600"
    assert await response.get_data() == b""


async def test_preflight_for_unknown_path_is_404(app: QuartTrio) -> None:
    response = await app.test_client().options(
        "/live/cam1/../x", headers={"Access-Control-Request-Method": "GET"}
    )
    assert response.status_code == 404


async def test_write_methods_not_allowed(app: QuartTrio) -> None:
    client = app.test_client()
    for send in (client.post, client.put, client.delete):
        response = await send(SEGMENT_URL)
        assert response.status_code == 405
        assert "GET" in response.headers["Allow"]
