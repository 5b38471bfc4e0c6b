"""Handshake (RTMP 1.0 §5.2, docs/protocol.md §1). Digests are recomputed here with hmac/hashlib
from the published keys, independently of gateway.rtmp.handshake."""

from __future__ import annotations

import hashlib
import hmac
import random
import struct
from collections.abc import Callable

import pytest

from gateway.rtmp import handshake
from gateway.rtmp.errors import ProtocolError, RemoteProtocolError

# The keys, spelled out again here so a typo in the module cannot hide.
FP_TEXT = b"Genuine Adobe Flash Player 001"
FMS_TEXT = b"Genuine Adobe Flash Media Server 001"
TAIL = bytes.fromhex(
    "F0 EE C2 4A 80 68 BE E8 2E 00 D0 D1 02 9E 7E 57"
    " 6E EC 5D 2D 29 80 6F AB 93 B8 E6 36 CF EB 31 AE"
)


def rng(seed: int) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


def offset(packet: bytes, scheme: int) -> int:
    if scheme == 0:
        return (packet[8] + packet[9] + packet[10] + packet[11]) % 728 + 12
    return (packet[772] + packet[773] + packet[774] + packet[775]) % 728 + 776


def sign(packet: bytes, pos: int, key: bytes) -> bytes:
    return hmac.new(key, packet[:pos] + packet[pos + 32 :], hashlib.sha256).digest()


def client_c1(scheme: int, seed: int = 1) -> bytes:
    """A Flash-9 style C1 built without the module under test (as librtmp builds it)."""
    body = bytearray(struct.pack(">I", 1234) + bytes([9, 0, 124, 2]) + rng(seed)(1528))
    pos = offset(bytes(body), scheme)
    body[pos : pos + 32] = sign(bytes(body), pos, FP_TEXT)
    return bytes(body)


# (bytes 8..11 or 772..775, scheme, expected offset): the table read both ways below.
OFFSET_TABLE = [
    (bytes([0, 0, 0, 0]), 0, 12),
    (bytes([1, 2, 3, 4]), 0, 22),
    (bytes([255, 255, 255, 255]), 0, 1020 % 728 + 12),
    (bytes([0, 0, 0, 0]), 1, 776),
    (bytes([200, 200, 200, 200]), 1, 800 % 728 + 776),
]


@pytest.mark.parametrize(("raw", "scheme", "expected"), OFFSET_TABLE)
def test_digest_offset_table(raw: bytes, scheme: int, expected: int) -> None:
    packet = bytearray(1536)
    at = 8 if scheme == 0 else 772
    packet[at : at + 4] = raw
    assert handshake.digest_offset(bytes(packet), scheme) == expected
    assert offset(bytes(packet), scheme) == expected


@pytest.mark.parametrize("scheme", [0, 1])
def test_find_digest_accepts_independently_signed_c1(scheme: int) -> None:
    c1 = client_c1(scheme)
    assert handshake.find_digest(c1, FP_TEXT) == (scheme, offset(c1, scheme))


@pytest.mark.parametrize("scheme", [0, 1])
def test_make_digest_packet_verifies_independently(scheme: int) -> None:
    s1 = handshake.make_digest_packet(77, b"\x0d\x0e\x0a\x0d", scheme, FMS_TEXT, rng(3))
    assert len(s1) == 1536 and s1[:4] == struct.pack(">I", 77)
    pos = offset(s1, scheme)
    assert s1[pos : pos + 32] == sign(s1, pos, FMS_TEXT)


def test_plain_c1_gets_plain_s1_and_echo() -> None:
    c1 = struct.pack(">I", 5) + b"\0\0\0\0" + rng(2)(1528)
    reply = handshake.server_reply(b"\x03" + c1, time_ms=99, random_bytes=rng(4))
    data = reply.data
    assert len(data) == 3073 and data[0] == 3
    s1, s2 = data[1:1537], data[1537:]
    assert s1[:4] == struct.pack(">I", 99)
    assert s1[4:8] == b"\0\0\0\0"  # librtmp then accepts without checking digests
    assert s2 == c1
    assert not reply.digest


@pytest.mark.parametrize("scheme", [0, 1])
def test_digest_c1_gets_signed_s1_and_s2(scheme: int) -> None:
    c1 = client_c1(scheme, seed=10 + scheme)
    reply = handshake.server_reply(b"\x03" + c1, random_bytes=rng(5))
    s1, s2 = reply.data[1:1537], reply.data[1537:]
    assert reply.digest and reply.scheme == scheme
    assert s1[4:8] != b"\0\0\0\0"
    # S1 digest at the SAME scheme, keyed with the 36-byte FMS text (what librtmp checks).
    pos = offset(s1, scheme)
    assert s1[pos : pos + 32] == sign(s1, pos, FMS_TEXT)
    # S2: last 32 bytes = HMAC(HMAC(FMS full key, client digest), S2[:1504]).
    cpos = offset(c1, scheme)
    key = hmac.new(FMS_TEXT + TAIL, c1[cpos : cpos + 32], hashlib.sha256).digest()
    assert s2[-32:] == hmac.new(key, s2[:-32], hashlib.sha256).digest()


def test_version_with_bad_digest_gets_plain_answer() -> None:
    c1 = bytearray(client_c1(0))
    c1[offset(bytes(c1), 0)] ^= 0xFF
    c1[offset(bytes(c1), 1)] ^= 0xFF
    reply = handshake.server_reply(b"\x03" + bytes(c1), random_bytes=rng(6))
    assert not reply.digest
    assert reply.data[5:9] == b"\0\0\0\0"
    assert reply.data[1537:] == bytes(c1)


@pytest.mark.parametrize(
    ("c0", "word"), [(0x16, "TLS"), (ord("G"), "HTTP"), (6, "RTMPE"), (0, "unknown")]
)
def test_bad_version(c0: int, word: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        handshake.server_reply(bytes([c0]) + bytes(1536))
    assert info.value.reason == "handshake-version"
    assert word in str(info.value)
    assert isinstance(info.value, ProtocolError)


@pytest.mark.parametrize("digest", [False, True])
def test_client_against_server(digest: bool) -> None:
    client = handshake.ClientHandshake(digest=digest, time_ms=1, random_bytes=rng(7))
    c0c1 = client.c0c1()
    assert c0c1[0] == 3 and len(c0c1) == 1537
    if digest:
        assert handshake.find_digest(client.c1, FP_TEXT) is not None
    reply = handshake.server_reply(c0c1, random_bytes=rng(8))
    assert reply.digest is digest
    c2 = client.c2(reply.data)
    s1 = reply.data[1:1537]
    if not digest:
        assert c2 == s1
    else:
        # Flash Player's C2: signed with HMAC(FP full key, S1 digest).
        pos = offset(s1, 0)
        key = hmac.new(FP_TEXT + TAIL, s1[pos : pos + 32], hashlib.sha256).digest()
        assert c2[-32:] == hmac.new(key, c2[:-32], hashlib.sha256).digest()


def test_client_rejects_forged_server_digest() -> None:
    client = handshake.ClientHandshake(digest=True, random_bytes=rng(9))
    data = bytearray(handshake.server_reply(client.c0c1(), random_bytes=rng(10)).data)
    data[1 + offset(bytes(data[1:1537]), 0)] ^= 1
    data[1 + offset(bytes(data[1:1537]), 1)] ^= 1
    with pytest.raises(RemoteProtocolError) as info:
        client.c2(bytes(data))
    assert info.value.reason == "handshake-digest"
