"""Enhanced RTMP v2 reconnect request, with real gateways over TCP: a graceful stop asks the
publishers that announced capsEx Reconnect (only them) to reconnect before closing them; a push
relay asked to reconnect does so at the next keyframe, to the tcUrl it was given; a pull at once."""

from __future__ import annotations

import pytest
import trio

from gateway.hub import Hub
from gateway.pull import PullManager
from gateway.relay import Reconnect, reconnect_target
from gateway.relay_config import parse_target
from gateway.rtmp import ertmp
from gateway.rtmp import events as ev
from gateway.rtmp.connection import NEED_DATA
from tests.conftest import start_gateway, test_settings
from tests.gateway.test_player_fanout import AVC_HEADER, Client, video

DESCRIPTION = "The gateway is shutting down."


async def open_publisher(port: int, key: str, *, reconnect: bool) -> tuple[Client, int]:
    sock = await trio.open_tcp_stream("127.0.0.1", port)
    client = Client(sock)
    extra = {"capsEx": float(ertmp.CAPS_RECONNECT)} if reconnect else None
    client.conn.connect("live", f"rtmp://127.0.0.1:{port}/live", extra=extra)
    client.conn.publish(key)
    seen = await client.pump(lambda e: isinstance(e, ev.Status) and "Publish.Start" in e.code)
    status = seen[-1]
    assert isinstance(status, ev.Status)
    return client, status.stream_id


async def until_closed(client: Client) -> list[object]:
    """Every event until the gateway closes the connection (bounded)."""
    seen: list[object] = []
    with trio.fail_after(15):
        while True:
            data = await client.sock.receive_some(65536)
            client.conn.receive_data(data)
            while (event := client.conn.next_event()) is not NEED_DATA:
                seen.append(event)
                if isinstance(event, ev.ConnectionClosed):
                    return seen


async def test_stop_asks_only_publishers_that_announced_reconnect(nursery: trio.Nursery) -> None:
    gw, stop = await start_gateway(nursery, test_settings(reconnect_request_wait=1.0))
    assert gw.bound is not None
    port = gw.bound.rtmp_port
    enhanced, _ = await open_publisher(port, "a", reconnect=True)
    legacy, _ = await open_publisher(port, "b", reconnect=False)
    stop.set()
    async with trio.open_nursery() as waiting:
        got: dict[str, list[object]] = {}

        async def collect(name: str, client: Client) -> None:
            got[name] = await until_closed(client)

        waiting.start_soon(collect, "enhanced", enhanced)
        waiting.start_soon(collect, "legacy", legacy)
    assert got["enhanced"] == [ev.ReconnectRequest(None, DESCRIPTION), ev.ConnectionClosed()]
    assert got["legacy"] == [ev.ConnectionClosed()]


async def test_push_relay_reconnects_at_a_keyframe_to_the_tc_url_given(
    nursery: trio.Nursery,
) -> None:
    far, _ = await start_gateway(nursery, test_settings())
    other, _ = await start_gateway(nursery, test_settings())
    assert far.bound is not None and other.bound is not None
    push = f"live=rtmp://127.0.0.1:{far.bound.rtmp_port}/live/{{key}}"
    near, _ = await start_gateway(nursery, test_settings(push=push))
    assert near.bound is not None
    pub, sid = await open_publisher(near.bound.rtmp_port, "k", reconnect=False)

    async def feed() -> None:
        pub.conn.send_media(sid, 9, 0, AVC_HEADER)
        for n in range(100_000):
            pub.conn.send_media(sid, 9, 33 * n, video(n, key=n % 10 == 0))
            await pub.sock.send_all(pub.conn.data_to_send())
            await trio.sleep(0.01)

    nursery.start_soon(feed)
    with trio.fail_after(15):
        while (s := far.hub.get("live", "k")) is None or s.publisher is None or not s.gop:
            await trio.sleep(0.02)
    (session,) = [x for x in far.rtmp_sessions.open if x.published]
    assert session.caps.reconnect and session.caps.multitrack  # the relay announced them
    moved_to = f"rtmp://127.0.0.1:{other.bound.rtmp_port}/live"
    assert session.request_reconnect("moving", moved_to)
    await session.flush()
    with trio.fail_after(15):
        while (s := other.hub.get("live", "k")) is None or s.publisher is None or not s.gop:
            await trio.sleep(0.02)
    (relay,) = near.relays.relays("live/k")
    assert relay.target.tc_url == moved_to and relay.reconnects == 1
    assert relay.last_error is None and relay.failures == 0
    # The new target's first video after the header is a keyframe: reconnected at a boundary.
    gop = other.hub.get("live", "k")
    assert gop is not None and gop.gop[0].body[0] == 0x17
    with trio.fail_after(10):  # the old connection was closed by the relay (deleteStream)
        while (old := far.hub.get("live", "k")) is not None and old.publisher:
            await trio.sleep(0.02)
    nursery.cancel_scope.cancel()


def test_reconnect_target_of_relays() -> None:
    current = parse_target("rtmp://a.example:1935/live/key?s=1")
    same = ev.ReconnectRequest(None, "x")
    assert reconnect_target(current, same) is current
    moved = reconnect_target(current, ev.ReconnectRequest("rtmps://b.example/edge", "x"))
    assert (moved.scheme, moved.host, moved.app, moved.name) == (
        "rtmps", "b.example", "edge", "key?s=1"
    )  # fmt: skip
    assert moved.tc_url == "rtmps://b.example/edge"
    # A tcUrl that is not rtmp[s]:// is not followed: the same target.
    assert reconnect_target(current, ev.ReconnectRequest("http://b.example/edge", "x")) is current


def test_pull_follows_a_reconnect_request() -> None:
    settings = test_settings(pull="live/cam=rtmp://a.example/live/main")
    pull = PullManager(settings, Hub()).pulls[0]
    with pytest.raises(Reconnect) as caught:
        pull._on_event(ev.ReconnectRequest("rtmp://b.example:1940/live", "moving"))
    assert caught.value.target.tc_url == "rtmp://b.example:1940/live"
    assert caught.value.target.name == "main"
