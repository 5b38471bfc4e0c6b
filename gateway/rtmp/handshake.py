"""RTMP handshake (RTMP 1.0 §5.2), plain and the Flash 9 "digest" variant (docs/protocol.md §1).

Sans-IO: every function takes and returns bytes. The server answers C0+C1 with S0+S1+S2 in
one write; the client side is small (relays). Random bytes come from an injectable callable
so tests are deterministic.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from gateway.rtmp.errors import RemoteProtocolError

__all__ = [
    "C1_SIZE",
    "FMS_KEY",
    "FMS_KEY_FULL",
    "FP_KEY",
    "FP_KEY_FULL",
    "RTMP_VERSION",
    "ClientHandshake",
    "ServerReply",
    "check_version",
    "digest_offset",
    "find_digest",
    "make_digest_packet",
    "s2_signature",
    "server_reply",
]

RTMP_VERSION: Final = 3  # §5.2.2 C0/S0
C1_SIZE: Final = 1536  # §5.2.3 C1/S1/C2/S2 are 1536 bytes
DIGEST_SIZE: Final = 32  # HMAC-SHA256
# Both digest schemes place the digest in a 764-byte half: 728 = 764 - 32 - 4 offset bytes.
DIGEST_RANGE: Final = 728
# Scheme 0: offset bytes at 8..11, digest after them; scheme 1: offset bytes at 772..775.
_SCHEME_BASE: Final = ((8, 12), (772, 776))

_KEY_TAIL: Final = bytes.fromhex("F0EEC24A8068BEE82E00D0D1029E7E576EEC5D2D29806FAB93B8E636CFEB31AE")
FP_KEY: Final = b"Genuine Adobe Flash Player 001"  # 30 bytes: signs the client's C1
FMS_KEY: Final = b"Genuine Adobe Flash Media Server 001"  # 36 bytes: signs the server's S1
FP_KEY_FULL: Final = FP_KEY + _KEY_TAIL  # 62 bytes: client C2 signature key
FMS_KEY_FULL: Final = FMS_KEY + _KEY_TAIL  # 68 bytes: server S2 signature key
# Version written into a digest S1 (bytes 4..7); nginx-rtmp uses the same "0D 0E 0A 0D".
SERVER_VERSION: Final = bytes((0x0D, 0x0E, 0x0A, 0x0D))
# Version written into a digest C1 by our client (what librtmp sends as Flash Player 9).
CLIENT_VERSION: Final = bytes((0x09, 0x00, 0x7C, 0x02))

_U32: Final = struct.Struct(">I")

RandomBytes = Callable[[int], bytes]


def check_version(c0: int) -> None:
    """§5.2.2: only version 3 is RTMP; name the common wrong protocols in the error."""
    if c0 == RTMP_VERSION:
        return
    if c0 == 0x16:
        what = "TLS ClientHello (rtmps to a plain port?)"
    elif c0 == ord("G"):
        what = "HTTP request (GET)"
    elif c0 in (6, 8):
        what = "RTMPE (encrypted RTMP, unsupported)"
    else:
        what = f"unknown version {c0}"
    raise RemoteProtocolError("handshake-version", what)


def digest_offset(packet: bytes, scheme: int) -> int:
    """Position of the 32-byte digest in a C1/S1 for scheme 0 or 1 (docs/protocol.md §1)."""
    at, base = _SCHEME_BASE[scheme]
    return sum(packet[at : at + 4]) % DIGEST_RANGE + base


def _hmac(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hashlib.sha256).digest()


def _packet_digest(packet: bytes, pos: int, key: bytes) -> bytes:
    """HMAC over the packet without its own 32 digest bytes."""
    return _hmac(key, packet[:pos] + packet[pos + DIGEST_SIZE :])


def find_digest(packet: bytes, key: bytes) -> tuple[int, int] | None:
    """Return (scheme, position) of a valid digest in a C1/S1, or None."""
    for scheme in (0, 1):
        pos = digest_offset(packet, scheme)
        expected = _packet_digest(packet, pos, key)
        if hmac.compare_digest(expected, packet[pos : pos + DIGEST_SIZE]):
            return scheme, pos
    return None


def make_digest_packet(
    time_ms: int, version: bytes, scheme: int, key: bytes, random_bytes: RandomBytes
) -> bytes:
    """Build a C1/S1 carrying a digest at ``scheme``'s position, signed with ``key``."""
    packet = bytearray(_U32.pack(time_ms & 0xFFFFFFFF) + version + random_bytes(C1_SIZE - 8))
    pos = digest_offset(bytes(packet), scheme)
    packet[pos : pos + DIGEST_SIZE] = _packet_digest(bytes(packet), pos, key)
    return bytes(packet)


def s2_signature(full_key: bytes, peer_digest: bytes, packet: bytes) -> bytes:
    """Signature in the last 32 bytes of S2 (or C2): keyed by HMAC(full key, peer digest)."""
    return _hmac(_hmac(full_key, peer_digest), packet[: C1_SIZE - DIGEST_SIZE])


@dataclass(frozen=True, slots=True)
class ServerReply:
    """S0+S1+S2 to write, and which handshake the client used (for logs)."""

    data: bytes
    digest: bool
    scheme: int | None


def server_reply(
    c0c1: bytes, *, time_ms: int = 0, random_bytes: RandomBytes = os.urandom
) -> ServerReply:
    """Answer C0+C1 (1537 bytes) with S0+S1+S2 (3073 bytes), §5.2 + docs/protocol.md §1.

    A C1 with a non-zero version and a valid digest (scheme 0 or 1) gets a digest S1 at the
    same scheme and a signed S2, which librtmp (OBS) verifies; otherwise a plain S1 with a
    zero version, which librtmp then accepts without verification, and S2 = C1 echoed.
    """
    if len(c0c1) != 1 + C1_SIZE:
        raise ValueError("need exactly C0+C1")
    check_version(c0c1[0])
    c1 = c0c1[1:]
    found = find_digest(c1, FP_KEY) if c1[4:8] != b"\0\0\0\0" else None
    s0 = bytes((RTMP_VERSION,))
    if found is None:
        s1 = _U32.pack(time_ms & 0xFFFFFFFF) + b"\0\0\0\0" + random_bytes(C1_SIZE - 8)
        return ServerReply(s0 + s1 + c1, digest=False, scheme=None)
    scheme, pos = found
    s1 = make_digest_packet(time_ms, SERVER_VERSION, scheme, FMS_KEY, random_bytes)
    s2 = random_bytes(C1_SIZE - DIGEST_SIZE)
    s2 += s2_signature(FMS_KEY_FULL, c1[pos : pos + DIGEST_SIZE], s2)
    return ServerReply(s0 + s1 + s2, digest=True, scheme=scheme)


class ClientHandshake:
    """Client side (§5.2): ``c0c1()``, then ``c2(s0s1s2)`` once 3073 bytes arrived.

    With ``digest=True`` C1 carries a scheme-0 digest and the server's S1 digest is checked
    when the server sends a version; C2 is then signed as Flash Player does. S2 is not
    checked against C1 (servers differ; FFmpeg's own server does not echo exactly).
    """

    def __init__(
        self, *, digest: bool = False, time_ms: int = 0, random_bytes: RandomBytes = os.urandom
    ) -> None:
        self._digest = digest
        self._random = random_bytes
        if digest:
            self._c1 = make_digest_packet(time_ms, CLIENT_VERSION, 0, FP_KEY, random_bytes)
        else:
            self._c1 = _U32.pack(time_ms & 0xFFFFFFFF) + b"\0\0\0\0" + random_bytes(C1_SIZE - 8)

    @property
    def c1(self) -> bytes:
        return self._c1

    def c0c1(self) -> bytes:
        return bytes((RTMP_VERSION,)) + self._c1

    def c2(self, s0s1s2: bytes) -> bytes:
        """Validate S0/S1 and return C2."""
        if len(s0s1s2) != 1 + 2 * C1_SIZE:
            raise ValueError("need exactly S0+S1+S2")
        check_version(s0s1s2[0])
        s1 = s0s1s2[1 : 1 + C1_SIZE]
        if not self._digest or s1[4:8] == b"\0\0\0\0":
            return s1  # plain handshake: C2 echoes S1
        found = find_digest(s1, FMS_KEY)
        if found is None:
            raise RemoteProtocolError("handshake-digest")
        _scheme, pos = found
        c2 = self._random(C1_SIZE - DIGEST_SIZE)
        return c2 + s2_signature(FP_KEY_FULL, s1[pos : pos + DIGEST_SIZE], c2)
