"""An HTTP client that requests a large answer and never reads it is dropped after the send
timeout (web.tcp: TCP_USER_TIMEOUT on the listening socket); hypercorn alone keeps it forever."""

from __future__ import annotations

import socket
from functools import partial

import hypercorn.trio
import pytest
import trio
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, Scope

from web.tcp import HttpServerConfig, set_send_timeout

BODY = bytes(8 << 20)  # far more than the socket buffers of both ends hold


async def stalled_client_outcome(send_timeout: float, wait: float) -> tuple[bool, int]:
    """(whether the app's answer ended within ``wait`` s, bytes the client could still read)."""
    finished = trio.Event()

    async def app(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-length", str(len(BODY)).encode())],
                }
            )
            await send({"type": "http.response.body", "body": BODY, "more_body": False})
        finally:
            finished.set()

    config = HttpServerConfig()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.graceful_timeout = 0.5
    config.send_timeout = send_timeout
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(
            partial(hypercorn.trio.serve, app, config, shutdown_trigger=stop.wait)
        )
        host, port = binds[0].removeprefix("http://").rsplit(":", 1)
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.connect((host, int(port)))
        client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        with trio.move_on_after(wait):
            await finished.wait()
        ended = finished.is_set()
        client.setblocking(False)
        received = 0
        try:
            while chunk := client.recv(1 << 20):
                received += len(chunk)
        except (BlockingIOError, ConnectionResetError):
            pass
        client.close()
        stop.set()
        nursery.cancel_scope.deadline = trio.current_time() + 2
    return ended, received


async def test_client_that_never_reads_is_dropped_after_the_send_timeout() -> None:
    ended, received = await stalled_client_outcome(send_timeout=1.0, wait=6.0)
    assert ended  # the kernel aborted the connection: hypercorn's write failed, the app ended
    assert received < len(BODY)


async def test_without_the_timeout_the_stalled_client_holds_its_connection() -> None:
    """The reason for web.tcp: with hypercorn's own settings nothing ends this connection."""
    ended, _ = await stalled_client_outcome(send_timeout=0.0, wait=2.5)
    assert not ended


def test_set_send_timeout_is_inherited_by_accepted_sockets() -> None:
    with socket.socket() as listener:
        assert set_send_timeout(listener, 2.5)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        with socket.create_connection(listener.getsockname()) as _, listener.accept()[0] as peer:
            assert peer.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 2500


@pytest.mark.parametrize("bind", ["127.0.0.1:0"])
def test_config_sets_the_option_on_its_listening_sockets(bind: str) -> None:
    config = HttpServerConfig()
    config.bind = [bind]
    config.send_timeout = 30.0
    sockets = config.create_sockets()
    try:
        (sock,) = sockets.insecure_sockets
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 30_000
    finally:
        for sock in sockets.insecure_sockets:
            sock.close()
