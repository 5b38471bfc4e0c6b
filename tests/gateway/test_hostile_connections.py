"""Many connections: a peer hammering a full RTMP server is refused at accept, counted, and
logged once per REFUSAL_LOG_INTERVAL instead of once per attempt; idle connections hold a small
read buffer."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing

from gateway.config import Settings
from gateway.hub import Hub
from gateway.metrics import Metrics
from gateway.server import (
    FIRST_RECEIVE_SIZE,
    RECEIVE_SIZE,
    REFUSAL_LOG_INTERVAL,
    Session,
    serve_rtmp,
)


async def refused(port: int) -> None:
    """Connect; the server closes at once (EOF or reset, never a byte)."""
    sock = await trio.open_tcp_stream("127.0.0.1", port)
    try:
        assert await sock.receive_some(10) == b""
    except trio.BrokenResourceError:
        pass  # reset: closed with our bytes unread
    finally:
        await sock.aclose()


async def test_refusals_at_the_limit_are_counted_and_logged_once_per_interval(
    nursery: trio.Nursery, mock_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(host="127.0.0.1", rtmp_port=0, max_connections=2, setup_timeout=1e6)
    metrics = Metrics()
    bound = await nursery.start(serve_rtmp, settings, Hub(), metrics)
    port = bound[0][1]
    held = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(2)]
    # The mock clock stands still (no timeout would ever fire): yield until both are accepted.
    for _ in range(100_000):
        if metrics.connections_active._value.get() == 2:
            break
        await trio.lowlevel.checkpoint()
    assert metrics.connections_active._value.get() == 2
    with caplog.at_level(logging.WARNING, logger="gateway.rtmp"):
        for _ in range(50):
            await refused(port)
        lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
        assert len(lines) == 1 and "max_connections (2) reached" in lines[0]
        mock_clock.jump(REFUSAL_LOG_INTERVAL)
        await refused(port)
    lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(lines) == 2 and lines[1].endswith("(49 more since the last line)")
    assert metrics.connections_refused._value.get() == 51
    for sock in held:
        await sock.aclose()


async def test_connections_read_into_4_kib_until_data_fills_it() -> None:
    """Idle connections (up to max_connections of them) hold 4 KiB of read buffer, not 64 KiB;
    the first read that fills it switches the connection to 64 KiB reads."""
    a, b = trio.socket.socketpair()
    ours, peer = trio.SocketStream(a), trio.SocketStream(b)
    session = Session(ours, "peer:1", Settings(), Hub(), Metrics())
    receive = session._receiver()
    await peer.send_all(b"x" * 1537)  # a handshake's C0+C1
    assert len(await receive()) == 1537
    await peer.send_all(b"y" * 200_000)
    first = await receive()
    assert len(first) == FIRST_RECEIVE_SIZE and bytes(first[:1]) == b"y"
    first_copy = bytes(first)
    second = await receive()
    assert len(second) == RECEIVE_SIZE
    assert first_copy == bytes(first)  # the earlier view still shows its own bytes
    await ours.aclose()
    await peer.aclose()


async def test_one_address_gets_at_most_max_connections_per_ip(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(host="127.0.0.1", rtmp_port=0, max_connections_per_ip=2)
    metrics = Metrics()
    bound = await nursery.start(serve_rtmp, settings, Hub(), metrics)
    port = bound[0][1]
    held = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(2)]
    with trio.fail_after(5):
        while metrics.connections_active._value.get() < 2:
            await trio.sleep(0.01)
    with caplog.at_level(logging.WARNING, logger="gateway.rtmp"):
        await refused(port)
    assert "max_connections_per_ip (2) reached" in caplog.text
    assert metrics.connections_refused._value.get() == 1
    await held.pop().aclose()
    with trio.fail_after(5):
        while metrics.connections_active._value.get() > 1:
            await trio.sleep(0.01)
    again = await trio.open_tcp_stream("127.0.0.1", port)  # a slot is free again
    with trio.fail_after(5):
        while metrics.connections_active._value.get() < 2:
            await trio.sleep(0.01)
    for sock in (*held, again):
        await sock.aclose()
