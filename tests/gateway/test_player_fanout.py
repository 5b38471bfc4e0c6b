"""RTMP players fed by their stream's writer (gateway.player.Fanout/Output), over real TCP and
over memory streams: chunks encoded once per stream must decode, for every player, to exactly
the tags it should get, on its own clock; a player that stops reading costs nobody else."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import trio
import trio.testing

from gateway.config import Settings
from gateway.hub import Hub, Stream
from gateway.metrics import Metrics
from gateway.rtmp import events as ev
from gateway.rtmp.connection import NEED_DATA, Connection, Role
from gateway.server import Session, serve_rtmp
from segmenter.flv import FlvTag, TagType
from tests.gateway.test_server_socket import pump_until

AVC_HEADER = b"\x17\x00\x00\x00\x00\x01\x64\x00\x1f\xff\xe1\x00\x00\x01\x00\x00"
AAC_HEADER = b"\xaf\x00\x12\x10"


def video(n: int, key: bool, size: int = 0) -> bytes:
    """A video body that names its frame number (``size`` pads it: > 4096 spans chunks)."""
    return bytes([0x17 if key else 0x27, 0x01, 0, 0, 0]) + b"v%06d" % n + bytes(size)


def audio(n: int) -> bytes:
    return b"\xaf\x01" + b"a%06d" % n  # constant size: the shared header becomes fmt 3


async def start_server(nursery: trio.Nursery, **settings: Any) -> tuple[int, Hub, Metrics]:
    hub, metrics = Hub(gop_cache_bytes=4 << 20), Metrics()
    hub_settings = Settings(host="127.0.0.1", rtmp_port=0, **settings)
    bound = await nursery.start(serve_rtmp, hub_settings, hub, metrics)
    return bound[0][1], hub, metrics


class Client:
    """An RTMP client over TCP: the project's own client Connection."""

    def __init__(self, sock: trio.SocketStream) -> None:
        self.sock, self.conn = sock, Connection(role=Role.CLIENT)
        self.media: list[ev.Media] = []

    @classmethod
    async def open(cls, port: int, rcvbuf: int = 0) -> Client:
        if rcvbuf:  # set before connecting so the window is small from the start
            raw = trio.socket.socket()
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            await raw.connect(("127.0.0.1", port))
            sock = trio.SocketStream(raw)
        else:
            sock = await trio.open_tcp_stream("127.0.0.1", port)
        client = cls(sock)
        client.conn.connect("live", f"rtmp://127.0.0.1:{port}/live")
        return client

    async def pump(self, done: Callable[[object], bool]) -> list[object]:
        seen = await pump_until(self.sock, self.conn, done)
        self.media += [e for e in seen if isinstance(e, ev.Media)]
        return seen

    async def play(self, key: str, *, extra_stream: bool = False) -> int:
        if extra_stream:  # this player's media then come on message stream 2
            self.conn.create_stream()
        self.conn.play(key)
        seen = await self.pump(lambda e: isinstance(e, ev.Status) and "Play.Start" in e.code)
        status = seen[-1]
        assert isinstance(status, ev.Status)
        return status.stream_id

    async def until_body(self, marker: bytes) -> None:
        await self.pump(lambda e: isinstance(e, ev.Media) and marker in e.body)


async def publisher(port: int, key: str) -> tuple[Client, int]:
    pub = await Client.open(port)
    pub.conn.publish(key)
    seen = await pub.pump(lambda e: isinstance(e, ev.Status) and "Publish.Start" in e.code)
    status = seen[-1]
    assert isinstance(status, ev.Status)
    return pub, status.stream_id


async def live_publisher(port: int, key: str) -> tuple[Client, int]:
    """A publisher that has sent the video header and a first keyframe (frame 0)."""
    pub, sid = await publisher(port, key)
    pub.conn.send_media(sid, 9, 0, AVC_HEADER)
    pub.conn.send_media(sid, 9, 0, video(0, key=True))
    await pub.sock.send_all(pub.conn.data_to_send())
    return pub, sid


def frames(received: list[ev.Media]) -> list[tuple[bytes, int]]:
    """(marker, timestamp) of each audio/video frame received (headers left out)."""
    return [(e.body[5:12] if e.type == 9 else e.body[2:9], e.timestamp)
            for e in received if e.type in (8, 9) and e.body[1] == 1]  # fmt: skip


async def test_players_joining_at_different_times_get_every_frame_on_their_own_clock(
    nursery: trio.Nursery,
) -> None:
    port, hub, _ = await start_server(nursery)
    pub, sid = await publisher(port, "s")
    sent: list[tuple[bytes, int]] = []  # (marker, publisher timestamp) of every frame

    async def publish(first: int, count: int) -> None:
        for n in range(first, first + count):
            ts = 1000 + 40 * n
            size = 9000 if n % 7 == 0 else 0  # some frames span three 4096-byte chunks
            pub.conn.send_media(sid, 9, ts, video(n, key=n % 10 == 0, size=size))
            sent.append((b"v%06d" % n, ts))
            for k in (2 * n, 2 * n + 1):
                pub.conn.send_media(sid, 8, ts + 20 * (k % 2), audio(k))
                sent.append((b"a%06d" % k, ts + 20 * (k % 2)))
            if n == first + count // 2:  # mid-stream metadata takes the data chunk stream
                pub.conn.send_media(sid, 18, ts, b"\x02\x00\x0aonMetaData\x05")
            await pub.sock.send_all(pub.conn.data_to_send())
            await trio.sleep(0.002)  # spread over several writer batches

    pub.conn.send_media(sid, 9, 0, AVC_HEADER)
    pub.conn.send_media(sid, 8, 0, AAC_HEADER)
    await pub.sock.send_all(pub.conn.data_to_send())
    await publish(0, 5)
    a = await Client.open(port)
    assert await a.play("s") == 1
    await publish(5, 20)
    b = await Client.open(port)
    assert await b.play("s", extra_stream=True) == 2
    await publish(25, 17)  # ends mid-GOP: c starts from the cached GOP of frame 40
    c = await Client.open(port)
    await c.play("s")
    await publish(42, 30)
    for player in (a, b, c):
        await player.until_body(b"a%06d" % (2 * 71 + 1))
    stream = hub.get("live", "s")
    assert stream is not None and stream.fanout is not None
    # Each starts at the newest keyframe (GOP cache), with the newest metadata, then live.
    for player, first_frame, stream_id, metadata in ((a, 0, 1, 4), (b, 20, 2, 3), (c, 40, 1, 2)):
        got = frames(player.media)
        assert all(e.stream_id == stream_id for e in player.media)
        # Every frame from the player's first keyframe on, in order, none twice, none missing.
        start = sent.index((b"v%06d" % first_frame, 1000 + 40 * first_frame))
        assert [m for m, _ in got] == [m for m, _ in sent[start:]]
        # Its clock starts at that keyframe and runs like the publisher's.
        assert [ts for _, ts in got] == [ts - sent[start][1] for _, ts in sent[start:]]
        # Metadata and headers first; later metadata where it was published.
        assert [e.type for e in player.media[:3]] == [18, 9, 8]
        assert [e.body for e in player.media[1:3]] == [AVC_HEADER, AAC_HEADER]
        assert sum(e.type == 18 for e in player.media) == metadata
    for client in (a, b, c, pub):
        await client.sock.aclose()


async def test_player_that_stops_reading_drops_to_a_keyframe_then_is_disconnected(
    nursery: trio.Nursery,
) -> None:
    port, hub, metrics = await start_server(nursery, player_queue=64, player_max_lag=1.0)
    pub, sid = await live_publisher(port, "slow")
    stalled = await Client.open(port, rcvbuf=4096)
    await stalled.play("slow")
    healthy = await Client.open(port)
    await healthy.play("slow")

    async def read_healthy() -> None:
        conn = healthy.conn
        while True:
            while (event := conn.next_event()) is not NEED_DATA:
                if isinstance(event, ev.Media):
                    healthy.media.append(event)
            if out := conn.data_to_send():
                await healthy.sock.send_all(out)
            conn.receive_data(await healthy.sock.receive_some(1 << 16))

    async with trio.open_nursery() as inner:
        inner.start_soon(read_healthy)
        # 30 fps video at ~8 Mbit/s, paced ~3x real time (a Python reader keeps up with that):
        # the stalled player's socket fills, its backlog hits player_queue, it drops, and once
        # it has been behind for player_max_lag it is disconnected.
        for n in range(1, 1200):
            pub.conn.send_media(sid, 9, n * 33, video(n, key=n % 30 == 0, size=30_000))
            with trio.fail_after(5):  # the publisher is never held up by the stalled player
                await pub.sock.send_all(pub.conn.data_to_send())
            await trio.sleep(0.01)
            if metrics.players_disconnected_slow._value.get():
                break
        last = n
        with trio.fail_after(5):
            while not any(b"v%06d" % last in e.body for e in healthy.media):
                await trio.sleep(0.01)
        inner.cancel_scope.cancel()
    assert metrics.players_disconnected_slow._value.get() == 1
    assert metrics.player_dropped._value.get() > 0
    # The healthy player got every frame, in order.
    assert [m for m, _ in frames(healthy.media)] == [b"v%06d" % n for n in range(0, last + 1)]
    with trio.fail_after(5):  # the server closed the stalled connection
        while await stalled.sock.receive_some(1 << 16):
            pass
    stream = hub.get("live", "slow")
    assert stream is not None
    with trio.fail_after(5):
        while len(stream.players) != 1:
            await trio.sleep(0.01)
    for client in (healthy, pub):
        await client.sock.aclose()


async def test_player_behind_for_a_while_resumes_at_a_keyframe_with_its_clock_intact(
    nursery: trio.Nursery,
) -> None:
    port, hub, _ = await start_server(nursery, player_queue=16, player_max_lag=30.0)
    pub, sid = await live_publisher(port, "late")
    lagging = await Client.open(port, rcvbuf=4096)
    await lagging.play("late")
    for n in range(1, 300):  # not read meanwhile: frames beyond its backlog are dropped
        pub.conn.send_media(sid, 9, n * 33, video(n, key=n % 30 == 0, size=30_000))
        pub.conn.send_media(sid, 8, n * 33 + 5, audio(n))
        await pub.sock.send_all(pub.conn.data_to_send())
        if n % 30 == 0:
            await trio.sleep(0.05)
    stream = hub.get("live", "late")
    assert stream is not None
    (play,) = stream.players
    assert play.dropped > 0
    async with trio.open_nursery() as inner:
        inner.start_soon(lagging.until_body, b"v%06d" % 305)
        await trio.sleep(0.5)  # it reads again: then a keyframe and a few more frames
        for n in range(300, 306):
            pub.conn.send_media(sid, 9, n * 33, video(n, key=n == 300))
        await pub.sock.send_all(pub.conn.data_to_send())
    got = frames(lagging.media)
    markers = [m for m, _ in got]
    # A run it got, then the rest from a keyframe on: each frame once, in order, clock intact.
    assert len(set(markers)) == len(markers) < 2 * 299 + 6
    numbers = [(m[:1], int(m[1:])) for m in markers]
    skips = [i for i in range(1, len(numbers)) if numbers[i][1] > numbers[i - 1][1] + 1]
    assert skips, numbers
    for i in skips:
        kind, n = numbers[i]
        assert kind == b"v" and n % 30 == 0  # after a gap: a keyframe first
    for (kind, n), (_, ts) in zip(numbers, got, strict=True):
        assert ts == n * 33 + (5 if kind == b"a" else 0)
    for client in (lagging, pub):
        await client.sock.aclose()


async def test_play_over_a_memory_stream_is_written_by_the_session(nursery: trio.Nursery) -> None:
    # Not a socket: nothing is written without awaiting, so the player's task drains the
    # backlog (send_all) instead of the stream's writer.
    hub, metrics = Hub(gop_cache_bytes=1 << 20), Metrics()
    stream = hub.start_publish("live", "mem", peer="x", connection_id=999, query={})
    stream.publish(FlvTag(TagType.VIDEO, 0, AVC_HEADER))
    stream.publish(FlvTag(TagType.VIDEO, 0, video(0, key=True)))
    client, server = trio.testing.memory_stream_pair()
    session = Session(server, "peer:1", Settings(), hub, metrics)
    nursery.start_soon(session.run)
    conn = Connection(role=Role.CLIENT)
    conn.connect("live", "rtmp://x/live")
    conn.play("mem")
    received: list[ev.Media] = []

    async def pump_to(marker: bytes) -> None:
        with trio.fail_after(5):
            while True:
                while (event := conn.next_event()) is not NEED_DATA:
                    if isinstance(event, ev.Media):
                        received.append(event)
                if any(marker in e.body for e in received):
                    return
                if out := conn.data_to_send():
                    await client.send_all(out)
                conn.receive_data(await client.receive_some(65536))

    await pump_to(b"v000000")
    for n in range(1, 50):
        stream.publish(FlvTag(TagType.VIDEO, n * 33, video(n, key=False)))
        if n % 10 == 0:
            await trio.sleep(0.01)
    await pump_to(b"v000049")
    assert [m for m, _ in frames(received)] == [b"v%06d" % n for n in range(50)]
    assert [ts for _, ts in frames(received)] == [n * 33 for n in range(50)]
    assert isinstance(stream, Stream) and len(stream.players) == 1
    await client.aclose()


async def test_player_of_a_stream_left_unpublished_is_told_then_let_go(
    nursery: trio.Nursery,
) -> None:
    # play_wait_timeout after the publisher leaves: UnpublishNotify; idle_timeout after that,
    # still nobody: the server closes the connection (a waiting player held its slot for good).
    port, hub, _ = await start_server(nursery, play_wait_timeout=0.3, idle_timeout=0.7)
    pub, _ = await live_publisher(port, "gone")
    player = await Client.open(port)
    await player.play("gone")
    await player.until_body(b"v000000")
    await pub.sock.aclose()
    left = trio.current_time()
    await player.pump(lambda e: isinstance(e, ev.Status) and "UnpublishNotify" in e.code)
    told = trio.current_time()
    assert 0.25 <= told - left < 2
    with trio.fail_after(3):
        while await player.sock.receive_some(65536):
            pass  # the server closes the connection
    assert 0.6 <= trio.current_time() - told < 2.5
    stream = hub.get("live", "gone")
    assert stream is None or not stream.players
