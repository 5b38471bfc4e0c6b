"""AMF value types, limits, the byte reader and the number encoding shared by AMF0 and AMF3.

Split from amf0.py so each module holds one idea and both codecs depend on this one, not on each
other (amf0 switches to amf3 for one value, so amf0 imports amf3); amf0 re-exports every public
name here.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Any, Final

from gateway.rtmp.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "DEFAULT_LIMITS",
    "ENCODE_MAX_DEPTH",
    "UNDEFINED",
    "UNSUPPORTED",
    "AmfDate",
    "AmfLimits",
    "Avmplus",
    "EcmaArray",
    "Reader",
    "TypedObject",
    "Undefined",
    "Unsupported",
    "XmlDocument",
    "encode_double",
]

# Encoder recursion bound: catches cyclic Python values before RecursionError does.
ENCODE_MAX_DEPTH: Final = 64
_F64: Final = struct.Struct(">d")


def encode_double(out: bytearray, marker: int, value: float) -> None:
    """AMF0 number / AMF3 double: marker + IEEE-754 f64 (an int too large for it is refused)."""
    try:
        number = float(value)
    except OverflowError:
        raise LocalProtocolError("amf-encode-number") from None
    out.append(marker)
    out += _F64.pack(number)


@dataclass(frozen=True, slots=True)
class AmfLimits:
    """Bounds applied to one message body; defaults sit far above what OBS/FFmpeg send."""

    max_depth: int = 16  # nesting of objects/arrays; real commands nest 2 levels at most
    max_items: int = 4096  # total values decoded from one message (onMetaData has ~30)
    max_string: int = 1 << 20  # bytes of one (long) string / XML / AMF3 byte array


DEFAULT_LIMITS: Final = AmfLimits()


class Undefined(enum.Enum):
    """The ActionScript ``undefined`` value (AMF0 0x06, AMF3 0x00); use ``UNDEFINED``."""

    UNDEFINED = "undefined"

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "UNDEFINED"


class Unsupported(enum.Enum):
    """AMF0 §2.15 "unsupported" marker 0x0D; use ``UNSUPPORTED``."""

    UNSUPPORTED = "unsupported"

    def __repr__(self) -> str:
        return "UNSUPPORTED"


UNDEFINED: Final = Undefined.UNDEFINED
UNSUPPORTED: Final = Unsupported.UNSUPPORTED


class EcmaArray(dict[str, Any]):
    """An associative array (AMF0 0x08): kept distinct from ``dict`` so it round-trips."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"EcmaArray({dict.__repr__(self)})"


class TypedObject(dict[str, Any]):
    """An object with a registered class name (AMF0 0x10, AMF3 traits class name)."""

    __slots__ = ("class_name",)

    def __init__(self, class_name: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.class_name = class_name

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TypedObject) and other.class_name != self.class_name:
            return False
        return dict.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __repr__(self) -> str:
        return f"TypedObject({self.class_name!r}, {dict.__repr__(self)})"


@dataclass(frozen=True, slots=True)
class AmfDate:
    """AMF0 §2.13 / AMF3 §3.10 date: ms since the Unix epoch (UTC); tz is reserved (0)."""

    ms: float
    tz: int = 0


class XmlDocument(str):
    """An XML document (AMF0 0x0F, AMF3 0x07 legacy XMLDocument)."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Avmplus:
    """Encode ``value`` as AMF3 behind a 0x11 marker (AMF0 §3.1); decoding unwraps it."""

    value: Any


def _utf8(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RemoteProtocolError("amf-utf8") from None


class Reader:
    """Decoding state for one message body, shared with the AMF3 decoder.

    ``items`` counts every value (a reference counts its referent's expanded size);
    ``depth`` is the current nesting of complex values.
    """

    __slots__ = ("data", "depth", "items", "limits", "pos", "refs")

    def __init__(self, data: bytes, pos: int, limits: AmfLimits) -> None:
        self.data = data
        self.pos = pos
        self.limits = limits
        self.items = 0
        self.depth = 0
        # AMF0 §2.9 table: [value, expanded item count, subtree height]; count and height
        # stay None while the value is still being decoded (a reference to it is a cycle).
        self.refs: list[list[Any]] = []

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if n < 0 or end > len(self.data):
            raise RemoteProtocolError("amf-truncated")
        raw = self.data[self.pos : end]
        self.pos = end
        return raw

    def u8(self) -> int:
        if self.pos >= len(self.data):
            raise RemoteProtocolError("amf-truncated")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def unpack(self, st: struct.Struct) -> tuple[Any, ...]:
        return st.unpack(self.take(st.size))

    def string_bytes(self, n: int) -> bytes:
        if n > self.limits.max_string:
            raise RemoteProtocolError(
                "amf-string-size", f"string of {n} bytes, at most {self.limits.max_string}"
            )
        return self.take(n)

    def charge(self, n: int = 1) -> None:
        """Count ``n`` decoded values against ``max_items``."""
        self.items += n
        if self.items > self.limits.max_items:
            raise RemoteProtocolError(
                "amf-items", f"more than {self.limits.max_items} values in one message"
            )

    def enter(self, extra: int = 1) -> None:
        """Nest ``extra`` levels deeper (a reference enters by its referent's height)."""
        if self.depth + extra > self.limits.max_depth:
            raise RemoteProtocolError(
                "amf-depth", f"nested deeper than {self.limits.max_depth} levels"
            )
        self.depth += extra

    def begin_complex(self, table: list[list[Any]], value: Any) -> tuple[list[Any], int, int]:
        """Register a complex value in ``table`` before its members are read."""
        entry: list[Any] = [value, None, None]
        table.append(entry)
        self.enter()
        return entry, self.items, self.depth

    def end_complex(self, entry: list[Any], items0: int, depth0: int, height: int) -> None:
        entry[1] = self.items - items0 + 1
        entry[2] = height
        self.depth = depth0 - 1

    def resolve(self, table: list[list[Any]], index: int) -> tuple[Any, int]:
        """Return an earlier complex value and its height, charging its expanded size."""
        if index >= len(table):
            raise RemoteProtocolError("amf-reference")
        value, count, height = table[index]
        if count is None:
            raise RemoteProtocolError("amf-reference-cycle")
        self.charge(count - 1)  # the reference itself was already charged as one item
        self.enter(height)
        self.depth -= height
        return value, int(height)
