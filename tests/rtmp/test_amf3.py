"""AMF3 byte vectors (AMF 3 spec §1.3, §3) behind the AMF0 0x11 switch, both directions."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.rtmp.amf0 import (
    UNDEFINED,
    AmfDate,
    AmfLimits,
    Avmplus,
    EcmaArray,
    TypedObject,
    XmlDocument,
    decode_all,
    encode,
)
from gateway.rtmp.amf3 import Amf3Xml, encode_amf3
from gateway.rtmp.errors import LocalProtocolError, RemoteProtocolError
from tests.rtmp.test_amf0 import h, same

# (AMF3 bytes, value): decode(0x11 + bytes) == [value] and encode(Avmplus(value)) == 0x11 + bytes.
VECTORS: list[tuple[str, str, Any]] = [
    ("undefined", "00", UNDEFINED),
    ("null", "01", None),
    ("false", "02", False),
    ("true", "03", True),
    ("int-0", "04 00", 0),
    ("int-127", "04 7F", 127),
    ("int-128", "04 81 00", 128),
    ("int-16383", "04 FF 7F", 16383),
    ("int-16384", "04 81 80 00", 16384),
    ("int-2097151", "04 FF FF 7F", 2097151),
    ("int-2097152", "04 80 C0 80 00", 2097152),
    ("int-max", "04 BF FF FF FF", (1 << 28) - 1),
    ("int-minus-1", "04 FF FF FF FF", -1),
    ("int-min", "04 C0 80 80 00", -(1 << 28)),
    ("int-too-big-is-double", "05 41B0000000000000", 1 << 28),
    ("double", "05 3FF8000000000000", 1.5),
    ("string-empty", "06 01", ""),
    ("string", "06 07 616263", "abc"),
    ("xml-doc", "07 09 3C612F3E", XmlDocument("<a/>")),
    ("date", "08 01 3FF0000000000000", AmfDate(1.0)),
    ("array-dense", "09 05 01 04 01 06 03 61", [1, "a"]),
    ("array-empty", "09 01 01", []),
    ("array-assoc", "09 01 03 6B 04 01 01", EcmaArray(k=1)),
    ("object-empty", "0A 0B 01 01", {}),
    ("object-dynamic", "0A 0B 01 03 61 01 01", {"a": None}),
    ("object-typed", "0A 0B 03 43 03 78 03 01", TypedObject("C", x=True)),
    ("xml", "0B 09 3C622F3E", Amf3Xml("<b/>")),
    ("bytearray-empty", "0C 01", b""),
    ("bytearray", "0C 05 00FF", b"\x00\xff"),
]


@pytest.mark.parametrize(("data", "value"), [v[1:] for v in VECTORS], ids=[v[0] for v in VECTORS])
def test_vector_decodes(data: str, value: Any) -> None:
    assert same(decode_all(b"\x11" + h(data)), [value])


@pytest.mark.parametrize(("data", "value"), [v[1:] for v in VECTORS], ids=[v[0] for v in VECTORS])
def test_vector_encodes(data: str, value: Any) -> None:
    assert encode_amf3(value) == h(data)
    assert encode(Avmplus(value)) == b"\x11" + h(data)


def test_amf0_switches_implicitly_for_amf3_only_types() -> None:
    assert encode(b"\x01") == h("11 0C 03 01")
    assert encode(Amf3Xml("<b/>")) == h("11 0B 09 3C622F3E")


def test_string_references() -> None:
    # §1.3.2: "ab" is inline once then by reference (U29S-ref 0 -> 0x00); "" is never stored.
    assert decode_all(h("11 09 07 01 06 01 06 05 6162 06 00")) == [["", "ab", "ab"]]
    # Member names share the string table with values.
    assert decode_all(h("11 0A 0B 01 05 6162 06 00 01")) == [{"ab": "ab"}]


def test_object_reference_is_same_python_object() -> None:
    # Object table: #0 the array, #1 the object; 0A 02 is U29O-ref index 1.
    (value,) = decode_all(h("11 09 05 01 0A 0B 01 01 0A 02"))
    assert value[1] is value[0]


def test_traits_reference_and_sealed_members() -> None:
    # 0x13: inline traits, not dynamic, 1 sealed member; 0x01: traits reference #0.
    (value,) = decode_all(h("11 09 05 01 0A 13 03 43 03 78 04 01 0A 01 04 02"))
    assert same(value, [TypedObject("C", x=1), TypedObject("C", x=2)])


def test_sealed_and_dynamic_members_merge() -> None:
    assert decode_all(h("11 0A 1B 01 03 61 04 01 03 62 04 02 01")) == [{"a": 1, "b": 2}]


def test_mixed_array_becomes_ecma_array_with_index_keys() -> None:
    (value,) = decode_all(h("11 09 05 03 6B 04 07 01 04 01 04 02"))
    assert same(value, EcmaArray({"k": 7, "0": 1, "1": 2}))


def test_reference_tables_reset_per_switch() -> None:
    # AMF0 §3.1: each 0x11 starts a new AMF3 context, so string ref #0 is unknown again.
    with pytest.raises(RemoteProtocolError) as info:
        decode_all(h("11 06 05 6162 11 06 00"))
    assert info.value.reason == "amf-reference"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ("0A 07 01", "amf-externalizable"),  # U29O-traits-ext
        ("0D", "amf-unsupported-type"),  # Vector<int>
        ("11", "amf-unsupported-type"),  # Dictionary
        ("12", "amf-marker"),
        ("06 00", "amf-reference"),  # string table empty
        ("0A 01", "amf-reference"),  # traits table empty
        ("0A 00", "amf-reference"),  # object table empty
        ("09 03 01 09 00", "amf-reference-cycle"),  # array containing itself
        ("06 FF FF FF FF", "amf-string-size"),
        ("0C FF FF FF FF", "amf-string-size"),
        ("09 FF FF FF FF 01", "amf-truncated"),  # huge dense count, nothing follows
        ("04 FF", "amf-truncated"),
        ("05 3F", "amf-truncated"),
        ("06 03 FF", "amf-utf8"),
    ],
)
def test_malformed_amf3_raises_named_reason(data: str, reason: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_all(b"\x11" + h(data))
    assert info.value.reason == reason


def test_depth_is_shared_across_the_switch() -> None:
    amf0_levels = b"\x0a\x00\x00\x00\x01" * 15
    assert decode_all(amf0_levels + h("11 09 03 01 01"))  # 15 + 1 levels
    with pytest.raises(RemoteProtocolError) as info:
        decode_all(amf0_levels + h("11 09 03 01 09 03 01 01"))  # 15 + 2 levels
    assert info.value.reason == "amf-depth"


def test_items_and_string_limits_apply_to_amf3() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_all(encode(Avmplus(list(range(20)))), AmfLimits(max_items=20))
    assert info.value.reason == "amf-items"
    for value in ("abcd", b"abcd", XmlDocument("abcd"), Amf3Xml("abcd")):
        with pytest.raises(RemoteProtocolError) as info:
            decode_all(encode(Avmplus(value)), AmfLimits(max_string=3))
        assert info.value.reason == "amf-string-size"


def test_object_reference_charged_expanded_size() -> None:
    # Array #0 of 3 numbers, then 100 references to it: 1 + 3 + 1 + 100 * 4 values.
    body = h("11 09 81 4B 01 09 07 01 04 01 04 02 04 03") + h("09 02") * 100
    assert len(decode_all(body, AmfLimits(max_items=406))[0]) == 101
    with pytest.raises(RemoteProtocolError) as info:
        decode_all(body, AmfLimits(max_items=405))
    assert info.value.reason == "amf-items"


@pytest.mark.parametrize(
    ("value", "reason"),
    [({"": 1}, "amf-encode-key"), ({1: 1}, "amf-encode-key"), (object(), "amf-encode-type")],
)
def test_encode_errors(value: Any, reason: str) -> None:
    with pytest.raises(LocalProtocolError) as info:
        encode_amf3(value)
    assert info.value.reason == reason
