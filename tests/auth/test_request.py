"""AuthRequest, token extraction and path patterns: value tables and properties."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.auth import AuthRequest, bearer_token, match_path, query_token
from segmenter.names import valid_name

NAMES = st.from_regex(r"[A-Za-z0-9_-]{1,20}", fullmatch=True)
PATTERN_PARTS = st.from_regex(r"[A-Za-z0-9_*-]{0,8}", fullmatch=True)


@pytest.mark.parametrize(
    ("pattern", "app", "key", "expected"),
    [
        ("*", "live", "cam", True),
        ("*", "", "", True),  # "*" alone covers api requests too
        ("live/*", "live", "cam", True),
        ("live/*", "live", "", True),
        ("live/*", "other", "cam", False),
        ("live/*", "livex", "cam", False),
        ("live/*", "", "", False),
        ("live/cam-*", "live", "cam-1", True),
        ("live/cam-*", "live", "cam-", True),
        ("live/cam-*", "live", "cam", False),
        ("live/cam-*", "live", "xcam-1", False),
        ("live/*-hd", "live", "a-hd", True),
        ("live/*-hd", "live", "a-hd-x", False),
        ("live/a*b*c", "live", "aXbYc", True),
        ("live/a*b*c", "live", "acb", False),
        ("*/cam", "live", "cam", True),
        ("*/cam", "live", "cam2", False),
        ("*/*", "live", "cam", True),
        ("live/cam", "live", "cam", True),
        ("live/cam", "live", "Cam", False),  # names are case-sensitive
        ("live/cam", "live", "cam2", False),
        ("live", "live", "cam", False),  # no '/': not a path pattern
        ("live*", "live", "cam", False),  # '*' never reaches across '/'
        ("live/*/x", "live", "cam", False),
        ("", "live", "cam", False),
        ("**", "live", "cam", False),
        ("live/**", "live", "cam", True),
    ],
)
def test_match_path_table(pattern: str, app: str, key: str, expected: bool) -> None:
    assert match_path(pattern, app, key) is expected


def reference_match(pattern: str, app: str, key: str) -> bool:
    """The same rule written with a regex: '*' is [^/]*, everything else literal."""
    if pattern == "*":
        return True
    regex = "[^/]*".join(re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(regex, f"{app}/{key}") is not None


@given(PATTERN_PARTS, PATTERN_PARTS, NAMES, NAMES)
def test_match_path_agrees_with_a_regex(app_part: str, key_part: str, app: str, key: str) -> None:
    pattern = f"{app_part}/{key_part}"
    assert match_path(pattern, app, key) is reference_match(pattern, app, key)


@given(NAMES, NAMES)
def test_match_path_a_literal_path_matches_only_itself(app: str, key: str) -> None:
    assert match_path(f"{app}/{key}", app, key)
    assert not match_path(f"{app}/{key}", app, key + "x")
    assert not match_path(f"{app}/{key}", app + "x", key)


def test_match_path_many_stars_is_not_exponential() -> None:
    # A regex engine backtracks exponentially on this; the glob is O(n*m).
    assert not match_path("live/" + "*a" * 60 + "b", "live", "a" * 128)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("token=abc", "abc"),
        ("a=1&token=abc&b=2", "abc"),
        ("token=first&token=second", "first"),
        ("token=&token=second", None),  # the first one counts, and it is empty
        ("token=", None),
        ("token", None),
        ("", None),
        ("tokens=abc", None),
        ("xtoken=abc", None),
        ("Token=abc", None),
        ("token=a%2Bb%3D%3D", "a+b=="),
        ("token=a+b", "a+b"),  # '+' is not a space in a token
        ("token=a%20b", "a b"),
        ("to%6Ben=abc", "abc"),  # names are percent-decoded too
        ("token=%E2%9C%93", "\u2713"),
        ("token=%FF", None),  # not UTF-8 once decoded
        ("token=a=b", "a=b"),
        ("?token=abc", "abc"),
        ("token=abc;x=1", "abc;x=1"),  # ';' is not a separator (RFC 3986 leaves it to us)
    ],
)
def test_query_token(query: str, expected: str | None) -> None:
    assert query_token(query) == expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Bearer abc", "abc"),
        ("bearer abc", "abc"),
        ("BEARER abc", "abc"),
        ("Bearer  abc", "abc"),
        ("  Bearer abc  ", "abc"),
        ("Bearer\tabc", "abc"),
        ("Bearer a.b.c", "a.b.c"),
        ("Bearer a+/b==", "a+/b=="),
        ("Bearer p1~1~s~m", "p1~1~s~m"),
        ("Bearer", None),
        ("Bearer ", None),
        ("Bearer a b", None),
        ("Bearer a=b", None),  # '=' only at the end (RFC 6750 b64token)
        ("Basic dXNlcjpwdw==", None),
        ("Bearerabc", None),
        ("abc", None),
        ("", None),
        (None, None),
    ],
)
def test_bearer_token(header: str | None, expected: str | None) -> None:
    assert bearer_token(header) == expected


@given(st.text(max_size=200))
def test_token_extraction_never_raises(text: str) -> None:
    found = query_token(text)
    assert found is None or found != ""
    bearer = bearer_token(text)
    assert bearer is None or (bearer and bearer in text)


@given(st.from_regex(r"[A-Za-z0-9._~+/-]{1,60}", fullmatch=True))
def test_bearer_token_round_trip(token: str) -> None:
    assert bearer_token(f"Bearer {token}") == token


def test_hook_body_has_exactly_the_issue_keys() -> None:
    request = AuthRequest("publish", "rtmps", "live", "s3cret", "token=t&x=1", "10.0.0.1", "t")
    assert json.loads(request.hook_body()) == {
        "action": "publish",
        "protocol": "rtmps",
        "app": "live",
        "key": "s3cret",
        "query": "token=t&x=1",
        "ip": "10.0.0.1",
        "token": "t",
    }


def test_hook_body_bytes_and_null_token() -> None:
    request = AuthRequest("api", "http", "", "", "", "::1", None)
    assert request.hook_body() == (
        b'{"action":"api","protocol":"http","app":"","key":"","query":"","ip":"::1","token":null}'
    )


def test_hook_body_escapes_hostile_text() -> None:
    key = 'a"b\\c\n\u2028'
    request = AuthRequest("read", "hls", "live", key, '"}', "1.2.3.4", None)
    body = request.hook_body()
    assert body.isascii()
    assert json.loads(body)["key"] == key
    assert json.loads(body)["query"] == '"}'


def test_cache_key() -> None:
    request = AuthRequest("read", "hls", "live", "cam", "token=t&x=1", "1.2.3.4", "t")
    assert request.cache_key() == ("read", "live", "cam", "1.2.3.4", "t")
    tokenless = AuthRequest("read", "hls", "live", "cam", "", "1.2.3.4", None)
    assert tokenless.cache_key() == ("read", "live", "cam", "1.2.3.4", "")
    # Protocol and the raw query do not split the cache; everything in the key does.
    other_protocol = AuthRequest("read", "rtmp", "live", "cam", "y=2", "1.2.3.4", "t")
    assert other_protocol.cache_key() == request.cache_key()
    other_ip = AuthRequest("read", "hls", "live", "cam", "", "1.2.3.5", "t")
    assert other_ip.cache_key() != request.cache_key()


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("a", True),
        ("A-z_09", True),
        ("a" * 128, True),
        ("a" * 129, False),
        ("", False),
        ("a b", False),
        ("a/b", False),
        ("a.b", False),
        ("é", False),
        ("a\n", False),
    ],
)
def test_valid_name(name: str, ok: bool) -> None:
    assert valid_name(name) is ok


@given(st.text(max_size=140))
def test_the_http_side_serves_exactly_the_names_a_publish_may_take(name: str) -> None:
    from web.names import is_component

    assert valid_name(name) is is_component(name)
