"""Property tests: AMF round-trips, and "any bytes either decode or raise our error"."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.rtmp.amf0 import (
    UNDEFINED,
    UNSUPPORTED,
    AmfDate,
    AmfLimits,
    Avmplus,
    EcmaArray,
    TypedObject,
    XmlDocument,
    decode_all,
    decode_amf3_message_body,
    encode,
)
from gateway.rtmp.amf3 import Amf3Xml
from gateway.rtmp.errors import RemoteProtocolError
from tests.rtmp.test_amf0 import FFMPEG_CONNECT, same

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ROOMY = AmfLimits(max_depth=64, max_items=100_000)

finite = st.floats(allow_nan=False)
keys = st.text(max_size=8)

amf0_leaves = st.one_of(
    st.none(),
    st.just(UNDEFINED),
    st.just(UNSUPPORTED),
    st.booleans(),
    finite,
    st.integers(min_value=-(2**53), max_value=2**53),
    st.text(max_size=20),
    st.text(max_size=20).map(XmlDocument),
    st.builds(AmfDate, finite, st.integers(-0x8000, 0x7FFF)),
)
amf0_values = st.recursive(
    amf0_leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.tuples(children, children),
        st.dictionaries(keys, children, max_size=5),
        st.dictionaries(keys, children, max_size=5).map(EcmaArray),
        st.builds(TypedObject, st.text(max_size=8), st.dictionaries(keys, children, max_size=4)),
    ),
    max_leaves=20,
)

# AMF3 cannot carry an empty member name, an empty associative array (it is just an
# empty array) or a class name "" (anonymous object): the strategies avoid those.
amf3_keys = st.text(min_size=1, max_size=8)
amf3_leaves = st.one_of(
    st.none(),
    st.just(UNDEFINED),
    st.booleans(),
    finite,
    st.integers(min_value=-(2**40), max_value=2**40),
    st.text(max_size=20),
    st.binary(max_size=20),
    st.text(max_size=20).map(XmlDocument),
    st.text(max_size=20).map(Amf3Xml),
    st.builds(AmfDate, finite),
)
amf3_values = st.recursive(
    amf3_leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(amf3_keys, children, max_size=5),
        st.dictionaries(amf3_keys, children, min_size=1, max_size=5).map(EcmaArray),
        st.builds(TypedObject, amf3_keys, st.dictionaries(amf3_keys, children, max_size=4)),
    ),
    max_leaves=20,
)


@SETTINGS
@given(st.lists(amf0_values, min_size=1, max_size=4))
def test_amf0_round_trip(values: list[Any]) -> None:
    assert same(decode_all(encode(*values), ROOMY), values)


@SETTINGS
@given(amf3_values)
def test_amf3_round_trip(value: Any) -> None:
    assert same(decode_all(encode("name", Avmplus(value)), ROOMY), ["name", value])


@SETTINGS
@given(st.lists(amf0_values, max_size=3))
def test_amf3_message_body_round_trip(values: list[Any]) -> None:
    body = b"\x00" + encode("cmd", *values)
    assert same(decode_amf3_message_body(body, ROOMY), ["cmd", *values])


def _decodes_or_protocol_error(data: bytes) -> None:
    for decode in (decode_all, decode_amf3_message_body):
        for limits in (AmfLimits(), AmfLimits(max_depth=3, max_items=20, max_string=8)):
            try:
                result = decode(data, limits)
            except RemoteProtocolError as exc:
                assert exc.reason.startswith("amf-")
            else:
                assert isinstance(result, list)


@SETTINGS
@given(st.binary(max_size=300))
def test_arbitrary_bytes(data: bytes) -> None:
    _decodes_or_protocol_error(data)
    _decodes_or_protocol_error(b"\x11" + data)  # exercise the AMF3 decoder too


# Markers and small numbers that steer random input into the interesting branches.
_tokens = st.one_of(
    st.sampled_from([bytes([m]) for m in range(0x13)]),
    st.sampled_from([b"\x00\x00\x09", b"\x00\x00", b"\x00\x01", b"\xff\xff", b"\x00\x00\x00\x02"]),
    st.binary(max_size=4),
)


@SETTINGS
@given(st.lists(_tokens, max_size=60).map(b"".join))
def test_marker_soup(data: bytes) -> None:
    _decodes_or_protocol_error(data)
    _decodes_or_protocol_error(b"\x11" + data)


@SETTINGS
@given(st.one_of(amf0_values, amf3_values.map(Avmplus)), st.data())
def test_mutated_valid_bodies(value: Any, data: st.DataObject) -> None:
    body = bytearray(encode("x", value))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(body) - 1))
        body[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(body)))
    _decodes_or_protocol_error(bytes(body[:cut]))
    _decodes_or_protocol_error(bytes(body))


def test_every_truncation_of_a_real_connect() -> None:
    for cut in range(len(FFMPEG_CONNECT)):
        _decodes_or_protocol_error(FFMPEG_CONNECT[:cut])
