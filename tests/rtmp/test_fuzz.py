"""Any bytes fed to a server Connection either give events or raise our ProtocolError, never
anything else; fed whole AND byte by byte (the h11 fuzz harness shape)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.rtmp import events
from gateway.rtmp.errors import ProtocolError
from tests.rtmp import sessions
from tests.rtmp.sessions import Script, drain, server

FUZZ = settings(max_examples=200, deadline=None)


def run(pieces: list[bytes]) -> tuple[list[events.Event], str | None]:
    """Feed pieces then EOF; return events and the error reason (if any)."""
    conn = server()
    got: list[events.Event] = []
    try:
        for piece in [*(p for p in pieces if p), b""]:
            conn.receive_data(piece)
            drain(conn, out=got)
        return got, None
    except ProtocolError as exc:
        return got, exc.reason


def check(data: bytes) -> None:
    whole = run([data])
    bytewise = run([data[i : i + 1] for i in range(len(data))])
    # Same events and same verdict however the bytes arrive.
    assert bytewise == whole


def after_handshake() -> bytes:
    return Script(digest=False).data()


def after_publish() -> bytes:
    s = Script(digest=False)
    s.command(3, 0, "connect", 1.0, {"app": "live"})
    s.command(3, 0, "createStream", 2.0, None)
    s.command(4, 1, "publish", 3.0, None, "k", "live")
    return s.data()


HANDSHAKED = after_handshake()
PUBLISHING = after_publish()
OBS = sessions.obs_session()


@FUZZ
@given(st.binary(max_size=2000))
def test_random_bytes_from_scratch(data: bytes) -> None:
    check(data)


@FUZZ
@given(st.binary(max_size=1537))
def test_random_c0c1_with_valid_version(data: bytes) -> None:
    check(b"\x03" + data)


@FUZZ
@given(st.binary(max_size=600))
def test_random_bytes_after_handshake(data: bytes) -> None:
    check(HANDSHAKED + data)


@FUZZ
@given(st.binary(max_size=600))
def test_random_bytes_while_publishing(data: bytes) -> None:
    check(PUBLISHING + data)


# Header-shaped garbage reaches deeper than uniform bytes: valid basic headers, small lengths.
chunkish = st.lists(
    st.tuples(
        st.integers(0, 3),
        st.sampled_from([0, 1, 2, 3, 4, 63]),
        st.integers(0, 0xFFFFFF),
        st.integers(0, 300),
        st.sampled_from([1, 2, 3, 4, 5, 6, 8, 9, 15, 17, 18, 20, 22, 99]),
        st.integers(0, 3),
        st.binary(max_size=40),
    ),
    max_size=8,
)


def build(items: list[tuple[int, int, int, int, int, int, bytes]]) -> bytes:
    out = bytearray()
    for fmt, id6, ts, length, type_id, msid, tail in items:
        out.append((fmt << 6) | id6)
        if id6 in (0, 1):
            out += bytes(id6 + 1)
        if fmt <= 2:
            out += ts.to_bytes(3, "big")
        if fmt <= 1:
            out += length.to_bytes(3, "big") + bytes([type_id])
        if fmt == 0:
            out += msid.to_bytes(4, "little")
        out += tail
    return bytes(out)


@FUZZ
@given(chunkish)
def test_header_shaped_garbage(items: list[tuple[int, int, int, int, int, int, bytes]]) -> None:
    check(PUBLISHING + build(items))


@FUZZ
@given(st.integers(0, 2**32), st.integers(1, 8))
def test_mutated_obs_session(seed: int, flips: int) -> None:
    """Byte flips, cuts and insertions in a real-shaped session."""
    rnd = random.Random(seed)
    mutable = bytearray(OBS)
    for _ in range(flips):
        at = rnd.randrange(3073, len(mutable))
        what = rnd.random()
        if what < 0.6:
            mutable[at] = rnd.randrange(256)
        elif what < 0.8:
            del mutable[at : at + rnd.randrange(1, 20)]
        else:
            mutable[at:at] = rnd.randbytes(rnd.randrange(1, 20))
    data = bytes(mutable)
    whole = run([data])
    assert run(sessions.random_splits(data, seed)) == whole
    if len(data) < 12000:
        assert run([data[i : i + 1] for i in range(len(data))]) == whole
