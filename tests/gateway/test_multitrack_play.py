"""RTMP players of a Multitrack publish over real TCP (the project's client role on both ends):
a player that did not announce capsEx Multitrack gets track 0 only, from the start-of-play cache
and live, through the shared chunk encoding; one that announced it gets every tag unchanged."""

from __future__ import annotations

import trio

from gateway.rtmp import ertmp
from segmenter.flv import FlvTag, TagType, is_multitrack
from tests.gateway.test_hub_multitrack import frame, mt, one, seq
from tests.gateway.test_player_fanout import Client, publisher, start_server

V = TagType.VIDEO


async def player(port: int, *, multitrack: bool) -> Client:
    sock = await trio.open_tcp_stream("127.0.0.1", port)
    client = Client(sock)
    extra = {"capsEx": float(ertmp.CAPS_MULTITRACK)} if multitrack else None
    client.conn.connect("live", f"rtmp://127.0.0.1:{port}/live", extra=extra)
    return client


def video_bodies(client: Client) -> list[bytes]:
    return [e.body for e in client.media if e.type == 9]


async def test_legacy_player_gets_track_0_multitrack_player_every_track(
    nursery: trio.Nursery,
) -> None:
    port, hub, _ = await start_server(nursery)
    pub, sid = await publisher(port, "mt")
    before = [
        mt(V, 0, seq(0), seq(1)),
        mt(V, 0, seq(2)),
        mt(V, 0, frame(0, True), frame(1, True), frame(2, True)),
        mt(V, 33, frame(1, False, 1)),
        one(33, frame(0, False, 1)),
    ]
    live = [
        mt(V, 66, frame(0, False, 2), frame(1, False, 2)),
        mt(V, 66, frame(2, False, 2)),  # no track 0: nothing for a legacy player
        one(99, frame(0, False, 3)),
        mt(V, 99, frame(1, False, 3)),
        mt(V, 133, frame(0, True, 4), frame(2, True, 4)),
        one(166, frame(0, False, 99)),  # the end marker, on track 0
    ]

    async def send(tags: list[FlvTag]) -> None:
        for tag in tags:
            pub.conn.send_media(sid, int(tag.type), tag.timestamp, tag.body)
        await pub.sock.send_all(pub.conn.data_to_send())

    await send(before)
    with trio.fail_after(10):
        while (s := hub.get("live", "mt")) is None or len(s.gop) < 3:
            await trio.sleep(0.01)
    legacy, multi = await player(port, multitrack=False), await player(port, multitrack=True)
    with trio.fail_after(10):
        await legacy.play("mt")
        await multi.play("mt")
        await send(live)
        await legacy.until_body(b"t0n99")
        await multi.until_body(b"t0n99")

    # Legacy: headers of track 0 only, then track 0 of every tag that has one, as one-track tags.
    assert video_bodies(legacy) == [
        seq(0).body,
        frame(0, True).body,
        frame(0, False, 1).body,
        frame(0, False, 2).body,
        frame(0, False, 3).body,
        frame(0, True, 4).body,
        frame(0, False, 99).body,
    ]
    assert not any(is_multitrack(V, b) for b in video_bodies(legacy))
    # Multitrack: every track's header (track 0 one-track, others OneTrack), then the GOP and
    # live tags exactly as published.
    assert video_bodies(multi) == [
        seq(0).body,
        mt(V, 0, seq(1)).body,
        mt(V, 0, seq(2)).body,
        *(t.body for t in before[2:]),
        *(t.body for t in live),
    ]
    times = [e.timestamp for e in multi.media if e.type == 9]
    assert times == [0, 0, 0, 0, 33, 33, 66, 66, 99, 99, 133, 166]
    assert [e.timestamp for e in legacy.media if e.type == 9] == [0, 0, 33, 66, 99, 133, 166]
