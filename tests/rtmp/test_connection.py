"""Connection state machine: scripted OBS/FFmpeg publish sessions, replies, control, errors."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.rtmp import amf0, events
from gateway.rtmp import messages as m
from gateway.rtmp.chunk import ChunkDecoder, RawMessage
from gateway.rtmp.connection import NEED_DATA, Connection, Role, State
from gateway.rtmp.errors import LocalProtocolError, RemoteProtocolError
from gateway.rtmp.limits import Limits
from tests.rtmp import sessions
from tests.rtmp.sessions import META, Script, drain, random_splits, replay, server


def replies(out: bytes) -> list[RawMessage]:
    """Decode what the server sent after S0+S1+S2, as a client would."""
    dec = ChunkDecoder(Limits())
    dec.feed(out[3073:])
    got = []
    while (raw := dec.next_message()) is not None:
        got.append(raw)
    assert dec.buffered_bytes == 0
    return got


def commands(raws: list[RawMessage]) -> list[tuple[int, list[Any]]]:
    return [(r.stream_id, amf0.decode_all(r.body)) for r in raws if r.type_id == 20]


def media(evs: list[events.Event]) -> list[events.Media]:
    return [e for e in evs if isinstance(e, events.Media)]


def test_obs_session_events_and_replies() -> None:
    got, conn = replay([sessions.obs_session()])
    head = [e for e in got if not isinstance(e, events.Media)]
    assert head == [
        events.HandshakeComplete(digest=True),
        events.ConnectRequest(
            1.0,
            "live",
            "rtmp://example.com/live",
            {
                "app": "live",
                "type": "nonprivate",
                "flashVer": "FMLE/3.0 (compatible; FMSc/1.0)",
                "swfUrl": "rtmp://example.com/live",
                "tcUrl": "rtmp://example.com/live",
            },
            "",
        ),
        events.ReleaseStream("key"),
        events.FCPublish("key"),
        events.StreamCreated(1),
        events.PublishRequest(1, "key", "", "live"),
        events.Unpublish(1, "key"),
        events.StreamDeleted(1),
        events.ConnectionClosed(),
    ]
    av = media(got)
    assert av[0] == events.Media(1, 18, 0, amf0.encode("onMetaData", META))  # @setDataFrame gone
    assert [(e.type, e.timestamp) for e in av[1:5]] == [(9, 0), (8, 0), (9, 0), (8, 5)]
    assert len(av) == 1 + 2 + 24
    assert conn.state is State.CLOSED

    raws = replies(conn.data_to_send())
    control = [m.decode_control(r.type_id, r.body) for r in raws if r.type_id in m.CONTROL_TYPES]
    assert control == [
        m.WindowAckSize(2_500_000),
        m.SetPeerBandwidth(2_500_000, 2),
        m.SetChunkSize(4096),
        m.UserControl(m.StreamBegin(1), 0),
    ]
    cmds = commands(raws)
    result = cmds[0][1]
    assert result[:2] == ["_result", 1.0]
    assert result[2] == {"fmsVer": "FMS/3,0,1,123", "capabilities": 31.0}
    assert result[3]["code"] == "NetConnection.Connect.Success"
    assert result[3]["objectEncoding"] == 0.0
    assert cmds[1] == (0, ["_result", 2.0, None])
    assert cmds[2][1][0] == "onFCPublish"
    assert cmds[3] == (0, ["_result", 4.0, None, 1.0])  # librtmp reads the id at index 3
    assert cmds[4][0] == 1 and cmds[4][1][0] == "onStatus"
    assert cmds[4][1][3]["code"] == "NetStream.Publish.Start"
    assert cmds[5][1][0] == "onFCUnpublish"


def test_ffmpeg_session_query_and_extended_timestamps() -> None:
    got, _ = replay([sessions.ffmpeg_session()])
    connect = next(e for e in got if isinstance(e, events.ConnectRequest))
    assert connect.tc_url == "rtmp://127.0.0.1:1935/live?token=abc"  # lower-case tcurl accepted
    assert connect.query == "token=abc"
    assert connect.app == "live"
    pub = next(e for e in got if isinstance(e, events.PublishRequest))
    assert pub == events.PublishRequest(1, "cam", "token=abc", "live")
    assert next(e for e in got if isinstance(e, events.Unpublish)) == events.Unpublish(1, "cam")
    times = [e.timestamp for e in media(got) if e.type == 9]
    t0 = sessions.FFMPEG_T0
    assert times == [t0] + [t0 + 33 * i for i in range(12)]
    assert max(times) > 0xFFFFFF


@pytest.mark.parametrize("script", [sessions.obs_session, sessions.ffmpeg_session])
def test_replay_whole_bytewise_and_random_splits(script: Any) -> None:
    data = script()
    whole, _ = replay([data])
    bytewise, _ = replay([data[i : i + 1] for i in range(len(data))])
    assert bytewise == whole
    for seed in range(5):
        assert replay(random_splits(data, seed))[0] == whole


class Peer:
    """The client's view of what the server sent (one decoder for the whole output)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.dec = ChunkDecoder(Limits())
        self.dec.feed(conn.data_to_send()[3073:])
        self.read()

    def read(self) -> list[RawMessage]:
        self.dec.feed(self.conn.data_to_send())
        got = []
        while (raw := self.dec.next_message()) is not None:
            got.append(raw)
        return got


def connected(script: Script | None = None) -> tuple[Connection, Script]:
    s = script or Script(digest=False)
    s.command(3, 0, "connect", 1.0, {"app": "live", "tcUrl": "rtmp://h/live"})
    s.command(3, 0, "createStream", 2.0, None)
    s.command(5, 1, "publish", 3.0, None, "k", "live")
    conn = server()
    conn.receive_data(s.data())
    drain(conn)
    s.wire.clear()
    return conn, s


def feed(conn: Connection, s: Script) -> list[events.Event]:
    conn.receive_data(s.data())
    s.wire.clear()
    return drain(conn)


def test_timestamps_unwrap_across_31_bits() -> None:
    conn, s = connected()
    for ts in (0x7FFFFFF0, 0x00000010, 0x00000030):  # clock wraps at 2**31 (bit 31 masked)
        s.msg(6, 8, 1, b"\xaf\x01x", ts)
    assert [e.timestamp for e in media(feed(conn, s))] == [0x7FFFFFF0, 0x80000010, 0x80000030]


def test_amf3_data_becomes_amf0_and_junk_data_is_dropped() -> None:
    conn, s = connected()
    s.msg(5, 15, 1, b"\x00" + amf0.encode("@setDataFrame", "onMetaData", META))
    s.msg(5, 18, 1, amf0.encode("|RtmpSampleAccess", True, True))
    s.msg(5, 18, 1, b"\x02\xff")  # malformed AMF: dropped, not fatal
    s.msg(5, 18, 1, amf0.encode("onCuePoint", {"name": "x"}))
    got = media(feed(conn, s))
    assert [e.body for e in got] == [
        amf0.encode("onMetaData", META),
        amf0.encode("onCuePoint", {"name": "x"}),
    ]
    assert all(e.type == 18 for e in got)


def test_aggregate_split_into_media() -> None:
    conn, s = connected()
    body = b""
    for type_id, ts, payload in ((9, 100, b"\x17\x01vid"), (8, 110, b"\xaf\x01au")):
        body += bytes([type_id]) + len(payload).to_bytes(3, "big") + ts.to_bytes(3, "big")
        body += b"\0" + (1).to_bytes(3, "big") + payload + (11 + len(payload)).to_bytes(4, "big")
    s.msg(6, 22, 1, body, 1000)
    got = media(feed(conn, s))
    assert got == [
        events.Media(1, 9, 1000, b"\x17\x01vid"),
        events.Media(1, 8, 1010, b"\xaf\x01au"),
    ]


def test_ping_set_buffer_length_and_ack_on_time() -> None:
    conn, s = connected()
    peer = Peer(conn)
    s.control(m.UserControl(m.PingRequest(4242), 6))
    s.control(m.UserControl(m.SetBufferLength(1, 3000), 3))
    s.control(m.WindowAckSize(1000))
    assert feed(conn, s) == [events.SetBufferLength(1, 3000)]
    ping, ack = peer.read()
    assert m.decode_control(ping.type_id, ping.body) == m.UserControl(m.PingResponse(4242), 7)
    # More than a window was already received (handshake included): acknowledged at once.
    assert m.decode_control(ack.type_id, ack.body) == m.Acknowledgement(conn.bytes_received)
    # The ack goes out when the bytes arrive, before any event is pulled.
    before = conn.bytes_received
    conn.receive_data(bytes([0x06]))  # first byte of a chunk: not parseable yet
    conn.receive_data(bytes(999))
    [raw] = peer.read()
    assert raw.type_id == 3
    assert m.decode_control(3, raw.body) == m.Acknowledgement(before + 1000)


def test_wanted_bytes_is_the_rest_of_the_message_but_never_past_a_due_ack() -> None:
    conn, s = connected()
    assert conn.wanted_bytes() == 1 and conn.wanted_bytes(9) == 9  # between messages
    s.msg(6, 8, 1, bytes(100))  # 100-byte message in one chunk (128-byte chunks)
    wire = s.data()
    s.wire.clear()
    conn.receive_data(wire[:30])
    assert drain(conn) == []
    assert conn.wanted_bytes(9) == len(wire) - 30  # exactly the rest of the message
    conn.receive_data(wire[30:])
    drain(conn)
    # With an acknowledgement window announced, the hint stops at the byte that makes it due.
    s.control(m.WindowAckSize(5000))
    feed(conn, s)
    Peer(conn).read()
    s.msg(6, 8, 1, bytes(20_000))
    wire = s.data()
    conn.receive_data(wire[:100])
    assert drain(conn) == []
    assert 1 <= conn.wanted_bytes(9) <= 5000 < len(wire) - 100  # not the message's ~20 kB


def test_unknown_commands() -> None:
    conn, s = connected()
    peer = Peer(conn)
    s.command(3, 0, "_checkbw", 9.0, None)
    s.command(3, 0, "someNotification", 0.0, None)
    s.command(3, 0, "getStreamLength", 10.0, None, "k")
    assert feed(conn, s) == []
    first, second = peer.read()
    err = amf0.decode_all(first.body)
    assert err[:3] == ["_error", 9.0, None] and err[3]["code"] == "NetConnection.Call.Failed"
    assert amf0.decode_all(second.body) == ["_result", 10.0, None, 0.0]
    assert conn.state is State.CONNECTED


def test_reject_connect_and_publish() -> None:
    s = Script(digest=False)
    s.command(3, 0, "connect", 1.0, {"app": "x"})
    conn = server()
    conn.receive_data(s.data())
    assert isinstance(conn.next_event(), events.HandshakeComplete)
    assert isinstance(conn.next_event(), events.ConnectRequest)
    conn.reject_connect("go away")
    err = commands(replies(conn.data_to_send()))[0][1]
    assert err[0] == "_error" and err[3]["code"] == "NetConnection.Connect.Rejected"
    assert err[3]["description"] == "go away"
    assert conn.state is State.REJECTED

    conn, s = connected()
    s.command(5, 1, "closeStream", 0.0, None)
    s.command(5, 1, "publish", 4.0, None, "busy", "live")
    evs = feed(conn, s)
    assert evs[0] == events.StreamDeleted(1)
    assert isinstance(evs[1], events.PublishRequest)
    conn.data_to_send()


def test_reject_publish_drops_media() -> None:
    s = Script(digest=False)
    s.command(3, 0, "connect", 1.0, {"app": "live"})
    s.command(3, 0, "createStream", 2.0, None)
    s.command(5, 1, "publish", 3.0, None, "k", "live")
    s.msg(6, 9, 1, b"\x17\x00", 0)
    conn = server()
    conn.receive_data(s.data())
    seen = []
    while (ev := conn.next_event()) is not NEED_DATA:
        seen.append(ev)
        if isinstance(ev, events.ConnectRequest):
            conn.accept_connect()
        if isinstance(ev, events.PublishRequest):
            conn.reject_publish(1, "NetStream.Publish.BadName", "busy")
    assert not media(seen)  # type: ignore[arg-type]
    dec = ChunkDecoder(Limits())
    dec.feed(conn.data_to_send()[3073:])
    msgs = []
    while (raw := dec.next_message()) is not None:
        msgs.append(raw)
    status = amf0.decode_all(msgs[-1].body)
    assert status[0] == "onStatus" and status[3]["level"] == "error"
    assert status[3]["code"] == "NetStream.Publish.BadName"


def test_play_request_and_accept() -> None:
    s = Script(digest=False)
    s.command(3, 0, "connect", 1.0, {"app": "live"})
    s.command(3, 0, "createStream", 2.0, None)
    s.command(8, 1, "play", 3.0, None, "k?x=1", -2000.0, -1000.0, False)
    got, conn = replay([s.data()], eof=False)
    assert got[-1] == events.PlayRequest(1, "k", "x=1", -2000.0, -1000.0, False)
    codes = [c[1][3]["code"] for c in commands(replies(conn.data_to_send())) if c[0] == 1]
    assert codes == ["NetStream.Play.Reset", "NetStream.Play.Start"]
    conn.send_media(1, 9, 5, b"\x17\x01")


def test_media_before_publish_is_dropped() -> None:
    s = Script(digest=False)
    s.command(3, 0, "connect", 1.0, {"app": "live"})
    s.command(3, 0, "createStream", 2.0, None)
    s.msg(6, 9, 1, b"\x17\x00", 0)
    s.msg(6, 9, 7, b"\x17\x00", 0)
    got, conn = replay([s.data()])
    assert not media(got)
    assert conn.dropped_messages == 2


@pytest.mark.parametrize(
    ("first", "word"), [(b"\x16\x03\x01", "TLS"), (b"GET / HTTP/1.1", "HTTP"), (b"\x06", "RTMPE")]
)
def test_wrong_protocol_fails_fast_and_sticks(first: bytes, word: str) -> None:
    conn = server()
    conn.receive_data(first)
    with pytest.raises(RemoteProtocolError) as info:
        conn.next_event()
    assert info.value.reason == "handshake-version" and word in str(info.value)
    assert conn.state is State.ERROR
    for call in (conn.next_event, lambda: conn.receive_data(b"x"), conn.accept_connect):
        with pytest.raises(RemoteProtocolError) as again:
            call()
        assert again.value.reason == "handshake-version"


def test_receive_after_eof_is_local_error() -> None:
    conn = server()
    conn.receive_data(b"")
    assert conn.next_event() == events.ConnectionClosed()
    assert conn.next_event() == events.ConnectionClosed()
    with pytest.raises(LocalProtocolError):
        conn.receive_data(b"\x03")


def test_protocol_misuse() -> None:
    conn = server()
    with pytest.raises(LocalProtocolError):
        conn.accept_connect()
    with pytest.raises(LocalProtocolError):
        conn.accept_publish(1)


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        (lambda s: s.command(3, 0, "publish", 1.0, None, "k"), "command-before-connect"),
        (lambda s: s.command(3, 0, "connect", 1.0, {}).command(3, 0, "connect", 2.0, {}), None),
    ],
)
def test_command_order_errors(build: Any, reason: str | None) -> None:
    s = Script(digest=False)
    build(s)
    conn = server()
    conn.receive_data(s.data())
    with pytest.raises(RemoteProtocolError) as info:
        drain(conn)
    assert info.value.reason == (reason or "duplicate-connect")


def test_limits_named_reasons_through_connection() -> None:
    for wire, reason in [
        (bytes.fromhex("03 000000 FFFFFF 09 01000000"), "message-too-large"),
        (bytes.fromhex("02 000000 000004 01 00000000 00000000"), "chunk-size"),
        (bytes.fromhex("02 000000 000004 01 00000000 7FFFFFFF"), "chunk-size"),
        (
            b"".join(bytes([0, c]) + bytes.fromhex("000000 000000 09 01000000") for c in range(65)),
            "too-many-chunk-streams",
        ),
    ]:
        s = Script(digest=False)
        s.wire += wire
        conn = server()
        conn.receive_data(s.data())
        with pytest.raises(RemoteProtocolError) as info:
            drain(conn)
        assert info.value.reason == reason


def test_too_many_streams() -> None:
    s = Script(digest=False)
    s.command(3, 0, "connect", 1.0, {"app": "live"})
    for txn in range(2, 12):
        s.command(3, 0, "createStream", float(txn), None)
    conn = server()
    conn.receive_data(s.data())
    with pytest.raises(RemoteProtocolError) as info:
        drain(conn)
    assert info.value.reason == "too-many-streams"


@pytest.mark.parametrize("digest", [False])
def test_client_role_handshakes_with_server_role(digest: bool) -> None:
    client = Connection(Role.CLIENT, random_bytes=sessions.rng(5))
    srv = server()
    srv.receive_data(client.data_to_send())
    assert srv.next_event() is NEED_DATA
    client.receive_data(srv.data_to_send())
    assert client.next_event() == events.HandshakeComplete(digest=False)
    srv.receive_data(client.data_to_send())
    assert srv.next_event() == events.HandshakeComplete(digest=False)
    assert srv.state is State.WAIT_CONNECT
