"""HLS delivery: playlists and segments straight out of the store (RFC 8216 §4, RFC 9110)."""

from __future__ import annotations

import gzip
from typing import TYPE_CHECKING

import trio
from quart import Response, abort, request
from quart_trio import QuartTrio

from segmenter.store import Store
from web.httputil import Unsatisfiable, accepts_gzip, parse_byte_range
from web.names import PLAYLIST_MIME, segment_mime, store_name

if TYPE_CHECKING:
    from web.app import WebConfig


def playlist_cache_control(max_age: float) -> str:
    # RFC 9111 §1.2.2: max-age takes whole seconds; below one second ask for revalidation.
    seconds = int(max_age)
    return f"public, max-age={seconds}" if seconds >= 1 else "no-cache"


def segment_cache_control(max_age: int) -> str:
    # RFC 8246: "immutable" stops browsers revalidating a segment they already hold.
    return f"public, max-age={max_age}, immutable"


def body_response(data: bytes, status: int, headers: dict[str, str]) -> Response:
    """A response whose Content-Length is the body's, with the body dropped for HEAD.

    Hypercorn drops HEAD bodies anyway; dropping it here keeps the test client honest too.
    """
    head = request.method == "HEAD"
    response = Response(b"" if head else data, status=status, headers=headers)
    response.headers["Content-Length"] = str(len(data))
    return response


def install(web: QuartTrio, store: Store, config: WebConfig) -> None:
    async def read(app: str, key: str, file: str) -> bytes:
        name = store_name(app, key, file)
        if name is None:
            abort(404, "no such stream file")
        if config.read_in_thread:
            data = await trio.to_thread.run_sync(store.get, name)
        else:
            data = store.get(name)
        if data is None:
            abort(404, f"{file} of stream {app}/{key} does not exist (yet)")
        return data

    @web.route("/<name:app>/<name:key>/<playlist:file>", methods=["GET"])
    async def playlist(app: str, key: str, file: str) -> Response:
        data = await read(app, key, file)
        headers = {
            "Content-Type": PLAYLIST_MIME,
            "Cache-Control": playlist_cache_control(config.playlist_max_age),
            # The body depends on Accept-Encoding (RFC 9110 §12.5.5).
            "Vary": "Accept-Encoding",
        }
        if len(data) >= config.gzip_min_size and accepts_gzip(
            request.headers.get("Accept-Encoding")
        ):
            # mtime=0: identical playlists compress to identical bytes.
            data = gzip.compress(data, compresslevel=config.gzip_level, mtime=0)
            headers["Content-Encoding"] = "gzip"
        return body_response(data, 200, headers)

    @web.route("/<name:app>/<name:key>/<segment:file>", methods=["GET"])
    async def segment(app: str, key: str, file: str) -> Response:
        data = await read(app, key, file)
        headers = {
            "Content-Type": segment_mime(file),
            "Cache-Control": segment_cache_control(config.segment_max_age),
            "Accept-Ranges": "bytes",
        }
        wanted = parse_byte_range(request.headers.get("Range"), len(data))
        if "If-Range" in request.headers:
            # We send no validators, so no If-Range matches: send it all (RFC 9110 §13.1.5).
            wanted = None
        if wanted is None:
            return body_response(data, 200, headers)
        headers["Content-Range"] = wanted.content_range(len(data))
        if isinstance(wanted, Unsatisfiable):
            headers["Content-Type"] = "text/plain; charset=utf-8"
            headers["Cache-Control"] = "no-cache"
            message = f"416 Range Not Satisfiable: {file} has {len(data)} bytes\n"
            return body_response(message.encode(), 416, headers)
        part = data[wanted.start : wanted.end + 1]
        return body_response(part, 206, headers)
