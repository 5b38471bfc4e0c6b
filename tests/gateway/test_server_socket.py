"""The session's socket read paths over real loopback TCP: memory streams take another path.

Every test runs twice: with the shared reader (rtmp_read_interval > 0: gateway.readmux reads all
publishing sockets per tick) and with each connection waiting on its own socket (0): wait when
drained, SO_RCVLOWAT mid-message, fairness, lazily moved idle deadline.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from gateway.config import Settings
from gateway.hub import Hub, Stream
from gateway.metrics import Metrics
from gateway.rtmp import events as ev
from gateway.rtmp.connection import NEED_DATA, Connection, Role
from gateway.server import serve_rtmp
from segmenter.flv import FlvTag

AVC_HEADER = b"\x17\x00\x00\x00\x00\x01\x64\x00\x1f\xff\xe1\x00\x00\x01\x00\x00"


@pytest.fixture(params=[0.005, 0.0], ids=["shared-reader", "own-reader"])
def read_interval(request: pytest.FixtureRequest) -> float:
    return float(request.param)


async def start_server(
    nursery: trio.Nursery, **settings: object
) -> tuple[int, Hub, Metrics, dict[str, list[FlvTag]]]:
    """Run serve_rtmp on a free port; the tags published on each live/KEY are collected by KEY."""
    hub, metrics = Hub(), Metrics()
    seen: dict[str, list[FlvTag]] = defaultdict(list)
    hub_settings = Settings(host="127.0.0.1", rtmp_port=0, **settings)  # type: ignore[arg-type]

    def started(stream: Stream) -> None:
        tags = seen[stream.key]
        hub.add_sink(stream, lambda item: tags.append(item) if isinstance(item, FlvTag) else None)

    hub._on_stream_started = started
    bound = await nursery.start(serve_rtmp, hub_settings, hub, metrics)
    return bound[0][1], hub, metrics, seen


async def publisher(port: int, key: str) -> tuple[trio.SocketStream, Connection, int]:
    sock = await trio.open_tcp_stream("127.0.0.1", port)
    conn = Connection(role=Role.CLIENT)
    conn.connect("live", f"rtmp://127.0.0.1:{port}/live")
    conn.publish(key)
    status = (await pump_until(sock, conn, _publish_started))[-1]
    assert isinstance(status, ev.Status)
    return sock, conn, status.stream_id


def _publish_started(event: object) -> bool:
    return isinstance(event, ev.Status) and event.code == "NetStream.Publish.Start"


async def pump_until(
    sock: trio.SocketStream, conn: Connection, done: Callable[[object], bool]
) -> list[object]:
    """Exchange bytes with the server until an event satisfies ``done``; the events seen."""
    seen: list[object] = []
    with trio.fail_after(5):
        while True:
            while (event := conn.next_event()) is not NEED_DATA:
                seen.append(event)
                if done(event):
                    return seen
            if out := conn.data_to_send():
                await sock.send_all(out)
            conn.receive_data(await sock.receive_some(65536))


async def test_large_message_trickled_in_small_pieces_arrives_whole(
    nursery: trio.Nursery, read_interval: float
) -> None:
    # A 300 kB keyframe sent in 1 kB writes: the reader waits on SO_RCVLOWAT mid-message and
    # must still deliver it complete, followed by a small message sent right after.
    port, _, _, tags = await start_server(nursery, rtmp_read_interval=read_interval)
    seen = tags["big"]
    sock, conn, sid = await publisher(port, "big")
    body = b"\x17\x01\x00\x00\x00" + bytes(range(256)) * 1200
    conn.send_media(sid, 9, 0, AVC_HEADER)
    conn.send_media(sid, 9, 40, body)
    conn.send_media(sid, 8, 41, b"\xaf\x01abc")
    out = conn.data_to_send()
    for i in range(0, len(out), 1000):
        await sock.send_all(out[i : i + 1000])
        if i % 50_000 == 0:
            await trio.sleep(0.01)
    with trio.fail_after(5):
        while len(seen) < 3:
            await trio.sleep(0.01)
    assert [(t.timestamp, bytes(t.body)) for t in seen[1:]] == [(40, body), (41, b"\xaf\x01abc")]
    await sock.aclose()


async def test_silent_publisher_hits_the_idle_timeout(
    nursery: trio.Nursery, read_interval: float
) -> None:
    port, hub, metrics, tags = await start_server(
        nursery, idle_timeout=0.5, rtmp_read_interval=read_interval
    )
    sock, conn, sid = await publisher(port, "quiet")
    for i in range(20):  # keep it busy for longer than the timeout first: not idle yet
        conn.send_media(sid, 8, i * 20, b"\xaf\x01" + bytes(100))
        await sock.send_all(conn.data_to_send())
        await trio.sleep(0.05)
    last = trio.current_time()
    with trio.fail_after(5):
        assert await sock.receive_some(65536) == b""  # the server closes the connection
    waited = trio.current_time() - last
    assert 0.4 <= waited <= 1.5
    assert len(tags["quiet"]) == 20
    assert metrics.protocol_errors.labels("idle-timeout")._value.get() == 1
    stream = hub.get("live", "quiet")
    assert stream is not None and stream.publisher is None


FLOODER = """
import socket, sys
sock = socket.socket(fileno=int(sys.argv[1]))
sock.setblocking(True)
block = open(sys.argv[2], "rb").read()
try:
    while True:
        sock.sendall(block)
except OSError:
    pass
"""


async def test_a_flooding_publisher_does_not_starve_another(
    nursery: trio.Nursery, tmp_path: Path, read_interval: float
) -> None:
    # One publisher's bytes come from another process as fast as loopback takes them, so its
    # socket always has a full read waiting; another sends a message every 10 ms and each must
    # still be taken in promptly: the reader yields after every read that filled its buffer.
    port, _, _, seen = await start_server(nursery, rtmp_read_interval=read_interval)
    flood_sock, flood, fsid = await publisher(port, "flood")
    calm_sock, calm, csid = await publisher(port, "calm")
    for ts in range(20_000):  # small messages: parsing is slower than loopback can send them
        flood.send_media(fsid, 9, ts % 50_000, b"\x27\x01\x00\x00\x00" + bytes(100))
    block = tmp_path / "block"
    block.write_bytes(flood.data_to_send())  # starts with a full (fmt 0) header: repeatable
    fd = flood_sock.socket.fileno()
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-c", FLOODER, str(fd), str(block)], pass_fds=[fd]
    )
    try:
        await trio.sleep(0.3)
        delays = []
        for i in range(30):
            ts = 100_000 + i
            calm.send_media(csid, 8, ts, b"\xaf\x01" + bytes(50))
            sent = trio.current_time()
            await calm_sock.send_all(calm.data_to_send())
            with trio.fail_after(5):
                while not seen["calm"] or seen["calm"][-1].timestamp != ts:
                    await trio.sleep(0.001)
            delays.append(trio.current_time() - sent)
            await trio.sleep(0.01)
        # A liveness bound, not a speed target: one 64 KiB read of tiny messages alone takes
        # ~10-30 ms to parse here; a reader that never yielded would hold the calm one for
        # as long as the flood lasts.
        assert sorted(delays)[len(delays) // 2] < 0.25, delays
        assert len(seen["flood"]) > 20_000  # the flood was being read meanwhile
    finally:
        proc.kill()
        await proc.wait()
        await flood_sock.aclose()
        await calm_sock.aclose()


async def test_acks_and_republish_on_one_connection(
    nursery: trio.Nursery, read_interval: float
) -> None:
    # The reader's writes (acknowledgements, answers to unpublish and publish) still go out,
    # and a connection that unpublishes and publishes again is read throughout.
    port, hub, _, tags = await start_server(nursery, rtmp_read_interval=read_interval)
    sock, conn, sid = await publisher(port, "first")
    body = b"\x27\x01\x00\x00\x00" + bytes(500_000)
    for i in range(12):  # 6 MB: more than two 2.5 MB acknowledgement windows
        conn.send_media(sid, 9, i, body)
        await sock.send_all(conn.data_to_send())
    with trio.fail_after(5):
        while conn.peer_acknowledged < 5_000_000:
            conn.receive_data(await sock.receive_some(65536))
            while conn.next_event() is not NEED_DATA:
                pass
    with trio.fail_after(5):
        while len(tags["first"]) < 12:
            await trio.sleep(0.01)
    conn.delete_stream(sid)
    conn.publish("second")
    status = (await pump_until(sock, conn, _publish_started))[-1]
    assert isinstance(status, ev.Status)
    first = hub.get("live", "first")
    assert first is None or first.publisher is None
    conn.send_media(status.stream_id, 8, 7, b"\xaf\x01xyz")
    await sock.send_all(conn.data_to_send())
    with trio.fail_after(5):
        while not tags["second"]:
            await trio.sleep(0.01)
    assert bytes(tags["second"][0].body) == b"\xaf\x01xyz"
    await sock.aclose()


async def test_a_publisher_that_also_plays_gets_its_media(
    nursery: trio.Nursery, read_interval: float
) -> None:
    # Publishing, then playing its own stream on the same connection: the connection leaves
    # the shared reader (it has a player to feed) and both directions keep working.
    port, _, _, tags = await start_server(nursery, rtmp_read_interval=read_interval)
    sock, conn, sid = await publisher(port, "loop")
    conn.send_media(sid, 9, 0, AVC_HEADER)
    conn.send_media(sid, 9, 0, b"\x17\x01\x00\x00\x00key")
    await sock.send_all(conn.data_to_send())
    conn.play("loop")
    await pump_until(
        sock, conn, lambda e: isinstance(e, ev.Status) and e.code == "NetStream.Play.Start"
    )
    # (No GOP cache in this hub: the player starts at the next keyframe.)
    conn.send_media(sid, 9, 40, b"\x17\x01\x00\x00\x00key2")
    conn.send_media(sid, 8, 41, b"\xaf\x01late")
    await sock.send_all(conn.data_to_send())
    events = await pump_until(
        sock, conn, lambda e: isinstance(e, ev.Media) and e.body == b"\xaf\x01late"
    )
    assert any(isinstance(e, ev.Media) and e.body.endswith(b"key2") for e in events)
    assert len(tags["loop"]) == 4
    await sock.aclose()


async def test_a_last_message_below_the_mark_is_still_read(
    nursery: trio.Nursery, read_interval: float
) -> None:
    # Between messages a muxed publisher is only read once rtmp_publish_lowat bytes are queued.
    # A complete message smaller than that, with nothing after it, must still arrive (the mark
    # drops to 1 after LOWAT_RESCUE without a read) and the connection must stay up.
    port, hub, _, tags = await start_server(
        nursery, rtmp_read_interval=read_interval, rtmp_publish_lowat=64
    )
    sock, conn, sid = await publisher(port, "tail")
    for i in range(5):  # same type, length and delta: the last ones are tiny type-3 chunks
        conn.send_media(sid, 8, i * 20, b"\xaf\x01x")
        await sock.send_all(conn.data_to_send())
        await trio.sleep(0.05)
    with trio.fail_after(3.5):
        while len(tags["tail"]) < 4:
            await trio.sleep(0.01)
    conn.send_media(sid, 8, 100, b"\xaf\x01x")
    last = conn.data_to_send()
    assert len(last) < 64
    await sock.send_all(last)
    sent = trio.current_time()
    with trio.fail_after(4):
        while len(tags["tail"]) < 6:
            await trio.sleep(0.01)
    assert trio.current_time() - sent < 2.5
    assert [t.timestamp for t in tags["tail"]] == [0, 20, 40, 60, 80, 100]
    stream = hub.get("live", "tail")
    assert stream is not None and stream.publisher is not None
    await sock.aclose()


async def test_a_silent_publisher_is_replaced_by_its_reconnect(
    nursery: trio.Nursery, read_interval: float
) -> None:
    # An encoder whose network died keeps its TCP connection open but sends nothing; its
    # reconnect must get the name after publish_takeover_after, not after idle_timeout.
    hub, metrics = Hub(takeover_after=0.3), Metrics()
    settings = Settings(host="127.0.0.1", rtmp_port=0, rtmp_read_interval=read_interval)
    port = (await nursery.start(serve_rtmp, settings, hub, metrics))[0][1]
    old, old_conn, old_sid = await publisher(port, "cam")
    old_conn.send_media(old_sid, 9, 0, AVC_HEADER)
    await old.send_all(old_conn.data_to_send())
    await trio.sleep(0.4)  # silent since
    new, new_conn, new_sid = await publisher(port, "cam")
    with trio.fail_after(2):
        while await old.receive_some(65536):
            pass  # the server closed the silent holder's connection
    stream = hub.get("live", "cam")
    assert stream is not None and stream.publisher is not None
    assert stream.publisher.peer.endswith(str(new.socket.getsockname()[1]))
    new_conn.send_media(new_sid, 8, 0, b"\xaf\x01new")
    await new.send_all(new_conn.data_to_send())
    with trio.fail_after(2):
        while stream.tags_in < 2:
            await trio.sleep(0.01)
    await new.aclose()
