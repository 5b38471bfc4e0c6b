"""Range and Accept-Encoding parsing (pure, RFC 9110 §14 and §12.5.3)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from web.httputil import UNSATISFIABLE, ByteRange, accepts_gzip, parse_byte_range


def test_range_forms() -> None:
    assert parse_byte_range("bytes=0-9", 100) == ByteRange(0, 9)
    assert parse_byte_range("bytes=90-", 100) == ByteRange(90, 99)
    assert parse_byte_range("bytes=-10", 100) == ByteRange(90, 99)
    assert parse_byte_range("bytes=-1000", 100) == ByteRange(0, 99)
    assert parse_byte_range("bytes=50-5000", 100) == ByteRange(50, 99)
    assert parse_byte_range("BYTES = 1-1", 100) == ByteRange(1, 1)


def test_unsatisfiable() -> None:
    assert parse_byte_range("bytes=100-", 100) is UNSATISFIABLE
    assert parse_byte_range("bytes=100-200", 100) is UNSATISFIABLE
    assert parse_byte_range("bytes=-0", 100) is UNSATISFIABLE
    assert parse_byte_range("bytes=0-", 0) is UNSATISFIABLE
    assert UNSATISFIABLE.content_range(100) == "bytes */100"


def test_ignored_headers() -> None:
    for header in (
        None,
        "",
        "bytes",
        "items=0-1",
        "bytes=5-1",
        "bytes=a-b",
        "bytes=0-1,3-4",
        "bytes=-",
        "bytes=1",
        "bytes=0x1-2",
        "bytes=" + "9" * 19 + "-",
        "bytes=\u0661-2",  # non-ASCII digit
        "bytes=0-1" + " " * 300,
    ):
        assert parse_byte_range(header, 100) is None, header


@settings(max_examples=200, deadline=None)
@given(
    first=st.one_of(st.none(), st.integers(0, 3000)),
    last=st.one_of(st.none(), st.integers(0, 3000)),
    length=st.integers(0, 2000),
)
def test_range_model(first: int | None, last: int | None, length: int) -> None:
    header = f"bytes={'' if first is None else first}-{'' if last is None else last}"
    got = parse_byte_range(header, length)
    if first is None and last is None:
        assert got is None
    elif first is None:
        assert last is not None
        if last == 0 or length == 0:
            assert got is UNSATISFIABLE
        else:
            assert got == ByteRange(max(0, length - last), length - 1)
    elif last is not None and last < first:
        assert got is None
    elif first >= length:
        assert got is UNSATISFIABLE
    else:
        assert isinstance(got, ByteRange)
        assert 0 <= got.start <= got.end < length
        assert got.start == first
        assert got.end == (length - 1 if last is None else min(last, length - 1))
        assert got.content_range(length) == f"bytes {got.start}-{got.end}/{length}"


def test_accepts_gzip() -> None:
    assert accepts_gzip("gzip")
    assert accepts_gzip("deflate, gzip;q=0.5, br")
    assert accepts_gzip("*")
    assert accepts_gzip("GZIP")
    assert not accepts_gzip(None)
    assert not accepts_gzip("")
    assert not accepts_gzip("identity")
    assert not accepts_gzip("gzip;q=0")
    assert not accepts_gzip("br, *;q=0")
    assert not accepts_gzip("gzip;q=zero")
