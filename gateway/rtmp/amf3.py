"""Minimal AMF3 codec (Adobe "AMF 3 Specification", 2013) for values behind AMF0 0x11.

Decodes every AMF3 §3 type except Vector (0x0D-0x10) and Dictionary (0x11), which
RTMP peers do not put in commands or metadata. Python mapping:

==========================  ===============================================
undefined / null            ``UNDEFINED`` / None
false / true                bool
integer (U29, signed)       int (encode: ints outside 29 bits become double)
double                      float
string                      str
XMLDocument (0x07)          ``XmlDocument``
date                        ``AmfDate`` (tz always 0)
array, dense part only      list
array with assoc. members   ``EcmaArray``; dense items appear under keys "0".."n-1"
object, anonymous           dict (sealed and dynamic members merged)
object with a class name    ``TypedObject``
XML (0x0B, E4X)             ``Amf3Xml``
ByteArray                   bytes
==========================  ===============================================

Reference tables (strings, objects, traits; §2.2) are fresh for each 0x11 switch, as
AMF0 §3.1 starts a new AMF3 context there. The encoder never writes references.
"""

from __future__ import annotations

import struct
from typing import Any, Final

from gateway.rtmp.amf_values import (
    ENCODE_MAX_DEPTH,
    UNDEFINED,
    AmfDate,
    Avmplus,
    EcmaArray,
    Reader,
    TypedObject,
    XmlDocument,
    _utf8,
    encode_double,
)
from gateway.rtmp.errors import LocalProtocolError, RemoteProtocolError

__all__ = ["Amf3Xml", "decode_value", "encode_amf3"]

# AMF3 §3.1 type markers.
UNDEFINED_M, NULL, FALSE, TRUE, INTEGER, DOUBLE, STRING, XML_DOC = range(8)
DATE, ARRAY, OBJECT, XML, BYTE_ARRAY = range(8, 13)

INT_MIN: Final = -(1 << 28)  # §3.6: integers are 29-bit two's complement
INT_MAX: Final = (1 << 28) - 1
U29_MAX: Final = (1 << 29) - 1
LENGTH_MAX: Final = (1 << 28) - 1  # U29 with the low "inline" flag bit leaves 28 bits

_F64: Final = struct.Struct(">d")


class Amf3Xml(str):
    """An AMF3 E4X XML value (0x0B); AMF0 cannot carry it, so it encodes via 0x11."""

    __slots__ = ()


class _Context:
    """One AMF3 context: the three reference tables of §2.2."""

    __slots__ = ("objects", "r", "strings", "traits")

    def __init__(self, reader: Reader) -> None:
        self.r = reader
        self.strings: list[str] = []
        self.objects: list[list[Any]] = []  # entries as in Reader.refs
        self.traits: list[tuple[str, bool, list[str]]] = []

    def u29(self) -> int:
        """§1.3.1: 1-4 bytes, 7 bits each with a continuation bit, the 4th byte 8 bits."""
        result = 0
        for _ in range(3):
            b = self.r.u8()
            result = (result << 7) | (b & 0x7F)
            if not b & 0x80:
                return result
        return (result << 8) | self.r.u8()

    def inline_length(self) -> tuple[bool, int]:
        """U29 with the low bit as "inline" flag; returns (inline, length or index)."""
        n = self.u29()
        return bool(n & 1), n >> 1

    def string(self) -> str:
        """§1.3.2 UTF-8-vr: inline string or index into the string table."""
        inline, n = self.inline_length()
        if not inline:
            if n >= len(self.strings):
                raise RemoteProtocolError("amf-reference")
            return self.strings[n]
        s = _utf8(self.r.string_bytes(n))
        if s:  # §1.3.2: the empty string is never sent by reference
            self.strings.append(s)
        return s

    def value(self) -> tuple[Any, int]:
        r = self.r
        marker = r.u8()
        r.charge()
        if marker == UNDEFINED_M:
            return UNDEFINED, 0
        if marker == NULL:
            return None, 0
        if marker in (FALSE, TRUE):
            return marker == TRUE, 0
        if marker == INTEGER:
            n = self.u29()
            return (n - (1 << 29) if n & (1 << 28) else n), 0
        if marker == DOUBLE:
            return _F64.unpack(r.take(8))[0], 0
        if marker == STRING:
            return self.string(), 0
        if marker in (XML_DOC, XML, DATE, BYTE_ARRAY, ARRAY, OBJECT):
            inline, n = self.inline_length()
            if not inline:
                return r.resolve(self.objects, n)
            if marker == ARRAY:
                return self.array(n)
            if marker == OBJECT:
                return self.object(n)
            return self.simple_object(marker, n), 0
        raise RemoteProtocolError("amf-unsupported-type" if marker <= 0x11 else "amf-marker")

    def simple_object(self, marker: int, n: int) -> Any:
        """XML, dates and byte arrays: leaves that still take an object-table slot."""
        value: Any
        if marker == DATE:  # §3.10: remaining U29 bits unused, then f64 ms
            value = AmfDate(_F64.unpack(self.r.take(8))[0])
        elif marker == BYTE_ARRAY:
            value = self.r.string_bytes(n)
        else:
            text = _utf8(self.r.string_bytes(n))
            value = XmlDocument(text) if marker == XML_DOC else Amf3Xml(text)
        self.objects.append([value, 1, 0])
        return value

    def array(self, dense_count: int) -> tuple[Any, int]:
        """§3.11: associative (key, value)* up to the empty key, then dense values."""
        r = self.r
        assoc: dict[str, Any] = {}
        # The table slot is taken before the members (§2.2 order); it stays incomplete,
        # so a member referring back to it is refused as a cycle.
        entry, items0, depth0 = r.begin_complex(self.objects, None)
        height = 0
        while key := self.string():
            assoc[key], h = self.value()
            height = max(height, h)
        dense: list[Any] = []
        for _ in range(dense_count):  # grows only as values arrive; no preallocation
            v, h = self.value()
            dense.append(v)
            height = max(height, h)
        result: Any = dense
        if assoc:
            result = EcmaArray(assoc)
            for i, v in enumerate(dense):
                result.setdefault(str(i), v)
        entry[0] = result
        r.end_complex(entry, items0, depth0, height + 1)
        return result, height + 1

    def object(self, n: int) -> tuple[Any, int]:
        """§3.12: traits (inline, by reference, or externalizable), sealed, dynamic."""
        r = self.r
        if not n & 1:  # U29O-traits-ref: low bit 0 of what follows the inline flag
            if (n >> 1) >= len(self.traits):
                raise RemoteProtocolError("amf-reference")
            class_name, dynamic, sealed = self.traits[n >> 1]
        elif n & 2:  # U29O-traits-ext: a class-specific format we cannot parse
            raise RemoteProtocolError("amf-externalizable")
        else:
            dynamic = bool(n & 4)
            sealed_count = n >> 3
            class_name = self.string()
            sealed = []
            for _ in range(sealed_count):  # each name costs >= 1 byte: bounded by input
                sealed.append(self.string())
            self.traits.append((class_name, dynamic, sealed))
        obj: dict[str, Any] = TypedObject(class_name) if class_name else {}
        entry, items0, depth0 = r.begin_complex(self.objects, obj)
        height = 0
        for name in sealed:
            obj[name], h = self.value()
            height = max(height, h)
        if dynamic:
            while key := self.string():
                obj[key], h = self.value()
                height = max(height, h)
        r.end_complex(entry, items0, depth0, height + 1)
        return obj, height + 1


def decode_value(reader: Reader) -> tuple[Any, int]:
    """Decode one AMF3 value at ``reader.pos`` in a fresh AMF3 context (AMF0 §3.1)."""
    return _Context(reader).value()


# --- encoding ---------------------------------------------------------------------------


def encode_amf3(value: Any) -> bytes:
    """Encode one value in AMF3 (no references). Raises LocalProtocolError if impossible."""
    out = bytearray()
    _encode(out, value, 0)
    return bytes(out)


def _u29(out: bytearray, n: int) -> None:
    if not 0 <= n <= U29_MAX:
        raise LocalProtocolError("amf-encode-size")
    if n < 0x80:
        out.append(n)
    elif n < 0x4000:
        out += bytes(((n >> 7) | 0x80, n & 0x7F))
    elif n < 0x200000:
        out += bytes(((n >> 14) | 0x80, ((n >> 7) & 0x7F) | 0x80, n & 0x7F))
    else:
        out += bytes(
            ((n >> 22) | 0x80, ((n >> 15) & 0x7F) | 0x80, ((n >> 8) & 0x7F) | 0x80, n & 0xFF)
        )


def _inline(out: bytearray, raw: bytes) -> None:
    if len(raw) > LENGTH_MAX:
        raise LocalProtocolError("amf-encode-size")
    _u29(out, (len(raw) << 1) | 1)
    out += raw


def _utf8_out(s: str) -> bytes:
    try:
        return s.encode("utf-8")
    except UnicodeEncodeError:
        raise LocalProtocolError("amf-encode-utf8") from None


def _key(out: bytearray, key: object) -> None:
    # The empty string terminates member lists, so it cannot be a key (§3.11, §3.12).
    if not isinstance(key, str) or not key:
        raise LocalProtocolError("amf-encode-key")
    _inline(out, _utf8_out(key))


def _encode(out: bytearray, v: Any, depth: int) -> None:
    if depth > ENCODE_MAX_DEPTH:
        raise LocalProtocolError("amf-encode-depth")
    if v is None:
        out.append(NULL)
    elif v is UNDEFINED:
        out.append(UNDEFINED_M)
    elif isinstance(v, bool):
        out.append(TRUE if v else FALSE)
    elif isinstance(v, int) and INT_MIN <= v <= INT_MAX:
        out.append(INTEGER)
        _u29(out, v & U29_MAX)
    elif isinstance(v, int | float):
        encode_double(out, DOUBLE, v)
    elif isinstance(v, str):
        marker = (
            XML_DOC if isinstance(v, XmlDocument) else XML if isinstance(v, Amf3Xml) else STRING
        )
        out.append(marker)
        _inline(out, _utf8_out(v))
    elif isinstance(v, AmfDate):
        out += bytes((DATE, 0x01))
        out += _F64.pack(v.ms)
    elif isinstance(v, bytes | bytearray | memoryview):
        out.append(BYTE_ARRAY)
        _inline(out, bytes(v))
    elif isinstance(v, EcmaArray):
        out += bytes((ARRAY, 0x01))  # dense count 0, inline; all members associative
        for key, item in v.items():
            _key(out, key)
            _encode(out, item, depth + 1)
        out.append(0x01)  # empty key ends the associative part
    elif isinstance(v, dict):
        # Inline traits, dynamic, no sealed members: U29O 0b1011 (§3.12).
        out += bytes((OBJECT, 0x0B))
        _inline(out, _utf8_out(v.class_name if isinstance(v, TypedObject) else ""))
        for key, item in v.items():
            _key(out, key)
            _encode(out, item, depth + 1)
        out.append(0x01)
    elif isinstance(v, list | tuple):
        out.append(ARRAY)
        _u29(out, (len(v) << 1) | 1)
        out.append(0x01)  # no associative members
        for item in v:
            _encode(out, item, depth + 1)
    elif isinstance(v, Avmplus):
        _encode(out, v.value, depth)
    else:
        raise LocalProtocolError("amf-encode-type")
