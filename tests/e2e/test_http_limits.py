"""The HTTP listener as a hostile client meets it (hypercorn settings the gateway applies)."""

from __future__ import annotations

import pytest
import trio

from tests.conftest import start_gateway, test_settings

pytestmark = pytest.mark.e2e


async def test_silent_http_client_is_dropped_and_others_are_served(nursery: trio.Nursery) -> None:
    gw, _ = await start_gateway(
        nursery, test_settings(http_read_timeout=1, http_keep_alive_timeout=2.0)
    )
    assert gw.bound is not None
    host, port = gw.bound.http_url.removeprefix("http://").split(":")
    slow = await trio.open_tcp_stream(host, int(port))
    await slow.send_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # headers never finished
    healthy = await trio.open_tcp_stream(host, int(port))
    await healthy.send_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    with trio.fail_after(5):
        answer = b""
        while chunk := await healthy.receive_some(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200")
    with trio.fail_after(5):
        while await slow.receive_some(4096):
            pass  # whatever it answers, the connection ends within the keep-alive timeout
