"""Typed messages (RTMP 1.0 §5.4, §7.1): control tables both ways, commands, aggregates."""

from __future__ import annotations

import pytest

from gateway.rtmp import amf0
from gateway.rtmp import messages as m
from gateway.rtmp.errors import RemoteProtocolError

H = bytes.fromhex
LIMITS = amf0.AmfLimits()

CONTROL_TABLE: list[tuple[int, bytes, m.ControlMessage]] = [
    (1, H("00001000"), m.SetChunkSize(4096)),
    (2, H("00000004"), m.Abort(4)),
    (3, H("0098967F"), m.Acknowledgement(9999999)),
    (5, H("002625A0"), m.WindowAckSize(2_500_000)),
    (6, H("002625A0 02"), m.SetPeerBandwidth(2_500_000, 2)),
    (6, H("00001000 00"), m.SetPeerBandwidth(4096, 0)),
    (4, H("0000 00000001"), m.UserControl(m.StreamBegin(1), 0)),
    (4, H("0001 00000001"), m.UserControl(m.StreamEOF(1), 1)),
    (4, H("0002 00000001"), m.UserControl(m.StreamDry(1), 2)),
    (4, H("0003 00000001 00000BB8"), m.UserControl(m.SetBufferLength(1, 3000), 3)),
    (4, H("0004 00000001"), m.UserControl(m.StreamIsRecorded(1), 4)),
    (4, H("0006 0001E240"), m.UserControl(m.PingRequest(123456), 6)),
    (4, H("0007 0001E240"), m.UserControl(m.PingResponse(123456), 7)),
]


@pytest.mark.parametrize(("type_id", "body", "msg"), CONTROL_TABLE)
def test_control_both_ways(type_id: int, body: bytes, msg: m.ControlMessage) -> None:
    assert m.decode_control(type_id, body) == msg
    assert msg.type_id == type_id
    assert msg.encode() == body


def test_user_control_helper_and_unknown_event() -> None:
    assert m.user_control(m.PingRequest(5)) == m.UserControl(m.PingRequest(5), 6)
    assert m.decode_control(4, H("001F 00000000")) == m.UserControl(None, 31)


def test_peer_bandwidth_without_limit_type_defaults_to_dynamic() -> None:
    assert m.decode_control(6, H("00001000")) == m.SetPeerBandwidth(4096, 2)


@pytest.mark.parametrize(
    ("type_id", "body"), [(1, b"\0"), (3, b""), (4, H("0003 00000001")), (4, b"")]
)
def test_short_control_bodies(type_id: int, body: bytes) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        m.decode_control(type_id, body)
    assert info.value.reason == "control-message-size"


def test_command_roundtrip_and_bytes() -> None:
    cmd = m.Command("createStream", 4.0, None)
    body = m.encode_command(cmd)
    # string "createStream", number 4.0, null
    assert body == H("02000C") + b"createStream" + H("00 4010000000000000 05")
    assert m.decode_command(20, body, LIMITS) == cmd
    pub = m.Command("publish", 5.0, None, ("key?t=1", "live"))
    assert m.decode_command(20, m.encode_command(pub), LIMITS) == pub


def test_command_amf3_wrapper() -> None:
    body = b"\x00" + amf0.encode("connect", 1.0, {"app": "live"})
    assert m.decode_command(17, body, LIMITS) == m.Command("connect", 1.0, {"app": "live"})


@pytest.mark.parametrize(
    "body", [b"", amf0.encode(1.0, 2.0), amf0.encode(None)], ids=["empty", "number", "null"]
)
def test_command_without_name(body: bytes) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        m.decode_command(20, body, LIMITS)
    assert info.value.reason == "command-malformed"


def test_command_missing_transaction_id_is_zero() -> None:
    assert m.decode_command(20, amf0.encode("FCUnpublish"), LIMITS).transaction_id == 0.0
    assert m.decode_command(20, amf0.encode("x", "y"), LIMITS).transaction_id == 0.0


def sub(type_id: int, ts: int, body: bytes, sid: int = 1) -> bytes:
    head = bytes([type_id]) + len(body).to_bytes(3, "big")
    head += (ts & 0xFFFFFF).to_bytes(3, "big") + bytes([ts >> 24]) + sid.to_bytes(3, "big")
    return head + body + (11 + len(body)).to_bytes(4, "big")


def test_aggregate_split_shifts_times() -> None:
    body = sub(9, 1000, b"vid") + sub(8, 1010, b"au") + sub(9, 0x1000020, b"hi")
    parts = m.split_aggregate(body, 5000)
    assert parts == [
        m.AggregatePart(9, 5000, 1, b"vid"),
        m.AggregatePart(8, 5010, 1, b"au"),
        m.AggregatePart(9, 0x1000020 + 4000, 1, b"hi"),
    ]


@pytest.mark.parametrize("cut", [1, 5, 11, 13, 17])
def test_aggregate_truncated(cut: int) -> None:
    body = sub(9, 0, b"vid") + sub(9, 0, b"vid")
    with pytest.raises(RemoteProtocolError) as info:
        m.split_aggregate(body[: len(body) - cut], 0)
    assert info.value.reason == "aggregate-malformed"


def test_decode_data_amf0_and_amf3() -> None:
    values = ["@setDataFrame", "onMetaData", amf0.EcmaArray(width=1280.0)]
    assert m.decode_data(18, amf0.encode(*values), LIMITS) == values
    assert m.decode_data(15, b"\x00" + amf0.encode(*values), LIMITS) == values
