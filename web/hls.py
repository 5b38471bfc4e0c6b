"""HLS delivery: playlists and segments straight out of the store (RFC 8216 §4, RFC 9110).

The answers are decided by plain functions (``playlist_reply``, ``segment_reply``). They are sent
by a raw-ASGI fast path (``fast_path``) placed in front of Quart, because a playlist is polled by
every viewer every few seconds and Quart's per-request machinery cost more CPU than the answer;
that CPU is taken from ingest on the same trio loop. The Quart routes stay for what the fast path
hands on (other methods -> 405, absolute-form targets, requests with a body, the reserved app
name "api", store errors -> 500) and answer from the same functions, so both send the same bytes.
"""

from __future__ import annotations

import gzip
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import trio
from hypercorn.typing import (
    ASGIReceiveCallable,
    ASGISendCallable,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Scope,
)
from quart import Response, abort, request
from quart_trio import QuartTrio
from werkzeug.datastructures import Headers

from segmenter.store import Store
from web.access import (
    AccessGate,
    Admission,
    admit_request,
    client_ip,
    refusal,
    tokenize_playlist,
)
from web.httputil import (
    Unsatisfiable,
    accepts_gzip,
    cors_headers,
    parse_byte_range,
    plain_error,
    preflight_headers,
)
from web.lowlatency import (
    BadRequest,
    LiveSource,
    Waiters,
    await_copy,
    deadline_seconds,
    parse_reload,
    part_wanted,
    reload_ready,
)
from web.names import PLAYLIST_MIME, segment_mime, store_name
from web.viewers import Viewers, session_of

if TYPE_CHECKING:
    from collections.abc import Coroutine
    from typing import Any

    from web.config import WebConfig
    from web.metrics import HttpMetrics

    # The type of Quart.asgi_app, so that the wrapper can stand in for it.
    ASGIApp = Callable[[Scope, ASGIReceiveCallable, ASGISendCallable], Coroutine[Any, Any, None]]

# The Quart rules; also the route label of the request metrics, whichever path answers.
PLAYLIST_ROUTE = "/<name:app>/<name:key>/<playlist:file>"
SEGMENT_ROUTE = "/<name:app>/<name:key>/<segment:file>"

# status, headers (lower-case names, wire order, Content-Length last), body (also for HEAD).
Reply = tuple[int, list[tuple[str, str]], bytes]


def playlist_cache_control(max_age: float) -> str:
    # RFC 9111 §1.2.2: max-age takes whole seconds; below one second ask for revalidation.
    seconds = int(max_age)
    return f"public, max-age={seconds}" if seconds >= 1 else "no-cache"


def segment_cache_control(max_age: int) -> str:
    # RFC 8246: "immutable" stops browsers revalidating a segment they already hold.
    return f"public, max-age={max_age}, immutable"


def missing_message(app: str, key: str, file: str, ll: LowLatency | None = None) -> str:
    """The 404 text: why the file is not made when the segmenter says (ts.m3u8 of a stream MPEG-TS
    cannot carry), else that it does not exist (yet)."""
    reason = ll.source.missing_reason(app, key, file) if ll is not None else None
    return reason or f"{file} of stream {app}/{key} does not exist (yet)"


class PlaylistGzip:
    """gzip of recently served playlists, by content. A playlist changes once per segment but is
    fetched by every viewer in between, and deflate costs more than the rest of the answer."""

    def __init__(self, level: int, entries: int = 512) -> None:
        self._level = level
        self._entries = entries  # bounds memory at about entries x 2 playlists
        self._cache: dict[bytes, bytes] = {}

    def __call__(self, data: bytes) -> bytes:
        # A MemoryStore hands out the same bytes object each time, whose hash is cached.
        compressed = self._cache.get(data)
        if compressed is None:
            # mtime=0: identical playlists compress to identical bytes.
            compressed = gzip.compress(data, compresslevel=self._level, mtime=0)
            if len(self._cache) >= self._entries:
                del self._cache[next(iter(self._cache))]  # the oldest
            self._cache[data] = compressed
        return compressed

    def __len__(self) -> int:
        return len(self._cache)


def playlist_reply(
    data: bytes,
    accept_encoding: str | None,
    config: WebConfig,
    compress: PlaylistGzip,
    token: str | None = None,
) -> Reply:
    """``token``: a viewer's playback token, put on every URI (read_auth); the answer is then
    that viewer's own, so shared caches must not keep it."""
    cache = playlist_cache_control(config.playlist_max_age)
    if token is not None:
        data = tokenize_playlist(data, token)
        cache = cache.replace("public", "private")
    headers = [
        ("content-type", PLAYLIST_MIME),
        ("cache-control", cache),
        # The body depends on Accept-Encoding (RFC 9110 §12.5.5).
        ("vary", "Accept-Encoding"),
    ]
    if len(data) >= config.gzip_min_size and accepts_gzip(accept_encoding):
        # A tokenized playlist is one viewer's: caching its gzip would only evict shared ones.
        data = compress(data) if token is None else gzip.compress(data, config.gzip_level, mtime=0)
        headers.append(("content-encoding", "gzip"))
    headers.append(("content-length", str(len(data))))
    return 200, headers, data


def segment_reply(
    file: str,
    data: bytes,
    range_header: str | None,
    if_range: bool,
    config: WebConfig,
    private: bool = False,
) -> Reply:
    """``private``: asked with a viewer's token (read_auth), so no shared cache may keep it."""
    cache = segment_cache_control(config.segment_max_age)
    headers = [
        ("content-type", segment_mime(file)),
        ("cache-control", cache.replace("public", "private") if private else cache),
        ("accept-ranges", "bytes"),
    ]
    # We send no validators, so no If-Range matches: send it all (RFC 9110 §13.1.5).
    wanted = None if if_range else parse_byte_range(range_header, len(data))
    if wanted is None:
        status, body = 200, data
    elif isinstance(wanted, Unsatisfiable):
        headers[0] = ("content-type", "text/plain; charset=utf-8")
        headers[1] = ("cache-control", "no-cache")
        headers.append(("content-range", wanted.content_range(len(data))))
        status, body = 416, f"416 Range Not Satisfiable: {file} has {len(data)} bytes\n".encode()
    else:
        headers.append(("content-range", wanted.content_range(len(data))))
        status, body = 206, data[wanted.start : wanted.end + 1]
    headers.append(("content-length", str(len(body))))
    return status, headers, body


def blocking_cache_control(target_duration: int, private: bool = False) -> str:
    # rfc8216bis §6.2.5.2: a blocking answer stays a valid answer to its query (later versions
    # hold the part asked for too), so caches keyed by the query may keep it a while.
    return f"{'private' if private else 'public'}, max-age={3 * target_duration}"


def read_refusal(admission: Admission, app: str, key: str) -> Reply:
    """The answer to a read refused by access control (a 403 names the stream)."""
    message = admission.reason if admission.status == 401 else f"{app}/{key}: {admission.reason}"
    return refusal(admission, message)


@dataclass(frozen=True, slots=True)
class LowLatency:
    """What LL-HLS delivery needs: the live playlists and where to wait for their changes."""

    source: LiveSource
    waiters: Waiters


async def low_latency_reply(
    ll: LowLatency,
    app: str,
    key: str,
    file: str,
    query: str,
    accept_encoding: str | None,
    config: WebConfig,
    compress: PlaylistGzip,
    range_header: str | None = None,
    if_range: bool = False,
    token: str | None = None,
) -> Reply | None:
    """The answer to a request for the LL-HLS playlist (blocking reload, delta update, or
    plain) or for a part (ready, or hinted and waited for) while this process makes them;
    None when the store's answer applies (another file, no live LL-HLS playlist here).
    ``token``: the viewer's playback token under read_auth (see playlist_reply)."""
    path = f"{app}/{key}"
    playlist = ll.source.live_playlist(app, key, file)
    if playlist is None and ll.source.made_elsewhere(app, key):
        # Another worker makes the stream and copies its LL-HLS state here from the first
        # request on (web.lowlatency.await_copy): wait for that copy, briefly.
        found = partial(ll.source.live_playlist, app, key, file)
        playlist = await await_copy(ll.source, ll.waiters, app, key, found)
    if playlist is None or playlist.part_target is None:
        return None
    deadline = trio.current_time() + deadline_seconds(playlist)
    if file.endswith(".m3u8"):
        try:
            reload = parse_reload(query)
            with trio.move_on_at(deadline):
                while not reload_ready(reload, playlist.position, playlist.part_target):
                    await ll.waiters.wait(path)
                    fresh = ll.source.live_playlist(app, key, file)
                    if fresh is None or fresh.part_target is None:
                        return None  # the stream was retired meanwhile: what the store has
                    playlist = fresh
                text = playlist.render(skip=reload.skip).encode()
                status, headers, body = playlist_reply(
                    text, accept_encoding, config, compress, token
                )
                if reload.msn is not None:
                    cache = blocking_cache_control(playlist.target_duration, token is not None)
                    headers = [(n, cache if n == "cache-control" else v) for n, v in headers]
                return status, headers, body
        except BadRequest as exc:
            headers, body = plain_error(400, "Bad Request", str(exc))
            return 400, headers, body
        headers, body = plain_error(
            503,
            "Service Unavailable",
            f"{file} of {path} did not reach _HLS_msn/_HLS_part within "
            f"{deadline_seconds(playlist):g} s",
        )
        return 503, headers, body
    if not file.endswith(".m4s"):
        return None
    data = ll.source.live_part(app, key, file)
    if data is None and part_wanted(file, playlist) is True:
        with trio.move_on_at(deadline):
            while (data := ll.source.live_part(app, key, file)) is None:
                await ll.waiters.wait(path)
                fresh = ll.source.live_playlist(app, key, file)
                if fresh is None or part_wanted(file, fresh) is not True:
                    data = ll.source.live_part(app, key, file)
                    break  # made meanwhile, or never: the segment ended before this part
    if data is None:
        return None  # the store's answer (a segment, or 404)
    return segment_reply(file, data, range_header, if_range, config, token is not None)


def install(
    web: QuartTrio,
    store: Store,
    config: WebConfig,
    ll: LowLatency | None = None,
    gate: AccessGate | None = None,
) -> None:
    """The Quart routes: what the fast path hands on (see the module docstring)."""
    compress = PlaylistGzip(config.gzip_level)

    async def admit(app: str, key: str, file: str) -> Admission:
        if gate is None or not gate.read_auth:
            return Admission(True)
        return await admit_request(gate, app, key, renew=file.endswith(".m3u8"))

    async def low_latency(app: str, key: str, file: str, token: str | None) -> Reply | None:
        if ll is None:
            return None
        query = request.query_string.decode("latin-1")
        accept_encoding = request.headers.get("Accept-Encoding")
        range_header = request.headers.get("Range")
        if_range = "If-Range" in request.headers
        return await low_latency_reply(
            ll, app, key, file, query, accept_encoding, config, compress, range_header,
            if_range, token,
        )  # fmt: skip

    async def read(app: str, key: str, file: str) -> bytes:
        name = store_name(app, key, file)
        if name is None:
            abort(404, "no such stream file")
        if config.read_in_thread:
            data = await trio.to_thread.run_sync(store.get, name)
        else:
            data = store.get(name)
        if data is None and ll is not None:
            data = await await_copy(ll.source, ll.waiters, app, key, partial(store.get, name))
        if data is None:
            abort(404, missing_message(app, key, file, ll))
        return data

    def send(reply: Reply) -> Response:
        status, headers, body = reply
        # Hypercorn drops HEAD bodies anyway; dropping it here keeps the test client honest too.
        response = Response(b"" if request.method == "HEAD" else body, status, Headers(headers))
        response.headers["Content-Length"] = str(len(body))  # Quart set the sent body's
        return response

    @web.route(PLAYLIST_ROUTE, methods=["GET"])
    async def playlist(app: str, key: str, file: str) -> Response:
        admission = await admit(app, key, file)
        if not admission.allowed:
            return send(read_refusal(admission, app, key))
        reply = await low_latency(app, key, file, admission.token)
        if reply is not None:
            return send(reply)
        data = await read(app, key, file)
        accept_encoding = request.headers.get("Accept-Encoding")
        return send(playlist_reply(data, accept_encoding, config, compress, admission.token))

    @web.route(SEGMENT_ROUTE, methods=["GET"])
    async def segment(app: str, key: str, file: str) -> Response:
        admission = await admit(app, key, file)
        if not admission.allowed:
            return send(read_refusal(admission, app, key))
        if file.endswith(".m4s") and store.get(f"{app}/{key}/{file}") is None:
            reply = await low_latency(app, key, file, admission.token)  # a hinted part coming
            if reply is not None:
                return send(reply)
        data = await read(app, key, file)
        range_header = request.headers.get("Range")
        if_range = "If-Range" in request.headers
        private = admission.token is not None
        return send(segment_reply(file, data, range_header, if_range, config, private))


def fast_path(
    inner: ASGIApp,
    store: Store,
    config: WebConfig,
    metrics: HttpMetrics,
    ll: LowLatency | None = None,
    gate: AccessGate | None = None,
    viewers: Viewers | None = None,
) -> ASGIApp:
    """Wrap Quart's ``asgi_app``: answer GET, HEAD and OPTIONS of ``/<app>/<key>/<file>`` with
    no Quart request context, routing, hooks or Response objects; hand everything else on.

    It must send what Quart would (the routes above, the before/after_request hooks and error
    handlers of web.app), and count the request in the same metrics. A path is ours exactly when
    Quart's URL map would route it to PLAYLIST_ROUTE or SEGMENT_ROUTE: three components that the
    converters (the same patterns as store_name) accept; no other rule has that shape.
    """
    preflight = preflight_headers(config.cors_max_age)
    compress = PlaylistGzip(config.gzip_level)
    # prometheus_client's labels() validates and locks on every call; keep the children.
    counters: dict[tuple[str, int], Callable[[], None]] = {}
    timers: dict[str, Callable[[float], None]] = {}

    def record(route: str, status: int, seconds: float) -> None:
        count = counters.get((route, status))
        if count is None:
            count = counters[route, status] = metrics.requests.labels(
                route=route, status=str(status)
            ).inc
        count()
        observe = timers.get(route)
        if observe is None:
            observe = timers[route] = metrics.duration.labels(route=route).observe
        observe(seconds)

    async def answer(scope: Scope, send: ASGISendCallable) -> bool:
        """Answer the request, or return False (having sent nothing) to hand it on to Quart."""
        started = time.perf_counter()
        if scope["type"] != "http" or scope.get("root_path"):
            return False
        method = scope["method"]
        if method not in ("GET", "HEAD", "OPTIONS"):
            return False  # Quart's 405, with its Allow header
        parts = scope["path"].split("/")
        if len(parts) != 4 or parts[0]:
            return False  # also an absolute-form target, which Quart parses
        _, app, key, file = parts
        name = store_name(app, key, file)
        if name is None or app == "api":
            return False  # Quart's 404 under /api/ is JSON ("api" is a reserved app name anyway)
        playlist = file.endswith(".m3u8")
        origin = accept_encoding = range_header = authorization = user_agent = None
        if_range = False
        for raw_name, raw_value in scope["headers"]:
            # Quart reads the first of repeated headers, as latin-1.
            header = raw_name.lower()
            if header == b"origin":
                if origin is None:
                    origin = raw_value.decode("latin-1")
            elif header == b"accept-encoding":
                if accept_encoding is None:
                    accept_encoding = raw_value.decode("latin-1")
            elif header == b"range":
                if range_header is None:
                    range_header = raw_value.decode("latin-1")
            elif header == b"if-range":
                if_range = True
            elif header == b"authorization":
                if authorization is None:
                    authorization = raw_value.decode("latin-1")
            elif header == b"user-agent":
                if user_agent is None:
                    user_agent = raw_value.decode("latin-1")
            elif header == b"transfer-encoding" or (
                header == b"content-length" and raw_value.strip() != b"0"
            ):
                return False  # a body we would have to drain: rare, leave it to Quart
        route = PLAYLIST_ROUTE if playlist else SEGMENT_ROUTE
        # Replies drop their body for HEAD (but keep its Content-Length); error pages do not, as
        # in Quart (hypercorn does not send them).
        head = method == "HEAD"
        admission = None
        if method != "OPTIONS" and gate is not None and gate.read_auth:
            query = scope["query_string"].decode("latin-1")
            ip = client_ip(scope.get("client"))
            admission = await gate.admit_read(app, key, query, authorization, ip, renew=playlist)
        if method == "OPTIONS":
            # CORS preflight (web.app _start): answered for any route that exists.
            status, headers, body = 204, [*preflight, ("content-length", "0")], b""
        elif admission is not None and not admission.allowed:
            status, headers, body = read_refusal(admission, app, key)
            head = False
        else:
            token = admission.token if admission is not None else None
            try:
                if config.read_in_thread:
                    data = await trio.to_thread.run_sync(store.get, name)
                else:
                    data = store.get(name)
            except Exception:
                return False  # Quart reads again, logs the error and sends its 500 page
            reply = None
            if ll is not None and (file.endswith(".m3u8") or data is None):
                query = scope["query_string"].decode("latin-1")
                reply = await low_latency_reply(
                    ll, app, key, file, query, accept_encoding, config, compress,
                    range_header, if_range, token,
                )  # fmt: skip
            if reply is None and data is None and ll is not None:
                data = await await_copy(ll.source, ll.waiters, app, key, partial(store.get, name))
            if reply is not None:
                status, headers, body = reply
                head = head and status < 400
            elif data is None:
                status, head = 404, False
                message = missing_message(app, key, file, ll)
                headers, body = plain_error(404, "Not Found", message)
            elif playlist:
                status, headers, body = playlist_reply(
                    data, accept_encoding, config, compress, token
                )
            else:
                status, headers, body = segment_reply(
                    file, data, range_header, if_range, config, token is not None
                )
        # web.app _finish: CORS headers set over the response's own, then the metrics.
        vary = next((value for name, value in headers if name == "vary"), None)
        for name, value in cors_headers(config.cors_origins, origin, vary, False):
            if name == "vary" and vary is not None:
                headers = [(n, value if n == "vary" else v) for n, v in headers]
            else:
                headers.append((name, value))
        record(route, status, time.perf_counter() - started)
        if viewers is not None and method == "GET" and status in (200, 206):
            # A player of this stream served (web.viewers).
            viewers.seen(f"{app}/{key}", session_of(client_ip(scope.get("client")), user_agent))
        start: HTTPResponseStartEvent = {
            "type": "http.response.start",
            "status": status,
            "headers": [(n.encode(), v.encode()) for n, v in headers],
        }
        await send(start)
        end: HTTPResponseBodyEvent = {
            "type": "http.response.body",
            "body": b"" if head else body,
            "more_body": False,
        }
        await send(end)
        return True

    async def asgi(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if not await answer(scope, send):
            await inner(scope, receive, send)

    return asgi
