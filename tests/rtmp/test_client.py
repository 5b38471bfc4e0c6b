"""Client role (publisher): command bytes, a client and a server Connection wired in memory,
rejections, control messages, and replays of both byte streams at random split points."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.rtmp import amf0, events, handshake
from gateway.rtmp import messages as m
from gateway.rtmp.chunk import ChunkDecoder, ChunkEncoder, RawMessage
from gateway.rtmp.client import FLASH_VER, set_data_frame
from gateway.rtmp.connection import NEED_DATA, Connection, Role, State, StreamState
from gateway.rtmp.errors import LocalProtocolError
from gateway.rtmp.limits import Limits
from tests.rtmp import sessions
from tests.rtmp.sessions import AAC_SEQ, AVC_SEQ, META

TC_URL = "rtmp://127.0.0.1:1935/live"
CONNECT_OBJ = {"app": "live", "type": "nonprivate", "flashVer": FLASH_VER, "tcUrl": TC_URL}
T0 = 0xFFFFFF - 50  # the media crosses into extended timestamps (RTMP 1.0 §5.3.1.3)


def new_client(limits: Limits | None = None) -> Connection:
    return Connection(Role.CLIENT, limits, random_bytes=sessions.rng(5), epoch_ms=lambda: 0)


def decode(wire: bytes) -> list[RawMessage]:
    dec = ChunkDecoder(Limits())
    dec.feed(wire)
    got = []
    while (raw := dec.next_message()) is not None:
        got.append(raw)
    assert dec.buffered_bytes == 0
    return got


def commands(raws: list[RawMessage]) -> list[tuple[int, list[Any]]]:
    return [(r.stream_id, amf0.decode_all(r.body)) for r in raws if r.type_id == m.COMMAND_AMF0]


def drain(
    conn: Connection, react: Callable[[Connection, events.Event], None] | None = None
) -> list[events.Event]:
    """Events until NEED_DATA; ``react`` answers each one as it comes (events are lazy)."""
    got: list[events.Event] = []
    while (ev := conn.next_event()) is not NEED_DATA:
        assert not isinstance(ev, type)
        got.append(ev)
        if react is not None:
            react(conn, ev)
        if isinstance(ev, events.ConnectionClosed):
            break
    return got


def media_script() -> list[tuple[int, int, bytes]]:
    """(type, timestamp, body) of a short publish: metadata, headers, 2 GOPs of video+audio."""
    out = [(m.DATA_AMF0, T0, set_data_frame(amf0.encode("onMetaData", META)))]
    out += [(m.VIDEO, T0, AVC_SEQ), (m.AUDIO, T0, AAC_SEQ)]
    for i in range(20):
        key = 0x17 if i % 10 == 0 else 0x27
        out.append((m.VIDEO, T0 + 33 * i, bytes([key, 1, 0, 0, 0]) + bytes(range(256)) * 6))
        out.append((m.AUDIO, T0 + 33 * i + 5, b"\xaf\x01" + bytes(40 + i)))
    return out


Policy = Callable[[Connection, events.Event], None]


def publisher(conn: Connection, ev: events.Event) -> None:
    """Client behaviour: once Publish.Start arrives, send the media, then delete the stream."""
    if isinstance(ev, events.Status) and ev.code == "NetStream.Publish.Start":
        for type_id, ts, body in media_script():
            conn.send_media(ev.stream_id, type_id, ts, body)
        conn.delete_stream(ev.stream_id)


def permissive(conn: Connection, ev: events.Event) -> None:
    if isinstance(ev, events.ConnectRequest):
        conn.accept_connect()
    elif isinstance(ev, events.PublishRequest):
        conn.accept_publish(ev.stream_id)


class Pair:
    """A client and a server Connection wired together in memory, with both transcripts."""

    def __init__(self, policy: Policy = permissive, react: Policy = publisher) -> None:
        self.client = new_client()
        self.server = sessions.server()
        self.policy, self.react = policy, react
        self.cev: list[events.Event] = []
        self.sev: list[events.Event] = []
        self.c2s = bytearray()
        self.s2c = bytearray()

    def pump(self) -> None:
        moved = True
        while moved:
            moved = False
            out = self.client.data_to_send()
            if out:
                moved = True
                self.c2s += out
                self.server.receive_data(out)
            self.sev += drain(self.server, self.policy)
            out = self.server.data_to_send()
            if out:
                moved = True
                self.s2c += out
                self.client.receive_data(out)
            self.cev += drain(self.client, self.react)


def started_pair(policy: Policy = permissive, react: Policy = publisher) -> Pair:
    p = Pair(policy, react)
    p.client.connect("live", TC_URL)  # both queued during the handshake
    p.client.publish("key?token=x")
    p.pump()
    return p


def test_connect_bytes() -> None:
    c = new_client()
    c0c1 = c.data_to_send()
    assert len(c0c1) == 1537 and c0c1[0] == 3
    c.connect("live", TC_URL, extra={"fourCcList": ["avc1"]})
    assert c.data_to_send() == b""  # waits for the handshake
    reply = handshake.server_reply(c0c1, random_bytes=sessions.rng(1))
    c.receive_data(reply.data)
    assert c.next_event() == events.HandshakeComplete(digest=False)
    assert c.state is State.CONNECT_PENDING
    out = c.data_to_send()
    assert out[:1536] == reply.data[1:1537]  # C2 echoes S1 (§5.2.4)
    # §5.4.1 Set Chunk Size 4096 on csid 2, message stream 0: the exact chunk.
    assert out[1536 : 1536 + 16] == bytes.fromhex("02 000000 000004 01 00000000 00001000")
    raws = decode(out[1536:])
    assert [r.type_id for r in raws] == [m.SET_CHUNK_SIZE, m.COMMAND_AMF0, m.WINDOW_ACK_SIZE]
    assert m.decode_control(5, raws[2].body) == m.WindowAckSize(2_500_000)
    name, txn, obj = amf0.decode_all(raws[1].body)
    assert (name, txn, raws[1].stream_id, raws[1].csid) == ("connect", 1.0, 0, 3)
    assert obj == {**CONNECT_OBJ, "fourCcList": ["avc1"]}


def test_publish_command_order_and_bytes() -> None:
    p = started_pair(react=lambda c, e: None)
    sent = commands(decode(bytes(p.c2s[1537 + 1536 :])))
    # FFmpeg's order (docs/protocol.md §4): connect, releaseStream, FCPublish, createStream, then
    # publish on the new message stream once createStream's _result gave its id.
    assert sent == [
        (0, ["connect", 1.0, {**CONNECT_OBJ}]),
        (0, ["releaseStream", 2.0, None, "key?token=x"]),
        (0, ["FCPublish", 3.0, None, "key?token=x"]),
        (0, ["createStream", 4.0, None]),
        (1, ["publish", 5.0, None, "key?token=x", "live"]),
    ]
    assert p.cev == [
        events.HandshakeComplete(),
        events.ConnectResult(
            True,
            "NetConnection.Connect.Success",
            "Connection succeeded.",
            {
                "level": "status",
                "code": "NetConnection.Connect.Success",
                "description": "Connection succeeded.",
                "objectEncoding": 0.0,
            },
            {"fmsVer": "FMS/3,0,1,123", "capabilities": 31.0},  # no E-RTMP: we announced none
        ),
        events.StreamCreated(1),
        events.Status(
            1,
            "status",
            "NetStream.Publish.Start",
            "key is published.",
            {
                "level": "status",
                "code": "NetStream.Publish.Start",
                "description": "key is published.",
            },
        ),
    ]
    assert p.client.state is State.CONNECTED
    assert p.client.streams[1].state is StreamState.PUBLISHING
    req = next(e for e in p.sev if isinstance(e, events.PublishRequest))
    assert req == events.PublishRequest(1, "key", "token=x", "live")


def test_session_media_reaches_server_identically() -> None:
    p = started_pair()
    got = [e for e in p.sev if isinstance(e, events.Media)]
    want = []
    for type_id, ts, body in media_script():
        if type_id == m.DATA_AMF0:  # the server strips @setDataFrame (docs/protocol.md §4.5)
            body = amf0.encode("onMetaData", META)
        want.append(events.Media(1, type_id, ts, body))
    assert got == want
    assert max(e.timestamp for e in got) > 0xFFFFFF
    tail = p.sev[-2:]
    assert tail == [events.Unpublish(1, "key"), events.StreamDeleted(1)]
    assert p.client.streams == {} and p.server.streams == {}


def test_explicit_create_stream_then_publish_on_it() -> None:
    p = Pair(react=lambda c, e: None)
    p.client.connect("live", TC_URL)
    p.client.create_stream()
    p.pump()
    assert p.cev[-1] == events.StreamCreated(1)
    p.client.publish("cam", "record", stream_id=1)
    p.pump()
    assert events.PublishRequest(1, "cam", "", "record") in p.sev
    assert isinstance(p.cev[-1], events.Status) and p.cev[-1].code == "NetStream.Publish.Start"


def test_publish_rejected_bad_name_is_an_event() -> None:
    def busy(conn: Connection, ev: events.Event) -> None:
        if isinstance(ev, events.PublishRequest):
            conn.reject_publish(ev.stream_id, "NetStream.Publish.BadName", "live/key is busy")
        else:
            permissive(conn, ev)

    p = started_pair(policy=busy)
    status = p.cev[-1]
    assert isinstance(status, events.Status)
    assert (status.stream_id, status.level, status.code, status.description) == (
        1,
        "error",
        "NetStream.Publish.BadName",
        "live/key is busy",
    )
    assert p.client.streams[1].state is StreamState.CREATED
    assert not [e for e in p.sev if isinstance(e, events.Media)]  # nothing was sent


def test_connect_rejected_is_an_event_and_drops_queued_commands() -> None:
    def refuse(conn: Connection, ev: events.Event) -> None:
        if isinstance(ev, events.ConnectRequest):
            conn.reject_connect("go away")

    p = started_pair(policy=refuse)
    result = p.cev[-1]
    assert isinstance(result, events.ConnectResult)
    assert (result.success, result.code, result.description) == (
        False,
        "NetConnection.Connect.Rejected",
        "go away",
    )
    assert p.client.state is State.REJECTED
    assert [c[1][0] for c in commands(decode(bytes(p.c2s[3073:])))] == ["connect"]
    with pytest.raises(LocalProtocolError):
        p.client.create_stream()


def server_bytes(*msgs: tuple[int, int, int, bytes]) -> bytes:
    """Scripted server output (after S0+S1+S2): (csid, type, stream id, body) messages."""
    enc = ChunkEncoder()
    return b"".join(enc.encode(cs, 0, t, sid, body) for cs, t, sid, body in msgs)


def handshaken() -> Connection:
    c = new_client()
    c.connect("live", TC_URL)
    c.receive_data(handshake.server_reply(c.data_to_send(), random_bytes=sessions.rng(1)).data)
    assert drain(c) == [events.HandshakeComplete()]
    c.data_to_send()
    return c


def test_control_messages_from_server_are_handled() -> None:
    c = handshaken()
    result = amf0.encode("_result", 1.0, None, {"level": "status", "code": "x"})
    status = {"level": "status", "code": "NetStream.Publish.Start", "description": "d" * 300}
    wire = server_bytes(
        (2, m.WINDOW_ACK_SIZE, 0, m.WindowAckSize(400).encode()),
        (2, m.SET_PEER_BANDWIDTH, 0, m.SetPeerBandwidth(5000).encode()),
        (2, m.USER_CONTROL, 0, m.user_control(m.PingRequest(1234)).encode()),
        (2, m.SET_CHUNK_SIZE, 0, m.SetChunkSize(8192).encode()),
        (3, m.COMMAND_AMF0, 0, result),
        (3, m.COMMAND_AMF0, 0, amf0.encode("onBWDone", 0.0, None)),  # ignored, as librtmp
        (5, m.COMMAND_AMF0, 7, amf0.encode("onStatus", 0.0, None, status)),
    )
    c.receive_data(wire)
    got = drain(c)
    assert isinstance(got[0], events.ConnectResult) and got[0].success
    # onStatus for a stream we never created is passed on as it came.
    assert got[1] == events.Status(7, "status", "NetStream.Publish.Start", "d" * 300, status)
    replies = [m.decode_control(r.type_id, r.body) for r in decode(c.data_to_send())]
    assert replies == [
        m.Acknowledgement(3073 + len(wire)),  # all bytes so far, handshake too (§5.4.3)
        m.WindowAckSize(5000),  # §5.4.5: peer bandwidth differs from our window
        m.user_control(m.PingResponse(1234)),  # §7.1.7
    ]


def test_create_stream_error_and_bad_stream_id() -> None:
    c = handshaken()
    c.publish("key")
    ok = amf0.encode("_result", 1.0, None, {"level": "status"})
    err = {"level": "error", "code": "NetConnection.Call.Failed", "description": "no"}
    c.receive_data(
        server_bytes(
            (3, 20, 0, ok),
            (3, 20, 0, amf0.encode("_error", 4.0, None, err)),
            (3, 20, 0, amf0.encode("_error", 2.0, None, err)),  # releaseStream refused
        )
    )
    assert drain(c)[1:] == [
        events.CallFailed("createStream", "NetConnection.Call.Failed", "no"),
        events.CallFailed("releaseStream", "NetConnection.Call.Failed", "no"),
    ]
    c.create_stream()  # txn 5
    c.receive_data(server_bytes((3, 20, 0, amf0.encode("_result", 5.0, None, -1.0))))
    with pytest.raises(Exception) as info:
        drain(c)
    assert getattr(info.value, "reason", None) == "bad-stream-id"
    assert c.state is State.ERROR


def test_local_misuse() -> None:
    srv = sessions.server()
    with pytest.raises(LocalProtocolError, match="not-a-client"):
        srv.connect("live", TC_URL)
    c = new_client()
    c.connect("live", TC_URL)
    with pytest.raises(LocalProtocolError, match="duplicate-connect"):
        c.connect("live", TC_URL)
    with pytest.raises(LocalProtocolError, match="stream-not-created"):
        c.publish("key", stream_id=1)
    with pytest.raises(LocalProtocolError, match="not-connected"):
        c.send_media(1, m.VIDEO, 0, b"\x17")
    with pytest.raises(LocalProtocolError, match="not-connected"):
        c.delete_stream(1)


def replay_client(pieces: Iterable[bytes]) -> tuple[list[events.Event], bytes]:
    c = new_client()
    c.connect("live", TC_URL)
    c.publish("key?token=x")
    out = bytearray(c.data_to_send())
    got: list[events.Event] = []
    for piece in pieces:
        c.receive_data(piece)
        got += drain(c, publisher)
        out += c.data_to_send()
    return got, bytes(out)


def replay_server(pieces: Iterable[bytes]) -> list[events.Event]:
    s = sessions.server()
    got: list[events.Event] = []
    for piece in pieces:
        s.receive_data(piece)
        got += drain(s, permissive)
    return got


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % len(data) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


REFERENCE = started_pair()


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(min_value=1, max_value=1 << 20), max_size=40),
    st.lists(st.integers(min_value=1, max_value=1 << 20), max_size=40),
)
def test_random_splits_give_the_same_events(s2c_cuts: list[int], c2s_cuts: list[int]) -> None:
    ref = REFERENCE
    got, out = replay_client(split(bytes(ref.s2c), s2c_cuts))
    assert got == ref.cev
    assert out == bytes(ref.c2s)  # no acknowledgement is due, so the bytes match exactly
    assert replay_server(split(bytes(ref.c2s), c2s_cuts)) == ref.sev


def test_byte_by_byte() -> None:
    ref = REFERENCE
    s2c, c2s = bytes(ref.s2c), bytes(ref.c2s)
    assert replay_client(s2c[i : i + 1] for i in range(len(s2c)))[0] == ref.cev
    assert replay_server(c2s[i : i + 1] for i in range(len(c2s))) == ref.sev
