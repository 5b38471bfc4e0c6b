"""The player-side command flow as FFmpeg and librtmp send it (docs/protocol.md §4, RTMP §7.2.2).

connect, createStream, getStreamLength, FCSubscribe, play, SetBufferLength, pause/unpause,
deleteStream: the events the server layer sees and the replies a player gets, byte-split invariant.
"""

from __future__ import annotations

from typing import Any

from gateway.rtmp import amf0, events
from gateway.rtmp import messages as m
from tests.rtmp.sessions import Script, random_splits, replay
from tests.rtmp.test_connection import commands, replies


def player_script() -> Script:
    s = Script(digest=True)
    s.command(3, 0, "connect", 1.0, {"app": "live", "tcUrl": "rtmp://h/live", "fpad": False})
    s.command(3, 0, "createStream", 2.0, None)
    s.command(3, 0, "getStreamLength", 3.0, None, "key")
    s.command(3, 0, "FCSubscribe", 4.0, None, "key")
    s.command(8, 1, "play", 0.0, None, "key?t=1", -2000.0, -1000.0, True)
    s.control(m.UserControl(m.SetBufferLength(1, 3000)))
    s.command(8, 1, "pause", 0.0, None, True, 1234.0)
    s.command(8, 1, "pause", 0.0, None, False, 1234.0)
    s.command(3, 0, "deleteStream", 5.0, None, 1.0)
    return s


def test_player_flow_events() -> None:
    got, _ = replay([player_script().data()])
    flow = [e for e in got if not isinstance(e, events.HandshakeComplete)]
    assert [type(e).__name__ for e in flow] == [
        "ConnectRequest",
        "StreamCreated",
        "PlayRequest",
        "SetBufferLength",
        "PauseRequest",
        "PauseRequest",
        "StreamDeleted",
        "ConnectionClosed",
    ]
    assert flow[2] == events.PlayRequest(1, "key", "t=1", -2000.0, -1000.0, True)
    assert flow[3] == events.SetBufferLength(1, 3000)
    assert flow[4] == events.PauseRequest(1, True, 1234.0)
    assert flow[5] == events.PauseRequest(1, False, 1234.0)
    assert flow[6] == events.StreamDeleted(1)


def test_player_flow_replies() -> None:
    _, conn = replay([player_script().data()], eof=False)
    sent = replies(conn.data_to_send())
    cmds = commands(sent)
    by_name: dict[str, list[Any]] = {}
    for _, values in cmds:
        by_name.setdefault(values[0], []).append(values)
    # createStream -> _result(txn 2, null, 1); getStreamLength -> _result(txn 3, null, 0).
    results = {v[1]: v for v in by_name["_result"]}
    assert results[2.0][3] == 1.0 and results[3.0][3] == 0.0
    assert by_name["onFCSubscribe"][0][3]["code"] == "NetStream.Play.Start"
    statuses = [v[3]["code"] for v in by_name["onStatus"]]
    assert statuses == ["NetStream.Play.Reset", "NetStream.Play.Start"]
    # StreamBegin(1) precedes the play statuses; |RtmpSampleAccess follows as a data message.
    begin = [r for r in sent if r.type_id == 4 and r.body[:2] == b"\x00\x00"]
    assert begin and begin[0].body[2:] == b"\x00\x00\x00\x01"
    data = [amf0.decode_all(r.body) for r in sent if r.type_id == 18]
    assert data and data[0][0] == "|RtmpSampleAccess"


def test_player_flow_is_split_invariant() -> None:
    data = player_script().data()
    whole, _ = replay([data])
    assert replay([data[i : i + 1] for i in range(len(data))])[0] == whole
    for seed in range(5):
        assert replay(random_splits(data, seed))[0] == whole


def test_pause_outside_playback_is_ignored() -> None:
    s = Script(digest=False)
    s.command(3, 0, "connect", 1.0, {"app": "live"})
    s.command(3, 0, "createStream", 2.0, None)
    s.command(8, 1, "pause", 0.0, None, True, 0.0)  # not playing yet
    s.command(8, 7, "pause", 0.0, None, True, 0.0)  # no such stream
    got, conn = replay([s.data()], eof=False)
    assert not [e for e in got if isinstance(e, events.PauseRequest)]
    assert conn.state.name == "CONNECTED"
