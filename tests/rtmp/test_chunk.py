"""Chunk stream (RTMP 1.0 §5.3): byte-vector tables read both ways, hypothesis round trips,
limits."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.rtmp.chunk import ChunkDecoder, ChunkEncoder, RawMessage
from gateway.rtmp.errors import RemoteProtocolError
from gateway.rtmp.limits import Limits

H = bytes.fromhex


@dataclass(frozen=True)
class Msg:
    csid: int
    ts: int
    type_id: int
    msid: int
    body: bytes


def decode_all(data: bytes, limits: Limits | None = None, chunk_size: int = 128) -> list[Msg]:
    dec = ChunkDecoder(limits or Limits(min_chunk_size=1))
    dec.chunk_size = chunk_size
    dec.feed(data)
    out = []
    while (raw := dec.next_message()) is not None:
        out.append(Msg(raw.csid, raw.timestamp, raw.type_id, raw.stream_id, raw.body))
    assert dec.buffered_bytes == 0
    return out


def encode_all(msgs: list[Msg], chunk_size: int = 128) -> bytes:
    enc = ChunkEncoder(chunk_size)
    return b"".join(enc.encode(x.csid, x.ts, x.type_id, x.msid, x.body) for x in msgs)


B200 = bytes(range(200))

# (name, chunk size, messages, wire bytes): each is checked encode -> bytes and bytes -> decode.
BOTH_WAYS = [
    (
        "fmt0 1-byte csid",
        128,
        [Msg(3, 1000, 20, 0, b"abc")],
        H("03 0003E8 000003 14 00000000 616263"),
    ),
    ("fmt0 2-byte csid 64", 128, [Msg(64, 0, 8, 1, b"x")], H("00 00 000000 000001 08 01000000 78")),
    (
        "fmt0 2-byte csid 319",
        128,
        [Msg(319, 0, 8, 1, b"x")],
        H("00 FF 000000 000001 08 01000000 78"),
    ),
    (
        "fmt0 3-byte csid 320",
        128,
        [Msg(320, 0, 8, 1, b"x")],
        H("01 0001 000000 000001 08 01000000 78"),
    ),
    (
        "fmt0 3-byte csid max",
        128,
        [Msg(65599, 0, 8, 1, b"x")],
        H("01 FFFF 000000 000001 08 01000000 78"),
    ),
    (
        "fmt1 new length and type",
        128,
        [Msg(4, 0, 9, 1, b"vv"), Msg(4, 40, 8, 1, b"aaa")],
        H("04 000000 000002 09 01000000 7676") + H("44 000028 000003 08 616161"),
    ),
    (
        "fmt2 then fmt3 with repeated delta",
        128,
        [Msg(4, 0, 9, 1, b"v"), Msg(4, 40, 9, 1, b"w"), Msg(4, 80, 9, 1, b"x")],
        H("04 000000 000001 09 01000000 76") + H("84 000028 77") + H("C4 78"),
    ),
    (
        "fmt0 again for a new message stream id",
        128,
        [Msg(5, 10, 20, 0, b""), Msg(5, 20, 20, 1, b"")],
        H("05 00000A 000000 14 00000000") + H("05 000014 000000 14 01000000"),
    ),
    (
        "fmt0 again when the clock goes back",
        128,
        [Msg(6, 50, 8, 1, b"a"), Msg(6, 10, 8, 1, b"b")],
        H("06 000032 000001 08 01000000 61") + H("06 00000A 000001 08 01000000 62"),
    ),
    (
        "continuation chunks at chunk size 128",
        128,
        [Msg(3, 0, 9, 1, B200)],
        H("03 000000 0000C8 09 01000000") + B200[:128] + H("C3") + B200[128:],
    ),
    (
        "extended absolute timestamp, repeated on type 3",
        128,
        [Msg(3, 0x1000000, 9, 1, B200)],
        H("03 FFFFFF 0000C8 09 01000000 01000000") + B200[:128] + H("C3 01000000") + B200[128:],
    ),
    (
        "extended delta on fmt2",
        128,
        [Msg(7, 0, 9, 1, b"a"), Msg(7, 0x1234567, 9, 1, b"b")],
        H("07 000000 000001 09 01000000 61") + H("87 FFFFFF 01234567 62"),
    ),
    (
        "3-byte csid continuation",
        128,
        [Msg(400, 0, 9, 1, B200)],
        H("01 5001 000000 0000C8 09 01000000") + B200[:128] + H("C1 5001") + B200[128:],
    ),
]


@pytest.mark.parametrize(("name", "size", "msgs", "wire"), BOTH_WAYS, ids=[b[0] for b in BOTH_WAYS])
def test_vectors_encode(name: str, size: int, msgs: list[Msg], wire: bytes) -> None:
    assert encode_all(msgs, size) == wire


@pytest.mark.parametrize(("name", "size", "msgs", "wire"), BOTH_WAYS, ids=[b[0] for b in BOTH_WAYS])
def test_vectors_decode(name: str, size: int, msgs: list[Msg], wire: bytes) -> None:
    assert decode_all(wire, chunk_size=size) == msgs
    # byte by byte gives the same
    dec = ChunkDecoder(Limits())
    got = []
    for b in wire:
        dec.feed(bytes([b]))
        while (raw := dec.next_message()) is not None:
            got.append(Msg(raw.csid, raw.timestamp, raw.type_id, raw.stream_id, raw.body))
    assert got == msgs


# Forms our encoder never writes but peers do: decode only.
DECODE_ONLY = [
    (
        "type 3 continuation WITHOUT the repeated extended timestamp",
        H("03 FFFFFF 0000C8 09 01000000 01000000") + B200[:128] + H("C3") + B200[128:],
        [Msg(3, 0x1000000, 9, 1, B200)],
    ),
    (
        "fmt3 starting a new message after fmt0 re-applies the field",
        H("03 000064 000001 09 01000000 61") + H("C3 62"),
        [Msg(3, 100, 9, 1, b"a"), Msg(3, 200, 9, 1, b"b")],
    ),
    (
        "fmt3 new message after an extended delta re-reads the extended field",
        H("03 000000 000001 09 01000000 61") + H("83 FFFFFF 01000000 62") + H("C3 01000000 63"),
        [Msg(3, 0, 9, 1, b"a"), Msg(3, 0x1000000, 9, 1, b"b"), Msg(3, 0x2000000, 9, 1, b"c")],
    ),
    (
        "fmt1 opening a new chunk stream (tolerated, stream id 0)",
        H("42 00000A 000001 14 61"),
        [Msg(2, 10, 20, 0, b"a")],
    ),
    (
        "bit 31 of the timestamp masked",
        H("03 FFFFFF 000001 09 01000000 80000005 61"),
        [Msg(3, 5, 9, 1, b"a")],
    ),
    (
        "interleaved chunk streams",
        H("04 000000 0000C8 09 01000000")
        + B200[:128]
        + H("06 000000 000002 08 01000000 4142")
        + H("C4")
        + B200[128:],
        [Msg(6, 0, 8, 1, b"AB"), Msg(4, 0, 9, 1, B200)],
    ),
    (
        "abort drops the partial message",
        H("04 000000 0000C8 09 01000000")
        + B200[:128]
        + H("02 000000 000004 02 00000000 00000004")
        + H("04 000000 000001 09 01000000 7A"),
        [Msg(2, 0, 2, 0, H("00000004")), Msg(4, 0, 9, 1, b"z")],
    ),
    (
        "set chunk size applies to the next chunk",
        H("02 000000 000004 01 00000000 00000100") + H("03 000000 0000C8 09 01000000") + B200,
        [Msg(2, 0, 1, 0, H("00000100")), Msg(3, 0, 9, 1, B200)],
    ),
]


@pytest.mark.parametrize(("name", "wire", "msgs"), DECODE_ONLY, ids=[d[0] for d in DECODE_ONLY])
def test_decode_only_vectors(name: str, wire: bytes, msgs: list[Msg]) -> None:
    assert decode_all(wire, Limits()) == msgs
    for cut in range(1, len(wire)):
        dec = ChunkDecoder(Limits())
        got = []
        for part in (wire[:cut], wire[cut:]):
            dec.feed(part)
            while (raw := dec.next_message()) is not None:
                got.append(Msg(raw.csid, raw.timestamp, raw.type_id, raw.stream_id, raw.body))
        assert got == msgs, cut


def test_encoder_set_chunk_size_switches_after_the_message() -> None:
    enc = ChunkEncoder()
    enc.encode(2, 0, 1, 0, H("00001000"))
    assert enc.chunk_size == 4096


# ---- limits -------------------------------------------------------------------------------


def expect_reason(wire: bytes, reason: str, limits: Limits | None = None) -> None:
    dec = ChunkDecoder(limits or Limits())
    dec.feed(wire)
    with pytest.raises(RemoteProtocolError) as info:
        while dec.next_message() is not None:
            pass
    assert info.value.reason == reason


def test_huge_declared_length() -> None:
    expect_reason(H("03 000000 FFFFFF 09 01000000"), "message-too-large")
    expect_reason(
        H("03 000000 000065 09 01000000"), "message-too-large", Limits(max_message_size=100)
    )


def test_too_many_chunk_streams() -> None:
    wire = b"".join(bytes([0, csid]) + H("000000 000000 09 01000000") for csid in range(70))
    expect_reason(wire, "too-many-chunk-streams", Limits(max_chunk_streams=64))


@pytest.mark.parametrize("size", [0, 127, 16 * 1024 * 1024 + 1, 0x80000080])
def test_bad_chunk_size(size: int) -> None:
    expect_reason(H("02 000000 000004 01 00000000") + size.to_bytes(4, "big"), "chunk-size")


def test_buffered_bytes_bounded() -> None:
    lim = Limits(max_buffered_bytes=300, min_chunk_size=128)
    wire = b"".join(bytes([c]) + H("000000 000100 09 01000000") + bytes(128) for c in (3, 4, 5))
    expect_reason(wire, "buffer-overflow", lim)


def test_new_chunk_stream_without_header() -> None:
    expect_reason(H("83 000001 61"), "chunk-no-header")


# ---- hypothesis round trips -----------------------------------------------------------------

CSIDS = [2, 3, 4, 8, 63, 64, 300, 319, 320, 1000]


@st.composite
def message_lists(draw: st.DrawFn) -> list[Msg]:
    n = draw(st.integers(1, 12))
    clocks: dict[int, int] = {}
    out = []
    for _ in range(n):
        csid = draw(st.sampled_from(CSIDS))
        ts = clocks.get(csid, draw(st.integers(0, 0x7FFFFFFF)))
        ts = (ts + draw(st.sampled_from([0, 1, 33, 0xFFFFFF, 0x1000000, -5]))) & 0x7FFFFFFF
        clocks[csid] = ts
        type_id = draw(st.sampled_from([8, 9, 18, 20]))
        msid = draw(st.sampled_from([0, 1, 2]))
        body = draw(st.binary(max_size=700))
        out.append(Msg(csid, ts, type_id, msid, body))
    return out


@settings(max_examples=200, deadline=None)
@given(msgs=message_lists(), size=st.integers(1, 600), seed=st.integers(0, 2**32))
def test_roundtrip_interleaved(msgs: list[Msg], size: int, seed: int) -> None:
    """Chunks of different chunk streams interleaved at random still decode per stream."""
    enc = ChunkEncoder(size)
    queues: dict[int, list[bytes]] = {}
    for x in msgs:
        queues.setdefault(x.csid, []).extend(
            enc.encode_chunks(x.csid, x.ts, x.type_id, x.msid, x.body)
        )
    rnd = random.Random(seed)
    wire = bytearray()
    while queues:
        csid = rnd.choice(sorted(queues))
        wire += queues[csid].pop(0)
        if not queues[csid]:
            del queues[csid]
    got = decode_all(bytes(wire), chunk_size=size)

    def by_csid(ms: list[Msg]) -> dict[int, list[Msg]]:
        return {c: [m for m in ms if m.csid == c] for c in CSIDS}

    assert by_csid(got) == by_csid(msgs)


@settings(max_examples=200, deadline=None)
@given(msgs=message_lists(), sizes=st.lists(st.integers(128, 5000), max_size=4), data=st.data())
def test_roundtrip_with_set_chunk_size(
    msgs: list[Msg], sizes: list[int], data: st.DataObject
) -> None:
    """Set Chunk Size messages in the stream switch encoder and decoder at the same point."""
    seq = list(msgs)
    for size in sizes:
        at = data.draw(st.integers(0, len(seq)))
        seq.insert(at, Msg(2, 0, 1, 0, size.to_bytes(4, "big")))
    wire = encode_all(seq)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=5)))
    dec = ChunkDecoder(Limits())
    got: list[RawMessage] = []
    prev = 0
    for cut in [*cuts, len(wire)]:
        dec.feed(wire[prev:cut])
        prev = cut
        while (raw := dec.next_message()) is not None:
            got.append(raw)
    assert [Msg(r.csid, r.timestamp, r.type_id, r.stream_id, r.body) for r in got] == seq


@settings(max_examples=200, deadline=None)
@given(msgs=message_lists(), data=st.data())
def test_wanted_bytes_never_asks_past_the_next_message(
    msgs: list[Msg], data: st.DataObject
) -> None:
    """The wake-up hint is >= 1 and, for messages sent one after another (as encoders do), never
    more than the bytes that complete the next message: a reader waiting for it cannot stall."""
    wire = encode_all(msgs)
    ends = []  # input offset at which each message completes
    probe = ChunkDecoder(Limits())
    for i in range(len(wire)):
        probe.feed(wire[i : i + 1])
        while probe.next_message() is not None:
            ends.append(i + 1)
    cuts = sorted(set(data.draw(st.lists(st.integers(0, len(wire)), max_size=8))))
    dec = ChunkDecoder(Limits())
    prev = 0
    for cut in [*cuts, len(wire)]:
        dec.feed(wire[prev:cut])
        prev = cut
        while dec.next_message() is not None:
            pass
        assert dec.wanted_bytes >= 1
        following = [e for e in ends if e > cut]
        if following:
            assert cut + dec.wanted_bytes <= following[0]
