"""AMF0 byte vectors (AMF 0 spec §2), used for both decode and encode, plus limits."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from gateway.rtmp.amf0 import (
    UNDEFINED,
    UNSUPPORTED,
    AmfDate,
    AmfLimits,
    EcmaArray,
    TypedObject,
    XmlDocument,
    decode_all,
    decode_amf3_message_body,
    decode_one,
    encode,
)
from gateway.rtmp.errors import LocalProtocolError, ProtocolError, RemoteProtocolError


def same(a: Any, b: Any) -> bool:
    """Equality that also checks container types (EcmaArray vs dict, class names)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return float(a) == float(b)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return (
            type(a) is type(b)
            and getattr(a, "class_name", None) == getattr(b, "class_name", None)
            and list(a) == list(b)
            and all(same(a[k], b[k]) for k in a)
        )
    return type(a) is type(b) and a == b


def h(s: str) -> bytes:
    return bytes.fromhex(s.replace(" ", ""))


ONE = "00 3FF0000000000000"  # number 1.0 (§2.2)

# (bytes, value): decode(bytes) == [value] and encode(value) == bytes.
VECTORS: list[tuple[str, bytes, Any]] = [
    ("number-1", h(ONE), 1.0),
    ("number-neg-half", h("00 BFE0000000000000"), -0.5),
    ("number-int", h("00 4059000000000000"), 100),
    ("number-inf", h("00 7FF0000000000000"), float("inf")),
    ("bool-true", h("01 01"), True),
    ("bool-false", h("01 00"), False),
    ("string-empty", h("02 0000"), ""),
    ("string-app", h("02 0003 617070"), "app"),
    ("string-utf8", h("02 0002 C3A9"), "é"),
    ("object-empty", h("03 000009"), {}),
    ("object-one", h(f"03 0001 61 {ONE} 000009"), {"a": 1.0}),
    ("object-empty-key", h(f"03 0000 {ONE} 000009"), {"": 1.0}),
    ("null", h("05"), None),
    ("undefined", h("06"), UNDEFINED),
    ("ecma-one", h("08 00000001 0001 6B 02 0001 76 000009"), EcmaArray(k="v")),
    ("ecma-empty", h("08 00000000 000009"), EcmaArray()),
    ("strict-array", h(f"0A 00000002 {ONE} 02 0001 61"), [1.0, "a"]),
    ("strict-array-empty", h("0A 00000000"), []),
    ("date-epoch", h("0B 0000000000000000 0000"), AmfDate(0.0)),
    ("date-tz", h("0B 4059000000000000 FFC4"), AmfDate(100.0, -60)),
    ("long-string", b"\x0c\x00\x01\x00\x00" + b"a" * 65536, "a" * 65536),
    ("string-max-short", b"\x02\xff\xff" + b"b" * 65535, "b" * 65535),
    ("unsupported", h("0D"), UNSUPPORTED),
    ("xml", h("0F 00000004 3C612F3E"), XmlDocument("<a/>")),
    ("typed-object", h("10 0003 466F6F 0001 78 05 000009"), TypedObject("Foo", x=None)),
    ("avmplus-bytearray", h("11 0C 05 0102"), b"\x01\x02"),
    (
        "nested",
        h(f"03 0001 6F 03 0001 6C 0A 00000001 {ONE} 000009 000009"),
        {"o": {"l": [1.0]}},
    ),
]

# FFmpeg 5.1 (Lavf59.27.100) connect command body, captured from a real publish to
# rtmp://127.0.0.1:38261/live/key (message type 20, de-chunked).
FFMPEG_CONNECT = h(
    "020007636f6e6e656374003ff00000000000000300036170700200046c69766500047479706502000a6e6f"
    "6e707269766174650008666c617368566572020024464d4c452f332e302028636f6d70617469626c653b20"
    "4c61766635392e32372e313030290005746355726c02001b72746d703a2f2f3132372e302e302e313a3338"
    "3236312f6c697665000009"
)
FFMPEG_CONNECT_VALUES = [
    "connect",
    1.0,
    {
        "app": "live",
        "type": "nonprivate",
        "flashVer": "FMLE/3.0 (compatible; Lavf59.27.100)",
        "tcUrl": "rtmp://127.0.0.1:38261/live",
    },
]


@pytest.mark.parametrize(("data", "value"), [v[1:] for v in VECTORS], ids=[v[0] for v in VECTORS])
def test_vector_decodes(data: bytes, value: Any) -> None:
    assert same(decode_all(data), [value])


@pytest.mark.parametrize(("data", "value"), [v[1:] for v in VECTORS], ids=[v[0] for v in VECTORS])
def test_vector_encodes(data: bytes, value: Any) -> None:
    assert encode(value) == data


def test_vector_table_covers_every_amf0_marker_we_write() -> None:
    written = {0x00, 0x01, 0x02, 0x03, 0x05, 0x06, 0x08, 0x0A, 0x0B, 0x0C, 0x0D, 0x0F, 0x10, 0x11}
    assert {data[0] for _, data, _ in VECTORS} == written


def test_ffmpeg_connect_both_ways() -> None:
    assert same(decode_all(FFMPEG_CONNECT), FFMPEG_CONNECT_VALUES)
    assert encode(*FFMPEG_CONNECT_VALUES) == FFMPEG_CONNECT


def test_decode_one_walks_offsets() -> None:
    values = []
    pos = 0
    while pos < len(FFMPEG_CONNECT):
        value, pos = decode_one(FFMPEG_CONNECT, pos, AmfLimits())
        values.append(value)
    assert pos == len(FFMPEG_CONNECT)
    assert same(values, FFMPEG_CONNECT_VALUES)


def _pairs(n: int) -> bytes:
    return b"".join(b"\x00\x02k" + bytes([0x30 + i % 10]) + bytes.fromhex(ONE) for i in range(n))


@pytest.mark.parametrize("real_count", [0, 3, 25])
def test_obs_style_ecma_count_is_only_a_hint(real_count: int) -> None:
    # OBS writes 20 as the ECMA array count whatever follows (AMF0 §2.10 says "hint").
    body = encode("@setDataFrame", "onMetaData") + b"\x08\x00\x00\x00\x14" + _pairs(real_count)
    body += b"\x00\x00\x09" + encode("after")
    values = decode_all(body)
    assert values[:2] == ["@setDataFrame", "onMetaData"]
    assert type(values[2]) is EcmaArray
    assert values[2] == {f"k{i % 10}": 1.0 for i in range(real_count)}
    assert values[3] == "after"


def test_decode_only_forms() -> None:
    assert decode_all(h("01 02")) == [True]  # any non-zero byte is true
    assert decode_all(h("0C 00000001 61")) == ["a"]  # a short long-string
    assert decode_all(h("11 04 05")) == [5]  # AMF3 integer behind the switch


def test_reference_resolves_to_earlier_complex_value() -> None:
    # Table (§2.9): #0 the outer object, #1 the inner strict array; then two references.
    body = h("03 0001 61 0A 00000000 000009") + h("07 0001") + h("07 0000")
    first, ref_array, ref_object = decode_all(body)
    assert ref_array is first["a"]
    assert ref_object is first


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (h("04"), "amf-unsupported-type"),  # movieclip, reserved
        (h("0E"), "amf-unsupported-type"),  # recordset, remoting only
        (h("09"), "amf-marker"),  # object-end outside an object
        (h("12"), "amf-marker"),
        (h("FF"), "amf-marker"),
        (h("00 3F"), "amf-truncated"),
        (h("02 0005 6162"), "amf-truncated"),
        (h("02 0001 FF"), "amf-utf8"),
        (h("03 0001 61 05"), "amf-truncated"),  # missing object end
        (h("07 0000"), "amf-reference"),  # empty table
        (h("03 0001 61 07 0000 000009"), "amf-reference-cycle"),
        (h("0A FFFFFFFF"), "amf-truncated"),  # huge count, no values: no preallocation
        (h("08 FFFFFFFF"), "amf-truncated"),
        (h("0C FFFFFFFF 61"), "amf-string-size"),
        (h("0F 7FFFFFFF"), "amf-string-size"),
        (h("0B 00"), "amf-truncated"),
        (h("10 0001"), "amf-truncated"),
        (h("11"), "amf-truncated"),
    ],
)
def test_malformed_input_raises_named_reason(data: bytes, reason: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_all(data)
    assert info.value.reason == reason


def _nested_arrays(levels: int) -> bytes:
    return b"\x0a\x00\x00\x00\x01" * levels + b"\x05"


def test_depth_limit() -> None:
    assert decode_all(_nested_arrays(16))  # default max_depth=16 allows 16 levels
    with pytest.raises(RemoteProtocolError) as info:
        decode_all(_nested_arrays(17))
    assert info.value.reason == "amf-depth"
    with pytest.raises(RemoteProtocolError) as info:
        decode_all(encode({"a": {"b": {}}}), AmfLimits(max_depth=2))
    assert info.value.reason == "amf-depth"


def test_python_recursion_limit_becomes_protocol_error() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_all(_nested_arrays(50_000), AmfLimits(max_depth=10**9))
    assert info.value.reason == "amf-depth"


def test_item_limit() -> None:
    limits = AmfLimits(max_items=10)
    assert len(decode_all(encode(list(range(9))), limits)[0]) == 9  # 1 array + 9 numbers
    with pytest.raises(RemoteProtocolError) as info:
        decode_all(encode(list(range(10))), limits)
    assert info.value.reason == "amf-items"
    with pytest.raises(RemoteProtocolError) as info:
        decode_all(encode(*range(11)), limits)  # counted across the whole body
    assert info.value.reason == "amf-items"


@pytest.mark.parametrize("value", ["abcd", XmlDocument("abcd"), {"abcd": None}, b"abcd"])
def test_string_limit(value: Any) -> None:
    limits = AmfLimits(max_string=3)
    with pytest.raises(RemoteProtocolError) as info:
        decode_all(encode(value), limits)
    assert info.value.reason == "amf-string-size"
    assert decode_all(encode("abc"), limits) == ["abc"]


def _reference_bomb(levels: int) -> bytes:
    # Array #k holds two references to array #k-1: 2**levels values once expanded.
    body = h(f"0A 00000002 {ONE} {ONE}")
    for k in range(1, levels):
        body += b"\x0a\x00\x00\x00\x02" + (b"\x07" + struct.pack(">H", k - 1)) * 2
    return body


def test_references_are_charged_their_expanded_size() -> None:
    assert len(decode_all(_reference_bomb(5), AmfLimits(max_depth=64))) == 5
    with pytest.raises(RemoteProtocolError) as info:
        decode_all(_reference_bomb(40), AmfLimits(max_depth=64))
    assert info.value.reason == "amf-items"


def test_references_are_charged_their_depth() -> None:
    deep = _nested_arrays(3)  # three levels: table #0..#2
    with pytest.raises(RemoteProtocolError) as info:
        decode_all(deep + h("0A 00000001 07 0000"), AmfLimits(max_depth=3))
    assert info.value.reason == "amf-depth"
    assert len(decode_all(deep + h("0A 00000001 07 0000"), AmfLimits(max_depth=4))) == 2


def test_amf3_message_body_format_byte() -> None:
    body = encode("connect", 1.0, None)
    assert decode_amf3_message_body(b"\x00" + body, AmfLimits()) == ["connect", 1.0, None]
    assert decode_amf3_message_body(body, AmfLimits()) == ["connect", 1.0, None]
    with_switch = b"\x00" + encode("onStatus", 0.0) + h("11 06 07 616263")
    assert decode_amf3_message_body(with_switch, AmfLimits()) == ["onStatus", 0.0, "abc"]
    for bad in (b"", b"\x05", b"\x11\x06\x01"):
        with pytest.raises(RemoteProtocolError) as info:
            decode_amf3_message_body(bad, AmfLimits())
        assert info.value.reason == "amf-format-byte"


def test_decode_one_rejects_offset_past_end() -> None:
    with pytest.raises(RemoteProtocolError):
        decode_one(b"\x05", 5, AmfLimits())


def cyclic() -> dict[str, Any]:
    d: dict[str, Any] = {}
    d["self"] = d
    return d


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (object(), "amf-encode-type"),
        ({1: 2}, "amf-encode-key"),
        ({"k" * 65536: 1}, "amf-encode-key"),
        (10**400, "amf-encode-number"),
        ("\ud800", "amf-encode-utf8"),
        (AmfDate(0.0, 1 << 20), "amf-encode-date"),
        (cyclic(), "amf-encode-depth"),
    ],
)
def test_encode_rejects_what_amf0_cannot_carry(value: Any, reason: str) -> None:
    with pytest.raises(LocalProtocolError) as info:
        encode(value)
    assert info.value.reason == reason
    assert isinstance(info.value, ProtocolError)


def test_value_types() -> None:
    assert not UNDEFINED
    assert repr(UNDEFINED) == "UNDEFINED"
    assert TypedObject("A", x=1) != TypedObject("B", x=1)
    assert TypedObject("A", x=1) == TypedObject("A", x=1)
    assert EcmaArray(a=1) == {"a": 1}  # equal content; only the type tells them apart
    assert encode(EcmaArray(a=1.0)) != encode({"a": 1.0})
    assert encode((1.0,)) == encode([1.0])


@pytest.mark.parametrize(
    "exc",
    [
        IndexError("x"),
        struct.error("x"),
        UnicodeDecodeError("utf-8", b"", 0, 1, "x"),
        MemoryError(),
        OverflowError(),
        KeyError("x"),
    ],
)
def test_safety_net_converts_stray_errors(monkeypatch: pytest.MonkeyPatch, exc: Exception) -> None:
    # The explicit checks already catch everything the fuzz tests find; this pins the
    # last line of defence that keeps any stray failure a RemoteProtocolError.
    from gateway.rtmp.amf_values import Reader

    def boom(self: Reader) -> int:
        raise exc

    monkeypatch.setattr(Reader, "u8", boom)
    for decode in (decode_all, decode_amf3_message_body):
        with pytest.raises(RemoteProtocolError) as info:
            decode(b"\x00\x02\x00\x00", AmfLimits())
        assert info.value.reason == "amf-malformed"
    with pytest.raises(RemoteProtocolError):
        decode_one(b"\x05", 0, AmfLimits())
