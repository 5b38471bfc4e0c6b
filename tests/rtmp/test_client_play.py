"""The client role as a player (pull relays): createStream, play, SetBufferLength, then media."""

from __future__ import annotations

from gateway.rtmp import events
from gateway.rtmp.connection import Connection
from tests.rtmp.test_client import TC_URL, Pair


def player_policy(conn: Connection, ev: events.Event) -> None:
    """The server side: accepts connect; answers play below, per test."""
    if isinstance(ev, events.ConnectRequest):
        conn.accept_connect()


def no_reaction(conn: Connection, ev: events.Event) -> None:
    return None


def started_player(name: str = "key?t=1") -> Pair:
    p = Pair(player_policy, no_reaction)
    p.client.connect("live", TC_URL)
    p.client.play(name)
    p.pump()
    return p


def test_play_request_reaches_server_with_buffer_length() -> None:
    p = started_player()
    plays = [e for e in p.sev if isinstance(e, events.PlayRequest)]
    assert plays == [events.PlayRequest(1, "key", "t=1", -1000.0, -1.0, True)]
    assert events.SetBufferLength(1, 3000) in p.sev


def test_accepted_play_delivers_media_in_order() -> None:
    p = started_player()
    p.server.accept_play(1)
    sent = [(9, 0, b"\x17\x00\x00\x00\x00\x01"), (8, 0, b"\xaf\x00\x12\x10"),
            (9, 40, b"\x17\x01\x00\x00\x00\x01"), (8, 46, b"\xaf\x01\x21"),
            (9, 0x1000000 + 5, b"\x27\x01\x00\x00\x00\x02")]  # fmt: skip
    for type_id, ts, body in sent:
        p.server.send_media(1, type_id, ts, body)
    p.pump()
    statuses = [e.code for e in p.cev if isinstance(e, events.Status)]
    assert statuses[:2] == ["NetStream.Play.Reset", "NetStream.Play.Start"]
    media = [(e.type, e.timestamp, e.body) for e in p.cev if isinstance(e, events.Media)]
    assert media == sent  # extended timestamp included


def test_refused_play_is_a_status_error_and_no_media_is_taken() -> None:
    p = started_player("nobody")
    p.server.reject_play(1, "NetStream.Play.StreamNotFound", "nobody is not published")
    p.server.send_media(1, 9, 0, b"\x17\x01\x00\x00\x00\x01")
    p.pump()
    (status,) = [e for e in p.cev if isinstance(e, events.Status)]
    assert (status.level, status.code) == ("error", "NetStream.Play.StreamNotFound")
    assert not [e for e in p.cev if isinstance(e, events.Media)]
    assert p.client.dropped_messages == 1
