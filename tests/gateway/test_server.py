"""The RTMP session layer over in-memory streams: deadlines, causes, slot release, containment."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing

from gateway.config import Settings
from gateway.hub import Hub
from gateway.metrics import Metrics
from gateway.rtmp import events as ev
from gateway.rtmp.connection import NEED_DATA, Connection, Role
from gateway.server import Session


def counter(metrics: Metrics, cause: str) -> float:
    return float(metrics.protocol_errors.labels(cause)._value.get())


async def start_session(
    nursery: trio.Nursery, **settings: object
) -> tuple[trio.testing.MemoryStapledStream, Hub, Metrics, trio.Event]:  # type: ignore[name-defined]
    client, server = trio.testing.memory_stream_pair()
    hub, metrics, done = Hub(), Metrics(), trio.Event()
    session = Session(server, "peer:1", Settings(**settings), hub, metrics)  # type: ignore[arg-type]

    async def run() -> None:
        await session.run()
        done.set()

    nursery.start_soon(run)
    return client, hub, metrics, done


async def pump(client: trio.abc.Stream, conn: Connection, until: type) -> list[object]:
    """Exchange bytes between a client Connection and the session until an event of ``until``."""
    seen: list[object] = []
    while True:
        found = False
        while (event := conn.next_event()) is not NEED_DATA:
            seen.append(event)
            found = found or isinstance(event, until)
        if out := conn.data_to_send():
            await client.send_all(out)
        if found:
            return seen
        data = await client.receive_some(65536)
        if not data:  # closed before the event: what came is the answer
            conn.receive_data(data)
            while (event := conn.next_event()) is not NEED_DATA:
                seen.append(event)
                if isinstance(event, ev.ConnectionClosed):
                    break  # it says so again on every call
            if not any(isinstance(e, until) for e in seen):
                raise AssertionError(f"connection closed before {until.__name__}: {seen}")
            return seen
        conn.receive_data(data)


async def test_http_request_on_rtmp_port_is_a_named_protocol_error(nursery: trio.Nursery) -> None:
    client, _, metrics, done = await start_session(nursery)
    await client.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(1600))
    with trio.fail_after(5):
        await done.wait()
    assert counter(metrics, "handshake-version") == 1
    assert counter(metrics, "internal-error") == 0


async def test_connection_that_never_publishes_is_closed_at_setup_deadline(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    client, _, metrics, done = await start_session(nursery, setup_timeout=3.0, idle_timeout=60.0)
    conn = Connection(role=Role.CLIENT)
    conn.connect("live", "rtmp://127.0.0.1/live")
    await pump(client, conn, ev.ConnectResult)
    start = trio.current_time()
    await done.wait()
    assert 2.9 <= trio.current_time() - start <= 3.1
    assert counter(metrics, "setup-timeout") == 1


async def test_publish_then_abrupt_close_releases_the_slot(nursery: trio.Nursery) -> None:
    client, hub, metrics, done = await start_session(nursery)
    conn = Connection(role=Role.CLIENT)
    conn.connect("live", "rtmp://127.0.0.1/live")
    conn.publish("key?token=abc")
    events = await pump(client, conn, ev.Status)
    status = events[-1]
    assert isinstance(status, ev.Status) and status.code == "NetStream.Publish.Start"
    stream = hub.get("live", "key")
    assert stream is not None and stream.publisher is not None
    assert stream.publisher.query == {"token": ["abc"]}
    conn.send_media(status.stream_id, 9, 0, b"\x17\x00\x00\x00\x00\x01\x64\x00\x1f")
    await client.send_all(conn.data_to_send())
    await client.aclose()  # no FCUnpublish, no deleteStream: the TCP connection just drops
    with trio.fail_after(5):
        await done.wait()
    assert stream.publisher is None
    assert stream.video_header is not None and stream.video_header.timestamp == 0
    assert counter(metrics, "internal-error") == 0


@pytest.mark.parametrize("name", ["../etc", "a" * 129, "bad name", ""])
async def test_invalid_stream_names_are_refused_with_badname(
    nursery: trio.Nursery, name: str
) -> None:
    client, hub, metrics, _ = await start_session(nursery)
    conn = Connection(role=Role.CLIENT)
    conn.connect("live", "rtmp://127.0.0.1/live")
    conn.publish(name)
    events = await pump(client, conn, ev.Status)
    status = events[-1]
    assert isinstance(status, ev.Status) and status.code == "NetStream.Publish.BadName"
    assert hub.publishers() == 0
    assert metrics.publish_rejected.labels("NetStream.Publish.BadName")._value.get() == 1


@pytest.mark.parametrize("app", ["api", "static", "metrics", "healthz"])
async def test_reserved_app_names_are_refused_at_connect(nursery: trio.Nursery, app: str) -> None:
    client, _, _, _ = await start_session(nursery)
    conn = Connection(role=Role.CLIENT)
    conn.connect(app, f"rtmp://127.0.0.1/{app}")
    events = await pump(client, conn, ev.ConnectResult)
    result = events[-1]
    assert isinstance(result, ev.ConnectResult) and not result.success
    assert "reserved" in result.description


async def test_query_of_connect_and_of_the_stream_name_are_kept(nursery: trio.Nursery) -> None:
    client, hub, _, _ = await start_session(nursery)
    conn = Connection(role=Role.CLIENT)
    conn.connect("live?user=a&token=old", "rtmp://127.0.0.1/live?user=a&token=old")
    conn.publish("key?token=new")
    events = await pump(client, conn, ev.Status)
    assert isinstance(events[-1], ev.Status) and events[-1].code == "NetStream.Publish.Start"
    stream = hub.get("live", "key")
    assert stream is not None and stream.publisher is not None
    assert stream.publisher.query == {"user": ["a"], "token": ["new"]}


async def test_a_connection_ended_by_shutdown_says_so(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway.rtmp")
    async with trio.open_nursery() as nursery:
        client, hub, _, _ = await start_session(nursery)
        conn = Connection(role=Role.CLIENT)
        conn.connect("live", "rtmp://127.0.0.1/live")
        conn.publish("key")
        await pump(client, conn, ev.Status)
        nursery.cancel_scope.cancel()  # what the gateway's ingest nursery does on SIGTERM
    closed = [r.getMessage() for r in caplog.records if "closed (" in r.getMessage()]
    assert len(closed) == 1 and "(gateway stopping)" in closed[0], closed
    assert hub.publishers() == 0
