"""Serve a web app with hypercorn on 127.0.0.1:<free port> inside the test's trio run."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import hypercorn.config
import hypercorn.trio
import trio
from quart_trio import QuartTrio


@asynccontextmanager
async def serving(app: QuartTrio) -> AsyncIterator[str]:
    """Yield the base URL (``http://127.0.0.1:PORT``) while hypercorn serves ``app``."""
    config = hypercorn.config.Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.graceful_timeout = 1.0
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(
            partial(hypercorn.trio.serve, app, config, shutdown_trigger=stop.wait)
        )
        try:
            yield binds[0]
        finally:
            stop.set()


async def raw_request(base: str, request: bytes, *, limit: int = 1 << 20) -> bytes:
    """Send ``request`` bytes verbatim (no client-side normalisation of the target) and return
    one response: the head plus Content-Length bytes of body, or whatever arrives until the
    server closes (hypercorn keeps the socket open after "Connection: close" answers)."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        await stream.send_all(request)
        received = bytearray()
        while len(received) < limit:
            head, found, body = bytes(received).partition(b"\r\n\r\n")
            if found:
                _, headers, _ = parse_response(head + found)
                length = headers.get("content-length")
                if length is not None and len(body) >= int(length):
                    break
            chunk = await stream.receive_some(65536)
            if not chunk:
                break
            received += chunk
    return bytes(received)


def parse_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, lower-cased headers and body of one HTTP/1.1 response (Connection: close)."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body
