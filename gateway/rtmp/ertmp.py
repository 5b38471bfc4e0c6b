"""Enhanced RTMP capability negotiation (veovera E-RTMP v2, "Enhancing NetConnection connect
Command") and the reconnect request ("Reconnect Request"). Pure functions over decoded AMF values.

A client's connect command object may carry ``fourCcList`` (strict array of FourCC strings, ``*``
= any codec), ``videoFourCcInfoMap`` / ``audioFourCcInfoMap`` (FourCC -> FourCcInfoMask bits, ``*``
a catch-all that overrides the specific entries) and ``capsEx`` (CapsExMask bits). The server
answers with what it supports in the ``_result`` properties object, under the same names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "CAN_DECODE",
    "CAN_ENCODE",
    "CAN_FORWARD",
    "CAPS_MODEX",
    "CAPS_MULTITRACK",
    "CAPS_RECONNECT",
    "CAPS_TIMESTAMP_NANO_OFFSET",
    "RECONNECT_REQUEST",
    "Capabilities",
    "client_properties",
    "parse_capabilities",
    "reconnect_info",
    "resolve_tc_url",
    "server_properties",
]

# FourCcInfoMask (E-RTMP v2).
CAN_DECODE: Final = 0x01
CAN_ENCODE: Final = 0x02
CAN_FORWARD: Final = 0x04
_INFO_BITS: Final = CAN_DECODE | CAN_ENCODE | CAN_FORWARD
# CapsExMask (E-RTMP v2).
CAPS_RECONNECT: Final = 0x01
CAPS_MULTITRACK: Final = 0x02
CAPS_MODEX: Final = 0x04
CAPS_TIMESTAMP_NANO_OFFSET: Final = 0x08
_CAPS_BITS: Final = 0x0F
WILDCARD: Final = "*"
RECONNECT_REQUEST: Final = "NetConnection.Connect.ReconnectRequest"

# What this gateway does with them: it reads ModEx, carries and serves Multitrack, and asks
# capable publishers to reconnect on shutdown. A TimestampOffsetNano is applied rounded to the
# millisecond clock the segmenter keeps, so sub-millisecond timing is not promised (no bit 8).
SERVER_CAPS_EX: Final = CAPS_RECONNECT | CAPS_MULTITRACK | CAPS_MODEX
# Every FourCC E-RTMP v2 defines: a relay forwards them all, as it forwards legacy codecs.
FORWARDED_VIDEO: Final = ("avc1", "hvc1", "av01", "vp09", "vp08")
FORWARDED_AUDIO: Final = ("mp4a", "Opus", "fLaC", "ac-3", "ec-3", ".mp3")
# The client role honours ReconnectRequest and takes every track (it forwards them).
CLIENT_CAPS_EX: Final = CAPS_RECONNECT | CAPS_MULTITRACK | CAPS_MODEX
_MAX_ENTRIES: Final = 64  # more FourCCs than any peer has codecs: the rest is ignored


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a peer announced in its connect command object; empty for a legacy peer."""

    fourcc_list: tuple[str, ...] = ()
    video: dict[str, int] = field(default_factory=dict)  # videoFourCcInfoMap
    audio: dict[str, int] = field(default_factory=dict)  # audioFourCcInfoMap
    caps_ex: int = 0
    announced: bool = False  # any of the four properties was present (an E-RTMP peer)

    @property
    def multitrack(self) -> bool:
        return bool(self.caps_ex & CAPS_MULTITRACK)

    @property
    def reconnect(self) -> bool:
        return bool(self.caps_ex & CAPS_RECONNECT)

    def accepts(self, fourcc: str, video: bool) -> bool:
        """Whether the peer declared it can take ``fourcc`` (decode or forward it)."""
        table = self.video if video else self.audio
        flags = table.get(WILDCARD, table.get(fourcc, 0))  # '*' overrides specific entries
        if flags & (CAN_DECODE | CAN_FORWARD):
            return True
        return WILDCARD in self.fourcc_list or fourcc in self.fourcc_list


def _fourcc_key(value: object) -> bool:
    return isinstance(value, str) and (value == WILDCARD or len(value) == 4)


def _flags(value: object, bits: int) -> int | None:
    """An AMF number holding bit flags, masked to ``bits``; None if it is not one."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value) or value < 0 or value != int(value) or value >= 2**32:
        return None
    return int(value) & bits


def _info_map(name: str, value: object, problems: list[str]) -> dict[str, int]:
    if not isinstance(value, dict):  # AMF0 object and ECMA array both decode to dicts
        problems.append(f"{name} is not an object ({type(value).__name__}): ignored")
        return {}
    out: dict[str, int] = {}
    for key, flags in list(value.items())[:_MAX_ENTRIES]:
        bits = _flags(flags, _INFO_BITS)
        if not _fourcc_key(key) or bits is None:
            problems.append(f"{name}[{key!r}] = {flags!r} is not a FourCC with flags: ignored")
            continue
        out[key] = bits
    return out


def parse_capabilities(obj: dict[str, Any]) -> tuple[Capabilities, list[str]]:
    """The E-RTMP capabilities in a connect command object, and what was malformed in it (each
    malformed value is ignored, never fatal: a publisher is not refused over a hint)."""
    problems: list[str] = []
    names = ("fourCcList", "videoFourCcInfoMap", "audioFourCcInfoMap", "capsEx")
    announced = any(n in obj for n in names)
    fourccs: list[str] = []
    raw_list = obj.get("fourCcList")
    if raw_list is not None:
        if isinstance(raw_list, list | tuple):
            for entry in list(raw_list)[:_MAX_ENTRIES]:
                if _fourcc_key(entry):
                    fourccs.append(entry)
                else:
                    problems.append(f"fourCcList entry {entry!r} is not a FourCC: ignored")
        else:
            problems.append(f"fourCcList is not an array ({type(raw_list).__name__}): ignored")
    maps: list[dict[str, int]] = []
    for name in ("videoFourCcInfoMap", "audioFourCcInfoMap"):
        maps.append(_info_map(name, obj[name], problems) if name in obj else {})
    video, audio = maps
    caps_ex = 0
    if "capsEx" in obj:
        bits = _flags(obj["capsEx"], _CAPS_BITS)
        if bits is None:
            problems.append(f"capsEx {obj['capsEx']!r} is not a number of flags: ignored")
        else:
            caps_ex = bits
    return Capabilities(tuple(fourccs), video, audio, caps_ex, announced), problems


def server_properties() -> dict[str, Any]:
    """What the server adds to the connect ``_result`` properties for an E-RTMP client: every
    FourCC it forwards to players and relays (CanForward: tags pass unchanged, whatever the HLS
    side makes of them), and the capsEx bits it honours (E-RTMP v2: "the server SHOULD state its
    support via videoFourCcInfoMap, capsEx")."""
    return {
        "videoFourCcInfoMap": {c: float(CAN_FORWARD) for c in sorted(FORWARDED_VIDEO)},
        "audioFourCcInfoMap": {c: float(CAN_FORWARD) for c in sorted(FORWARDED_AUDIO)},
        "capsEx": float(SERVER_CAPS_EX),
    }


def client_properties() -> dict[str, Any]:
    """Connect command object members of the client role (relays): every codec it forwards, and
    Multitrack | Reconnect | ModEx, so upstream servers send enhanced codecs and all tracks."""
    forward = float(CAN_FORWARD)
    return {
        "fourCcList": [*FORWARDED_VIDEO, *FORWARDED_AUDIO],
        "videoFourCcInfoMap": {WILDCARD: forward},
        "audioFourCcInfoMap": {WILDCARD: forward},
        "capsEx": float(CLIENT_CAPS_EX),
    }


def reconnect_info(description: str, tc_url: str | None = None) -> dict[str, Any]:
    """The Info Object of onStatus NetConnection.Connect.ReconnectRequest (E-RTMP v2 "Reconnect
    Request": level status; tcUrl only when the client must go elsewhere)."""
    info: dict[str, Any] = {"level": "status", "code": RECONNECT_REQUEST}
    info["description"] = description
    if tc_url is not None:
        info["tcUrl"] = tc_url
    return info


def resolve_tc_url(current: str, ref: str) -> str:
    """``ref`` (absolute or relative URI reference, E-RTMP v2 "Reconnect Request") resolved
    against the current tcUrl: ``//host/app``, ``/app`` and ``app`` forms."""
    if not ref:
        return current
    scheme, sep, rest = current.partition("://")
    if "://" in ref or not sep:
        return ref
    if ref.startswith("//"):
        return f"{scheme}:{ref}"
    authority = rest.partition("/")[0]
    if ref.startswith("/"):
        return f"{scheme}://{authority}{ref}"
    base = current.rpartition("/")[0] if rest.count("/") else current
    return f"{base}/{ref}"
