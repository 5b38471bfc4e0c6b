"""Enhanced RTMP v2 connect negotiation (fourCcList, FourCC info maps, capsEx) and the reconnect
request: parsing, golden AMF bytes both ways, byte-by-byte delivery, client-role events."""

from __future__ import annotations

import math

import pytest

from gateway.rtmp import amf0, ertmp, events
from gateway.rtmp import messages as m
from gateway.rtmp.connection import State
from gateway.rtmp.ertmp import Capabilities, parse_capabilities
from segmenter.flv import AUDIO_FOURCCS
from tests.rtmp.sessions import Script, replay
from tests.rtmp.test_client import Pair, decode, drain, new_client, permissive
from tests.rtmp.test_connection import replies

# AMF0 members as a client sends them (name: u16 length + UTF-8, then the value, AMF0 §2.2).
GOLDEN_CLIENT_FOURCC_LIST = (
    "000a 666f75724363 4c697374"  # "fourCcList"
    " 0a 0000000b"  # strict array of 11
    " 020004 61766331 020004 68766331 020004 61763031 020004 76703039 020004 76703038"
    " 020004 6d703461 020004 4f707573 020004 664c6143 020004 61632d33 020004 65632d33"
    " 020004 2e6d7033"  # avc1 hvc1 av01 vp09 vp08 mp4a Opus fLaC ac-3 ec-3 .mp3
)
GOLDEN_CLIENT_MAPS = (
    "0012 766964656f466f75724363496e666f4d6170"  # "videoFourCcInfoMap"
    " 03 0001 2a 00 4010000000000000 000009"  # {"*": 4.0 (CanForward)}
    " 0012 617564696f466f75724363496e666f4d6170"  # "audioFourCcInfoMap"
    " 03 0001 2a 00 4010000000000000 000009"
)
GOLDEN_CAPS_EX_7 = "0006 63617073 4578 00 401c000000000000"  # capsEx: 7.0
GOLDEN_SERVER_VIDEO_MAP = (
    "0012 766964656f466f75724363496e666f4d6170 03"
    " 0004 61763031 00 4010000000000000"  # av01: CanForward
    " 0004 61766331 00 4010000000000000"  # avc1
    " 0004 68766331 00 4010000000000000"  # hvc1
    " 0004 76703038 00 4010000000000000"  # vp08
    " 0004 76703039 00 4010000000000000"  # vp09
    " 000009"
)
# A connect command as an E-RTMP v1 encoder sends it (FFmpeg's rtmp_enhanced_codecs): app "live",
# fourCcList ["hvc1", "av01"], and a v2 capsEx of 3 (Reconnect | Multitrack).
GOLDEN_ENHANCED_CONNECT = bytes.fromhex(
    "02 0007 636f6e6e656374 00 3ff0000000000000"  # "connect", transaction 1
    " 03 0003 617070 02 0004 6c697665"  # {app: "live",
    " 0005 7463 55726c 02 0017 72746d703a2f2f6578616d706c652e636f6d2f6c697665"  # tcUrl
    " 000a 666f75724363 4c697374 0a 00000002 020004 68766331 020004 61763031"
    " 0006 63617073 4578 00 4008000000000000"  # capsEx: 3.0
    " 000009"
)
GOLDEN_RECONNECT = bytes.fromhex(
    "02 0008 6f6e537461747573 00 0000000000000000 05"  # "onStatus", 0, null
    " 03 0005 6c6576656c 02 0006 737461747573"  # level: "status"
    " 0004 636f6465 02 0026 4e6574436f6e6e656374696f6e2e436f6e6e6563742e"
    "5265636f6e6e65637452657175657374"  # code: "NetConnection.Connect.ReconnectRequest"
    " 000b 6465736372697074696f6e 02 0004 62796521"  # description: "bye!"
    " 0005 7463 55726c 02 0010 2f2f6f746865722e686f73742f617070"  # tcUrl: "//other.host/app"
    " 000009"
)


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def test_parse_every_field() -> None:
    caps, problems = parse_capabilities(
        {
            "fourCcList": ["hvc1", "av01", "*"],
            "videoFourCcInfoMap": amf0.EcmaArray({"vp09": 3.0, "hvc1": 1.0}),
            "audioFourCcInfoMap": {"*": 4.0},
            "capsEx": 15.0,
        }
    )
    assert problems == []
    assert caps == Capabilities(
        ("hvc1", "av01", "*"), {"vp09": 3, "hvc1": 1}, {"*": 4}, 15, announced=True
    )
    assert caps.multitrack and caps.reconnect
    assert caps.accepts("hvc1", video=True) and caps.accepts("Opus", video=False)
    assert caps.accepts("avc1", video=True)  # '*' in fourCcList


def test_wildcard_in_a_map_overrides_specific_flags() -> None:
    caps, _ = parse_capabilities({"videoFourCcInfoMap": {"*": 2.0, "hvc1": 1.0}})
    assert not caps.accepts("hvc1", video=True)  # '*' says encode only
    caps, _ = parse_capabilities({"videoFourCcInfoMap": {"hvc1": 1.0}})
    assert caps.accepts("hvc1", video=True) and not caps.accepts("av01", video=True)


def test_legacy_connect_announces_nothing() -> None:
    caps, problems = parse_capabilities({"app": "live", "capabilities": 15.0})
    assert caps == Capabilities() and not caps.announced and problems == []
    assert not caps.multitrack and not caps.accepts("hvc1", video=True)


@pytest.mark.parametrize(
    ("obj", "kept", "problem"),
    [
        ({"fourCcList": "hvc1"}, Capabilities(announced=True), "fourCcList is not an array"),
        (
            {"fourCcList": ["hvc1", 7.0, "toolong", None]},
            Capabilities(("hvc1",), announced=True),
            "fourCcList entry 7.0",
        ),
        ({"videoFourCcInfoMap": ["hvc1"]}, Capabilities(announced=True), "videoFourCcInfoMap is"),
        (
            {"audioFourCcInfoMap": {"Opus": "all", "mp4a": -1.0, "fLaC": math.nan, "ac-3": 5.0}},
            Capabilities(audio={"ac-3": 5}, announced=True),
            "audioFourCcInfoMap['Opus']",
        ),
        ({"capsEx": "7"}, Capabilities(announced=True), "capsEx '7'"),
        ({"capsEx": True}, Capabilities(announced=True), "capsEx True"),
        ({"capsEx": 2.5}, Capabilities(announced=True), "capsEx 2.5"),
        ({"capsEx": math.inf}, Capabilities(announced=True), "capsEx inf"),
        ({"capsEx": 0x102}, Capabilities(caps_ex=2, announced=True), None),  # unknown bits off
    ],
)
def test_malformed_values_are_ignored_and_reported(
    obj: dict[str, object], kept: Capabilities, problem: str | None
) -> None:
    caps, problems = parse_capabilities(obj)
    assert caps == kept
    if problem is None:
        assert problems == []
    else:
        assert problems and problems[0].startswith(problem) and "ignored" in problems[0]


def test_client_properties_golden_bytes() -> None:
    props = ertmp.client_properties()
    assert amf0.encode(props) == h(
        "03 " + GOLDEN_CLIENT_FOURCC_LIST + GOLDEN_CLIENT_MAPS + GOLDEN_CAPS_EX_7 + " 000009"
    )


def test_client_connect_carries_the_fields_and_reads_the_servers_answer() -> None:
    p = Pair(permissive, lambda c, e: None)
    p.client.connect("live", "rtmp://127.0.0.1:1935/live", extra=ertmp.client_properties())
    p.pump()
    sent = decode(bytes(p.c2s[1537 + 1536 :]))
    connect = next(r for r in sent if r.type_id == m.COMMAND_AMF0)
    fields = h(GOLDEN_CLIENT_FOURCC_LIST + GOLDEN_CLIENT_MAPS + GOLDEN_CAPS_EX_7)
    assert connect.body.endswith(fields + h("000009"))
    request = next(e for e in p.sev if isinstance(e, events.ConnectRequest))
    assert request.capabilities.multitrack and request.capabilities.reconnect
    assert request.capabilities.accepts("ec-3", video=False) and request.problems == ()
    # The server's answer, parsed by the client role.
    result = next(e for e in p.cev if isinstance(e, events.ConnectResult))
    assert result.success and result.properties["capsEx"] == 7.0
    assert p.client.peer_caps.multitrack and p.client.peer_caps.reconnect
    assert p.client.peer_caps.accepts("hvc1", video=True)


def test_enhanced_connect_golden_bytes_in_and_result_out() -> None:
    s = Script(digest=False)
    s.msg(3, m.COMMAND_AMF0, 0, GOLDEN_ENHANCED_CONNECT)
    data = s.data()
    whole, conn = replay([data], eof=False)
    bytewise, _ = replay([data[i : i + 1] for i in range(len(data))], eof=False)
    assert bytewise == whole
    request = next(e for e in whole if isinstance(e, events.ConnectRequest))
    assert request.capabilities == Capabilities(("hvc1", "av01"), caps_ex=3, announced=True)
    assert conn.peer_caps == request.capabilities and conn.state is State.CONNECTED

    result = next(r for r in replies(conn.data_to_send()) if r.type_id == m.COMMAND_AMF0)
    # The properties object: the legacy members, then what we support (E-RTMP v2).
    legacy = amf0.encode("_result", 1.0, {"fmsVer": "FMS/3,0,1,123", "capabilities": 31.0})
    assert result.body.startswith(legacy[:-3])  # the same object, before its end marker
    rest = result.body[len(legacy) - 3 :]
    assert rest.startswith(h(GOLDEN_SERVER_VIDEO_MAP))
    rest = rest[len(h(GOLDEN_SERVER_VIDEO_MAP)) :]
    audio_map = {c: 4.0 for c in sorted(AUDIO_FOURCCS)}
    audio = amf0.encode(audio_map)
    assert rest.startswith(h("0012 617564696f466f75724363496e666f4d6170") + audio)
    rest = rest[20 + len(audio) :]
    assert rest.startswith(h(GOLDEN_CAPS_EX_7 + "000009"))
    values = amf0.decode_all(result.body)
    assert values[3]["code"] == "NetConnection.Connect.Success"


def test_reconnect_request_golden_bytes_and_client_event() -> None:
    p = Pair(permissive, lambda c, e: None)
    p.client.connect("live", "rtmp://a.example:1935/live")
    p.pump()
    p.server.send_reconnect_request("bye!", "//other.host/app")
    out = p.server.data_to_send()
    # One chunk on csid 3 after the connect _result: fmt 1 (same stream 0), delta 0, 134 bytes,
    # type 20 (RTMP 1.0 §5.3.1.2.2), then the command.
    assert out == h("43 000000 000086 14") + GOLDEN_RECONNECT
    for i in range(len(out)):  # byte by byte into the client
        p.client.receive_data(out[i : i + 1])
    got = drain(p.client)
    assert got == [events.ReconnectRequest("rtmp://other.host/app", "bye!")]


def test_reconnect_request_without_tc_url_means_the_same_server() -> None:
    p = Pair(permissive, lambda c, e: None)
    p.client.connect("live", "rtmp://a.example:1935/live")
    p.client.publish("key")
    p.pump()
    p.server.send_reconnect_request("The gateway is shutting down.")
    p.client.receive_data(p.server.data_to_send())
    assert drain(p.client) == [events.ReconnectRequest(None, "The gateway is shutting down.")]


def test_reconnect_request_needs_a_connected_session() -> None:
    conn = new_client()
    with pytest.raises(Exception, match="not-connected"):
        conn.send_reconnect_request("x")


@pytest.mark.parametrize(
    ("ref", "want"),
    [
        ("rtmp://foo.example:1935/realtimeapp", "rtmp://foo.example:1935/realtimeapp"),
        ("//192.0.2.0/realtimeapp", "rtmp://192.0.2.0/realtimeapp"),
        ("/realtimeapp", "rtmp://a.example:1935/realtimeapp"),
        ("other", "rtmp://a.example:1935/other"),
        ("", "rtmp://a.example:1935/live"),
    ],
)
def test_relative_tc_url_is_resolved_against_the_current_one(ref: str, want: str) -> None:
    assert ertmp.resolve_tc_url("rtmp://a.example:1935/live", ref) == want
