"""Requests in flight per client address: the next one past the limit is answered 429."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing

from web.peerlimit import per_address_limit


async def test_an_address_at_its_limit_gets_429_until_a_request_ends() -> None:
    release = trio.Event()
    entered: list[str] = []

    async def slow(scope: Any, receive: Any, send: Any) -> None:
        entered.append(scope["client"][0])
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    refusals: list[int] = []
    app = per_address_limit(slow, 2, lambda: refusals.append(1))
    statuses: list[int] = []

    async def request(ip: str) -> None:
        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        scope = {"type": "http", "client": (ip, 1234), "path": "/x", "headers": []}
        await app(scope, None, send)  # type: ignore[arg-type]

    async with trio.open_nursery() as nursery:
        for _ in range(2):
            nursery.start_soon(request, "192.0.2.1")
        nursery.start_soon(request, "192.0.2.2")  # another address is not counted with them
        await trio.testing.wait_all_tasks_blocked()
        await request("192.0.2.1")  # the third of one address: refused at once
        assert statuses == [429] and refusals == [1]
        release.set()
    assert sorted(statuses) == [200, 200, 200, 429]
    assert entered.count("192.0.2.1") == 2
    await request("192.0.2.1")  # the earlier ones ended: counted down, no leak
    assert statuses[-1] == 200


async def test_zero_means_no_limit() -> None:
    async def inner(scope: Any, receive: Any, send: Any) -> None:
        return None

    assert per_address_limit(inner, 0) is inner
