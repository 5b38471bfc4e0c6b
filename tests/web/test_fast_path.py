"""The raw-ASGI fast path of web.hls: it answers HLS requests without entering Quart, exactly as
Quart's own HLS routes, hooks and error handlers would; everything else is handed on to Quart."""

from __future__ import annotations

import gzip
import itertools
import logging
from typing import Any

import httpx
import prometheus_client
import pytest
import trio
from quart import request
from quart_trio import QuartTrio

from segmenter.store import MemoryStore
from tests.web.conftest import PLAYLIST, SEGMENT, FakeStatus
from tests.web.server import parse_response, raw_request, serving
from web.app import WebConfig, create_app
from web.hls import PlaylistGzip

PLAYLIST_URL = "/live/cam1/index.m3u8"
SEGMENT_URL = "/live/cam1/ab12-00012.ts"


def entered_quart(app: QuartTrio) -> list[str]:
    """Paths of the requests that reach Quart's request handling from now on."""
    paths: list[str] = []

    @app.before_request
    async def _seen() -> None:
        paths.append(request.path)

    # Run first, before web.app's own hook (which may answer an OPTIONS itself).
    app.before_request_funcs[None].insert(0, app.before_request_funcs[None].pop())
    return paths


async def asgi_call(
    call: Any, method: str, path: str, headers: list[tuple[bytes, bytes]], query: bytes = b""
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """One request through an ASGI callable as hypercorn would make it: status, headers, body."""
    scope = {
        "type": "http",
        "asgi": {"spec_version": "2.3", "version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8080"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
        "extensions": {},
    }
    requested = False
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    with trio.fail_after(5):
        await call(scope, receive, send)
    assert sent[0]["type"] == "http.response.start"
    assert not sent[-1].get("more_body", False)
    return sent[0]["status"], list(sent[0]["headers"]), b"".join(m["body"] for m in sent[1:])


def http_samples(registry: prometheus_client.CollectorRegistry) -> dict[str, float]:
    out = {}
    for family in registry.collect():
        for sample in family.samples:
            # Counts only: bucket and sum depend on how long each request took.
            if sample.name.startswith("http_request") and sample.name.endswith(
                ("_total", "_count")
            ):
                out[f"{sample.name}{sorted(sample.labels.items())}"] = sample.value
    return out


def hls_store() -> MemoryStore:
    store = MemoryStore()
    store.put("live/cam1/index.m3u8", PLAYLIST)
    store.put("live/cam1/tiny.m3u8", b"#EXTM3U\n")
    store.put("live/cam1/ab12-00012.ts", SEGMENT)
    store.put("live/cam1/init.mp4", b"init")
    store.put("live/cam1/empty.ts", b"")
    return store


HEADER_SETS: list[list[tuple[bytes, bytes]]] = [
    [],
    [(b"accept-encoding", b"gzip, deflate, br")],
    [(b"accept-encoding", b"gzip;q=0"), (b"accept-encoding", b"gzip")],
    [(b"range", b"bytes=0-9")],
    [(b"range", b"bytes=-100")],
    [(b"range", b"bytes=4096-")],
    [(b"range", b"bytes=0-9"), (b"if-range", b'"v1"')],
    [(b"origin", b"https://ok.example")],
    [(b"origin", b"https://evil.example")],
    [(b"origin", b"https://ok.example"), (b"accept-encoding", b"gzip"), (b"range", b"bytes=1-2")],
    [(b"origin", b"https://other.example"), (b"origin", b"https://ok.example")],
    [(b"origin", b"https://ok.example"), (b"access-control-request-method", b"GET")],
]
PATHS = [
    PLAYLIST_URL,
    "/live/cam1/tiny.m3u8",
    SEGMENT_URL,
    "/live/cam1/init.mp4",
    "/live/cam1/empty.ts",
    "/live/cam1/missing.ts",
    "/live/nobody/index.m3u8",
]
# Left to Quart: absolute-form and slash-less targets (Quart parses them), the "api" app.
HANDED_ON = ["http://h/live/cam1/index.m3u8", "x/live/cam1/index.m3u8", "/api/cam1/index.m3u8"]


@pytest.mark.parametrize(
    "config",
    [
        WebConfig(),
        WebConfig(cors_origins=("https://ok.example", "https://two.example"), cors_max_age=9),
        WebConfig(playlist_max_age=0.5, segment_max_age=60, gzip_min_size=10_000),
        WebConfig(read_in_thread=True),
    ],
    ids=["default", "origins", "short", "thread"],
)
async def test_fast_path_answers_exactly_as_quart(config: WebConfig, status: FakeStatus) -> None:
    # The reference is Quart itself: QuartTrio.asgi_app is the method the fast path wraps.
    registries = [prometheus_client.CollectorRegistry() for _ in range(2)]
    fast_app, quart_app = (
        create_app(hls_store(), status, config=config, registry=r) for r in registries
    )
    quart_seen = entered_quart(quart_app)
    fast_seen = entered_quart(fast_app)
    cases = itertools.product(
        PATHS + HANDED_ON, ["GET", "HEAD", "OPTIONS"], HEADER_SETS, [b"", b"_HLS_msn=3&x=%2F"]
    )
    handed_on = 0
    for count, (path, method, headers, query) in enumerate(cases, 1):
        fast = await asgi_call(fast_app.asgi_app, method, path, headers, query)
        reference = await asgi_call(
            lambda s, r, w: QuartTrio.asgi_app(quart_app, s, r, w), method, path, headers, query
        )
        assert fast == reference, (method, path, headers, query)
        assert len(quart_seen) == count
        handed_on += path in HANDED_ON
        assert len(fast_seen) == handed_on, (method, path)
        assert http_samples(registries[0]) == http_samples(registries[1]), (method, path)


async def test_only_hls_requests_skip_quart(app: QuartTrio) -> None:
    seen = entered_quart(app)
    client = app.test_client()
    for url in (PLAYLIST_URL, SEGMENT_URL, "/live/cam1/missing.ts"):
        assert (await client.get(url)).status_code in (200, 404)
        assert (await client.head(url)).status_code in (200, 404)
        assert (await client.options(url)).status_code == 204
    assert seen == []
    for url in ("/healthz", "/live/cam1/", "/live/cam1/index.m3u8/", "/live/cam1/x.txt"):
        await client.get(url)
    assert (await client.post(PLAYLIST_URL)).status_code == 405
    assert seen == [
        "/healthz",
        "/live/cam1/",
        "/live/cam1/index.m3u8/",
        "/live/cam1/x.txt",
        PLAYLIST_URL,
    ]


async def test_query_string_is_ignored(app: QuartTrio) -> None:
    response = await app.test_client().get(PLAYLIST_URL, query_string={"_HLS_msn": "12"})
    assert response.status_code == 200
    assert await response.get_data() == PLAYLIST


async def test_percent_encoded_path_is_the_decoded_name(app: QuartTrio) -> None:
    # Routing sees the decoded path (hypercorn decodes it for Quart and the fast path alike).
    seen = entered_quart(app)
    targets = {
        "/live/c%61m1/%69ndex.m3u8": 200,
        "/live%2Fcam1/index.m3u8": 200,  # the same three components
        "/live/cam1%2Fx/index.m3u8": 404,  # four components: no HLS route, Quart's 404
        "/live/cam1/%2e%2e%2Findex.m3u8": 404,
    }
    async with serving(app) as base:
        for target, expected in targets.items():
            raw = await raw_request(
                base, f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
            )
            code, headers, body = parse_response(raw)
            assert code == expected, target
            if code == 200:
                assert body == PLAYLIST
                assert headers["content-type"] == "application/vnd.apple.mpegurl"
    assert seen == ["/live/cam1/x/index.m3u8", "/live/cam1/../index.m3u8"]


async def test_raw_keep_alive_exchange_over_hypercorn(app: QuartTrio) -> None:
    requests = (
        b"GET /live/cam1/index.m3u8?x=1 HTTP/1.1\r\nHost: x\r\nAccept-Encoding: identity\r\n\r\n"
        b"HEAD /live/cam1/ab12-00012.ts HTTP/1.1\r\nHost: x\r\nRange: bytes=10-19\r\n\r\n"
        b"OPTIONS /live/cam1/ab12-00012.ts HTTP/1.1\r\nHost: x\r\nOrigin: https://a.example\r\n"
        b"Access-Control-Request-Method: GET\r\nAccess-Control-Request-Headers: range\r\n\r\n"
        b"GET /live/cam1/ab12-00012.ts HTTP/1.1\r\nHost: x\r\nRange: bytes=2040-\r\n"
        b"Connection: close\r\n\r\n"
    )
    async with serving(app) as base:
        host, port = base.removeprefix("http://").rsplit(":", 1)
        stream = await trio.open_tcp_stream(host, int(port))
        async with stream:
            await stream.send_all(requests)
            received = b""
            with trio.fail_after(5):
                while b"\r\n\r\n" + SEGMENT[2040:] not in received:
                    chunk = await stream.receive_some(65536)
                    assert chunk, received
                    received += chunk
    heads = received.split(b"HTTP/1.1 ")[1:]
    assert [int(h[:3]) for h in heads] == [200, 206, 204, 206]
    get, head, preflight, ranged = (parse_response(b"HTTP/1.1 " + h) for h in heads)
    assert get[2] == PLAYLIST
    assert get[1]["content-length"] == str(len(PLAYLIST))
    assert head[1]["content-range"] == "bytes 10-19/2048"
    assert head[1]["content-length"] == "10"
    assert head[2] == b""  # no body: the next response follows the head directly
    assert preflight[1]["access-control-allow-headers"] == "Range"
    assert preflight[1]["access-control-allow-origin"] == "*"
    assert preflight[1]["content-length"] == "0"
    assert ranged[1]["content-range"] == "bytes 2040-2047/2048"
    assert ranged[2] == SEGMENT[2040:]


async def test_request_with_body_is_left_to_quart(app: QuartTrio) -> None:
    seen = entered_quart(app)
    async with serving(app) as base:
        raw = await raw_request(
            base,
            b"GET /live/cam1/index.m3u8 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            b"Connection: close\r\n\r\nhello",
        )
    code, _, body = parse_response(raw)
    assert (code, body) == (200, PLAYLIST)
    assert seen == [PLAYLIST_URL]


class ExplodingStore(MemoryStore):
    def get(self, name: str) -> bytes | None:
        raise OSError("disk on fire")


@pytest.mark.parametrize("read_in_thread", [False, True])
async def test_store_error_is_quarts_500(
    status: FakeStatus, caplog: pytest.LogCaptureFixture, read_in_thread: bool
) -> None:
    registry = prometheus_client.CollectorRegistry()
    app = create_app(
        ExplodingStore(), status, config=WebConfig(read_in_thread=read_in_thread), registry=registry
    )
    with caplog.at_level(logging.ERROR, logger="web.app"):
        response = await app.test_client().get(SEGMENT_URL)
    assert response.status_code == 500
    assert (await response.get_data(as_text=True)).startswith("500 Internal Server Error")
    assert response.headers["Cache-Control"] == "no-cache"
    assert any("unhandled error" in r.getMessage() for r in caplog.records)
    # Counted once, by Quart, not also by the fast path that handed it on.
    assert (
        registry.get_sample_value(
            "http_requests_total",
            {"route": "/<name:app>/<name:key>/<segment:file>", "status": "500"},
        )
        == 1
    )


async def test_reserved_app_name_keeps_json_errors(app: QuartTrio) -> None:
    response = await app.test_client().get("/api/streams/index.m3u8")
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/json"


async def test_head_of_missing_file_over_hypercorn(app: QuartTrio) -> None:
    async with serving(app) as base, httpx.AsyncClient(base_url=base) as client:
        get = await client.get("/live/cam1/missing.ts")
        head = await client.head("/live/cam1/missing.ts")
    assert get.status_code == head.status_code == 404
    assert head.headers["cache-control"] == "no-cache"
    assert head.headers["content-length"] == get.headers["content-length"] == str(len(get.content))
    assert get.content.endswith(b"does not exist (yet)\n")
    assert head.content == b""


async def test_gzip_follows_playlist_updates(store: MemoryStore, app: QuartTrio) -> None:
    client = app.test_client()
    for sequence in range(7, 12):
        playlist = PLAYLIST.replace(b"SEQUENCE:7", f"SEQUENCE:{sequence}".encode())
        store.put("live/cam1/index.m3u8", playlist)
        for _ in range(2):
            response = await client.get(PLAYLIST_URL, headers={"Accept-Encoding": "gzip"})
            assert response.headers["Content-Encoding"] == "gzip"
            assert gzip.decompress(await response.get_data(as_text=False)) == playlist


def test_playlist_gzip_cache_is_bounded() -> None:
    compress = PlaylistGzip(level=6, entries=3)
    playlists = [PLAYLIST + f"#{n}\n".encode() for n in range(5)]
    for playlist in playlists * 2:
        compressed = compress(playlist)
        assert compressed == gzip.compress(playlist, compresslevel=6, mtime=0)
        assert len(compress) <= 3
    copy = bytes(bytearray(playlists[4]))
    assert copy is not playlists[4]
    assert compress(copy) is compress(playlists[4])  # by content, not identity
