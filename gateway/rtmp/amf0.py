"""AMF0 codec (Adobe "AMF 0 Specification", 2007) for RTMP command and data messages.

Python mapping (encode; decode gives the same types back):

=====================  ======================================================
bool                   0x01 boolean (checked before int: bool is an int)
int / float            0x00 number (decoded always as ``float``: AMF0 has only f64)
str                    0x02 string, or 0x0C long string above 65535 UTF-8 bytes
None / ``UNDEFINED``   0x05 null / 0x06 undefined
dict                   0x03 anonymous object
``EcmaArray``          0x08 ECMA array
list / tuple           0x0A strict array (decoded as ``list``)
``AmfDate``            0x0B date
``XmlDocument``        0x0F XML document
``TypedObject``        0x10 typed object
``UNSUPPORTED``        0x0D unsupported (a harmless marker with no payload: decoded
                       to this sentinel rather than failing a whole message)
``Avmplus(v)``         0x11 then ``v`` in AMF3; bytes and ``Amf3Xml`` switch implicitly
=====================  ======================================================

0x04 movieclip and 0x0E recordset are refused (reserved / remoting-only). A 0x07
reference (§2.9) resolves to the same Python object as the earlier complex value; its
expanded size and depth are charged to the limits as if it were written inline, so a
chain of references cannot make an exponentially large tree for later consumers.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

from gateway.rtmp.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "UNDEFINED",
    "UNSUPPORTED",
    "AmfDate",
    "AmfLimits",
    "Avmplus",
    "EcmaArray",
    "TypedObject",
    "Undefined",
    "Unsupported",
    "XmlDocument",
    "decode_all",
    "decode_amf3_message_body",
    "decode_one",
    "encode",
]


from gateway.rtmp import amf3
from gateway.rtmp.amf_values import (
    DEFAULT_LIMITS,
    ENCODE_MAX_DEPTH,
    UNDEFINED,
    UNSUPPORTED,
    AmfDate,
    AmfLimits,
    Avmplus,
    EcmaArray,
    Reader,
    TypedObject,
    Undefined,
    Unsupported,
    XmlDocument,
    _utf8,
    encode_double,
)

# AMF0 §2.1 type markers.
NUMBER, BOOLEAN, STRING, OBJECT, MOVIECLIP, NULL, UNDEFINED_M = range(7)
REFERENCE, ECMA_ARRAY, OBJECT_END, STRICT_ARRAY, DATE, LONG_STRING = range(7, 13)
UNSUPPORTED_M, RECORDSET, XML_DOC, TYPED_OBJECT, AVMPLUS = range(13, 18)

SHORT_STRING_MAX: Final = 0xFFFF  # §2.4: u16 length; longer strings use 0x0C (§2.14)
_F64: Final = struct.Struct(">d")
_U16: Final = struct.Struct(">H")
_U32: Final = struct.Struct(">I")
_DATE: Final = struct.Struct(">dh")


class _Decoder:
    """Recursive-descent AMF0 decoder; returns ``(value, height)``."""

    def __init__(self, reader: Reader) -> None:
        self.r = reader

    def value(self) -> tuple[Any, int]:
        r = self.r
        marker = r.u8()
        r.charge()
        if marker == NUMBER:
            return r.unpack(_F64)[0], 0
        if marker == BOOLEAN:
            return r.u8() != 0, 0
        if marker == STRING:
            return _utf8(r.string_bytes(r.unpack(_U16)[0])), 0
        if marker == LONG_STRING:
            return _utf8(r.string_bytes(r.unpack(_U32)[0])), 0
        if marker == XML_DOC:
            return XmlDocument(_utf8(r.string_bytes(r.unpack(_U32)[0]))), 0
        if marker == NULL:
            return None, 0
        if marker == UNDEFINED_M:
            return UNDEFINED, 0
        if marker == UNSUPPORTED_M:
            return UNSUPPORTED, 0
        if marker == DATE:
            ms, tz = r.unpack(_DATE)
            return AmfDate(ms, tz), 0
        if marker == OBJECT:
            return self.members({})
        if marker == ECMA_ARRAY:
            r.take(4)  # §2.10 count: only a hint (OBS writes 20 whatever follows); ignore it
            return self.members(EcmaArray())
        if marker == TYPED_OBJECT:
            name = _utf8(r.string_bytes(r.unpack(_U16)[0]))
            return self.members(TypedObject(name))
        if marker == STRICT_ARRAY:
            return self.strict_array(r.unpack(_U32)[0])
        if marker == REFERENCE:
            return r.resolve(r.refs, r.unpack(_U16)[0])
        if marker == AVMPLUS:
            return amf3.decode_value(r)
        if marker in (MOVIECLIP, RECORDSET):
            raise RemoteProtocolError("amf-unsupported-type")
        raise RemoteProtocolError("amf-marker")

    def members(self, obj: dict[str, Any]) -> tuple[dict[str, Any], int]:
        """§2.5 object-property* then object-end: u16 key, value ... 00 00 09."""
        r = self.r
        entry, items0, depth0 = r.begin_complex(r.refs, obj)
        height = 0
        while True:
            key = _utf8(r.string_bytes(r.unpack(_U16)[0]))
            if not key and r.pos < len(r.data) and r.data[r.pos] == OBJECT_END:
                r.pos += 1
                break
            obj[key], h = self.value()
            height = max(height, h)
        r.end_complex(entry, items0, depth0, height + 1)
        return obj, height + 1

    def strict_array(self, count: int) -> tuple[list[Any], int]:
        """§2.12: u32 count then values; the list grows only as values really arrive."""
        r = self.r
        out: list[Any] = []
        entry, items0, depth0 = r.begin_complex(r.refs, out)
        height = 0
        for _ in range(count):
            v, h = self.value()
            out.append(v)
            height = max(height, h)
        r.end_complex(entry, items0, depth0, height + 1)
        return out, height + 1


# Anything a malformed body could still provoke despite the explicit checks.
_INTERNAL_ERRORS: Final = (ArithmeticError, LookupError, ValueError, struct.error, MemoryError)


@contextmanager
def _as_remote_errors() -> Iterator[None]:
    """Turn any stray failure on peer bytes into RemoteProtocolError (never leak others)."""
    try:
        yield
    except RecursionError:  # only reachable with a huge max_depth
        raise RemoteProtocolError("amf-depth") from None
    except _INTERNAL_ERRORS:
        raise RemoteProtocolError("amf-malformed") from None


def decode_one(data: bytes, offset: int = 0, limits: AmfLimits = DEFAULT_LIMITS) -> tuple[Any, int]:
    """Decode one AMF0 value at ``offset``; return it and the offset just after it.

    Each call has its own §2.9 reference table: use ``decode_all`` for whole bodies.
    """
    reader = Reader(data if isinstance(data, bytes) else bytes(data), offset, limits)
    with _as_remote_errors():
        return _Decoder(reader).value()[0], reader.pos


def decode_all(data: bytes, limits: AmfLimits = DEFAULT_LIMITS) -> list[Any]:
    """Decode every AMF0 value of a command/data message body (types 20 and 18).

    The AMF0 §2.9 reference table spans the whole body. Raises RemoteProtocolError
    with a reason "amf-..." on anything malformed or over ``limits``.
    """
    return _decode_from(bytes(data), 0, limits)


def decode_amf3_message_body(data: bytes, limits: AmfLimits = DEFAULT_LIMITS) -> list[Any]:
    """Decode a type 17 / 15 body: a 0x00 format byte, then AMF0 values (0x11 -> AMF3).

    Some clients omit the format byte; a leading 0x02 (the command name string) is
    accepted as AMF0 directly. A leading 0x00 is always taken as the format byte.
    """
    data = bytes(data)
    if data[:1] == b"\x00":
        return _decode_from(data, 1, limits)
    if data[:1] == bytes([STRING]):
        return _decode_from(data, 0, limits)
    raise RemoteProtocolError("amf-format-byte")


def _decode_from(data: bytes, pos: int, limits: AmfLimits) -> list[Any]:
    reader = Reader(data, pos, limits)
    decoder = _Decoder(reader)
    out: list[Any] = []
    with _as_remote_errors():
        while reader.pos < len(data):
            out.append(decoder.value()[0])
    return out


# --- encoding ---------------------------------------------------------------------------


def encode(*values: Any) -> bytes:
    """Encode ``values`` as concatenated AMF0 values (a command or data message body).

    Raises LocalProtocolError (reason "amf-encode-...") for values AMF0 cannot carry.
    No references are written: shared sub-values are simply written out again.
    """
    out = bytearray()
    for v in values:
        _encode_value(out, v, 0)
    return bytes(out)


def _encode_utf8(value: str) -> bytes:
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates
        raise LocalProtocolError("amf-encode-utf8") from None


def _encode_key(out: bytearray, key: object) -> None:
    if not isinstance(key, str):
        raise LocalProtocolError("amf-encode-key")
    raw = _encode_utf8(key)
    if len(raw) > SHORT_STRING_MAX:
        raise LocalProtocolError("amf-encode-key")
    out += _U16.pack(len(raw))
    out += raw


def _encode_members(out: bytearray, obj: dict[Any, Any], depth: int) -> None:
    for key, v in obj.items():
        _encode_key(out, key)
        _encode_value(out, v, depth + 1)
    out += b"\x00\x00\x09"  # §2.5 empty key + object-end marker


def _encode_long(out: bytearray, marker: int, raw: bytes) -> None:
    if len(raw) > 0xFFFFFFFF:
        raise LocalProtocolError("amf-encode-size")
    out.append(marker)
    out += _U32.pack(len(raw))
    out += raw


def _encode_value(out: bytearray, v: Any, depth: int) -> None:
    if depth > ENCODE_MAX_DEPTH:
        raise LocalProtocolError("amf-encode-depth")
    if v is None:
        out.append(NULL)
    elif v is UNDEFINED:
        out.append(UNDEFINED_M)
    elif v is UNSUPPORTED:
        out.append(UNSUPPORTED_M)
    elif isinstance(v, bool):
        out += bytes((BOOLEAN, 1 if v else 0))
    elif isinstance(v, int | float):
        encode_double(out, NUMBER, v)
    elif isinstance(v, XmlDocument):
        _encode_long(out, XML_DOC, _encode_utf8(v))
    elif isinstance(v, str) and type(v) is not str and _is_amf3_only(v):
        _encode_avmplus(out, v)
    elif isinstance(v, str):
        raw = _encode_utf8(v)
        if len(raw) > SHORT_STRING_MAX:
            _encode_long(out, LONG_STRING, raw)
        else:
            out.append(STRING)
            out += _U16.pack(len(raw))
            out += raw
    elif isinstance(v, AmfDate):
        if not -0x8000 <= v.tz <= 0x7FFF:
            raise LocalProtocolError("amf-encode-date")
        out.append(DATE)
        out += _DATE.pack(v.ms, v.tz)
    elif isinstance(v, TypedObject):
        out.append(TYPED_OBJECT)
        _encode_key(out, v.class_name)
        _encode_members(out, v, depth)
    elif isinstance(v, EcmaArray):
        out.append(ECMA_ARRAY)
        out += _U32.pack(len(v))
        _encode_members(out, v, depth)
    elif isinstance(v, dict):
        out.append(OBJECT)
        _encode_members(out, v, depth)
    elif isinstance(v, list | tuple):
        out.append(STRICT_ARRAY)
        out += _U32.pack(len(v))
        for item in v:
            _encode_value(out, item, depth + 1)
    elif isinstance(v, Avmplus):
        _encode_avmplus(out, v.value)
    elif isinstance(v, bytes | bytearray | memoryview):
        _encode_avmplus(out, v)  # AMF0 has no byte array: switch to AMF3 (AMF0 §3.1)
    else:
        raise LocalProtocolError("amf-encode-type")


def _is_amf3_only(v: str) -> bool:
    return isinstance(v, amf3.Amf3Xml)


def _encode_avmplus(out: bytearray, v: Any) -> None:
    out.append(AVMPLUS)
    out += amf3.encode_amf3(v)
