"""Hostile peers on the session layer: names as large as an AMF string may be (1 MiB) must cost
a bounded log line and reply, and limit violations name the offending value in the log."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing

from gateway.config import Settings
from gateway.hub import Hub
from gateway.metrics import Metrics
from gateway.rtmp import events as ev
from gateway.rtmp.chunk import ChunkEncoder
from gateway.rtmp.connection import Connection, Role
from gateway.server import SHOWN_NAME, Session, shown
from tests.gateway.test_server import counter, pump, start_session

HUGE = "k" * 900_000  # under the 1 MiB AMF string limit: decoded, then refused as a name


def test_shown_cuts_long_names_and_says_how_long() -> None:
    assert shown("cam1") == "'cam1'"
    text = shown("x" * 10_000)
    assert len(text) < SHOWN_NAME + 40 and "10000 characters" in text


@pytest.mark.parametrize("what", ["publish", "play", "connect"])
async def test_huge_names_are_refused_with_a_short_reply_and_log_line(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture, what: str
) -> None:
    client, hub, _, _ = await start_session(nursery, play_wait_timeout=0.0)
    conn = Connection(role=Role.CLIENT)
    conn.connect(HUGE if what == "connect" else "live", "rtmp://127.0.0.1/live")
    if what == "publish":
        conn.publish(HUGE)
    elif what == "play":
        conn.play(HUGE)
    with caplog.at_level(logging.WARNING, logger="gateway.rtmp"), trio.fail_after(5):
        events = await pump(client, conn, ev.ConnectResult if what == "connect" else ev.Status)
    reply = events[-1]
    assert isinstance(reply, ev.ConnectResult | ev.Status)
    if isinstance(reply, ev.ConnectResult):
        assert not reply.success
    else:
        expected = "NetStream.Publish.BadName" if what == "publish" else "Play.StreamNotFound"
        assert expected in reply.code
    assert "900000 characters" in reply.description and len(reply.description) < 400
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 1 and len(refusals[0]) < 400
    assert hub.publishers() == 0


async def test_limit_violation_names_the_value_in_the_close_cause(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    client, _, metrics, done = await start_session(nursery, max_message_size=1_000_000)
    conn = Connection(role=Role.CLIENT)
    conn.connect("live", "rtmp://127.0.0.1/live")
    await pump(client, conn, ev.ConnectResult)
    # A video message declaring 5 MB, past max_message_size: refused from its header alone.
    header = ChunkEncoder().encode(6, 0, 9, 1, bytes(5_000_000))[:200]
    with caplog.at_level(logging.INFO, logger="gateway.rtmp"), trio.fail_after(5):
        await client.send_all(header)
        await done.wait()
    assert counter(metrics, "message-too-large") == 1
    closed = [r.getMessage() for r in caplog.records if "closed (" in r.getMessage()]
    assert len(closed) == 1
    assert (
        "protocol error: message-too-large: type 9 message of 5000000 bytes, "
        "max_message_size is 1000000" in closed[0]
    )


async def test_create_stream_flood_is_closed_naming_the_limit(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    client, _, metrics, done = await start_session(nursery)
    conn = Connection(role=Role.CLIENT)
    conn.connect("live", "rtmp://127.0.0.1/live")
    for _ in range(9):
        conn.create_stream()
    with caplog.at_level(logging.INFO, logger="gateway.rtmp"), trio.fail_after(5):
        await pump(client, conn, ev.ConnectResult)
        await client.send_all(conn.data_to_send())
        await done.wait()
    assert counter(metrics, "too-many-streams") == 1
    assert "protocol error: too-many-streams: createStream past 8 open streams" in caplog.text


async def test_busy_name_refusal_does_not_tell_the_publishers_address(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    hub, metrics = Hub(), Metrics()
    peers = []
    for peer in ("203.0.113.7:50000", "198.51.100.9:40000"):
        client, server = trio.testing.memory_stream_pair()
        nursery.start_soon(Session(server, peer, Settings(), hub, metrics).run)
        conn = Connection(role=Role.CLIENT)
        conn.connect("live", "rtmp://127.0.0.1/live")
        conn.publish("cam")
        peers.append((client, conn))
    with caplog.at_level(logging.WARNING, logger="gateway.rtmp"), trio.fail_after(5):
        first = (await pump(*peers[0], ev.Status))[-1]
        second = (await pump(*peers[1], ev.Status))[-1]
    assert isinstance(first, ev.Status) and first.code == "NetStream.Publish.Start"
    assert isinstance(second, ev.Status) and second.code == "NetStream.Publish.BadName"
    assert second.description == "live/cam is already being published"
    assert "203.0.113.7" in caplog.text  # the operator still learns who holds the name
