"""A real HTTP auth hook for tests: hypercorn on loopback serving an ASGI app whose answers the
test chooses (allow, map a name, refuse, hang, garbage, 500), recording every request."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

# What the hook answers to one request: (status, body), or None to never answer.
Answer = tuple[int, bytes] | None


async def lifespan(receive: Any, send: Any) -> None:
    while (await receive())["type"] != "lifespan.shutdown":
        await send({"type": "lifespan.startup.complete"})
    await send({"type": "lifespan.shutdown.complete"})


def allow_all(ask: dict[str, Any]) -> Answer:
    return 200, b""


@dataclass
class HookServer:
    answer: Callable[[dict[str, Any]], Answer] = allow_all
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""
    _stop: trio.Event = field(default_factory=trio.Event)

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        ask = json.loads(body)
        ask["_headers"] = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.requests.append(ask)
        reply = self.answer(ask)
        if reply is None:
            await trio.sleep_forever()
            return
        status, data = reply
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(data))]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data})

    def calls(self, action: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["action"] == action]


async def start_hook(nursery: trio.Nursery, hook: HookServer) -> HookServer:
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.graceful_timeout = 0.1
    bound = await nursery.start(partial(serve, hook.app, config))  # type: ignore[arg-type]
    hook.url = f"{bound[0]}/auth"
    return hook


def json_answer(status: int, value: object) -> Answer:
    return status, json.dumps(value).encode()


def closed_port_url() -> str:
    """An http URL on which nothing listens (a hook that is down)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/auth"


async def start_document(nursery: trio.Nursery, body: bytes, hits: list[str]) -> str:
    """Serve ``body`` (e.g. a JWKS) at any path over real HTTP; ``hits`` records each GET."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        hits.append(scope["path"])
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.graceful_timeout = 0.1
    bound = await nursery.start(partial(serve, app, config))  # type: ignore[arg-type]
    return f"{bound[0]}/jwks.json"
