"""Reading the auth hook's answer, and the decision cache."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.auth import (
    MAX_HOOK_BODY,
    AuthRequest,
    Decision,
    DecisionCache,
    hook_failure,
    parse_hook_answer,
)

ALLOW = Decision(True, "allowed by the auth hook")
NOT_JSON = Decision(False, "hook answered a body that is not JSON", cacheable=False)
BAD_NAME = Decision(False, "hook answered an invalid name", cacheable=False)


@pytest.mark.parametrize(
    ("status", "body", "action", "expected"),
    [
        (200, b"", "publish", ALLOW),
        (204, b"", "publish", ALLOW),
        (299, b"", "read", ALLOW),
        (200, b"\n", "publish", ALLOW),  # `echo` in a shell hook
        (200, b"{}", "publish", ALLOW),
        (200, b'{"name": "KEY2"}', "publish", Decision(True, ALLOW.reason, name="KEY2")),
        (200, b'{"name": "a-B_9"}', "publish", Decision(True, ALLOW.reason, name="a-B_9")),
        (200, b'{"name": null}', "publish", ALLOW),
        (200, b'{"name": "KEY2"}', "read", ALLOW),  # renaming is for publishing only
        (200, b'{"name": "../x"}', "read", ALLOW),
        (200, b'{"name": ""}', "publish", BAD_NAME),
        (200, b'{"name": "a/b"}', "publish", BAD_NAME),
        (200, b'{"name": "a b"}', "publish", BAD_NAME),
        (200, b'{"name": "' + b"a" * 129 + b'"}', "publish", BAD_NAME),
        (200, b'{"name": 5}', "publish", BAD_NAME),
        (200, b'{"name": ["a"]}', "publish", BAD_NAME),
        (200, b"OK", "publish", NOT_JSON),
        (200, b"<html>hi</html>", "read", NOT_JSON),
        (200, b"[]", "publish", NOT_JSON),
        (200, b'["name"]', "publish", NOT_JSON),
        (200, b'"KEY2"', "publish", NOT_JSON),
        (200, b"true", "publish", NOT_JSON),
        (200, b"null", "publish", NOT_JSON),
        (200, b"{", "publish", NOT_JSON),
        (200, b"\xff\xfe{", "publish", NOT_JSON),
        (200, b"[" * 50_000, "publish", NOT_JSON),  # deep nesting: RecursionError inside
        (403, b"", "publish", Decision(False, "hook answered HTTP 403")),
        (401, b'{"name": "KEY2"}', "publish", Decision(False, "hook answered HTTP 401")),
        (404, b"", "read", Decision(False, "hook answered HTTP 404")),
        (500, b"", "publish", Decision(False, "hook answered HTTP 500", cacheable=False)),
        (503, b"{}", "read", Decision(False, "hook answered HTTP 503", cacheable=False)),
        (302, b"", "publish", Decision(False, "hook answered HTTP 302", cacheable=False)),
        (100, b"", "publish", Decision(False, "hook answered HTTP 100", cacheable=False)),
        (199, b"", "publish", Decision(False, "hook answered HTTP 199", cacheable=False)),
        (300, b"", "publish", Decision(False, "hook answered HTTP 300", cacheable=False)),
        (600, b"", "publish", Decision(False, "hook answered HTTP 600", cacheable=False)),
    ],
)
def test_parse_hook_answer(status: int, body: bytes, action: str, expected: Decision) -> None:
    assert parse_hook_answer(status, body, action=action) == expected  # type: ignore[arg-type]


def test_hook_body_too_large_is_refused_unparsed() -> None:
    body = b'{"name": "ok", "pad": "' + b"x" * MAX_HOOK_BODY + b'"}'
    decision = parse_hook_answer(200, body, action="publish")
    assert not decision.allowed
    assert not decision.cacheable
    fits = b'{"name": "ok", "pad": "' + b"x" * (MAX_HOOK_BODY - 30) + b'"}'
    assert parse_hook_answer(200, fits, action="publish").name == "ok"


@given(
    st.integers(min_value=-1, max_value=1000),
    st.one_of(st.binary(max_size=200), st.text(max_size=100).map(str.encode)),
    st.sampled_from(["publish", "read", "api"]),
)
def test_parse_hook_answer_fails_closed(status: int, body: bytes, action: str) -> None:
    decision = parse_hook_answer(status, body, action=action)  # type: ignore[arg-type]
    assert isinstance(decision, Decision)
    if decision.allowed:
        assert 200 <= status <= 299
    else:
        assert decision.reason
    if decision.name is not None:
        assert action == "publish" and decision.allowed
    if not 200 <= status <= 299:
        assert not decision.allowed
        assert decision.cacheable is (400 <= status <= 499)


def test_hook_failure() -> None:
    decision = hook_failure("timed out after 2 s")
    assert decision == Decision(
        False, "auth hook unavailable: timed out after 2 s", cacheable=False
    )


def req(key: str = "cam", *, ip: str = "1.2.3.4", token: str | None = None) -> AuthRequest:
    return AuthRequest("read", "hls", "live", key, "", ip, token)


YES = Decision(True, "allowed by the auth hook")
NO = Decision(False, "hook answered HTTP 403")


def test_cache_remembers_until_ttl() -> None:
    cache = DecisionCache(ttl=10)
    cache.put(req(), YES, now=100.0)
    assert cache.get(req(), now=100.0) == YES
    assert cache.get(req(), now=109.999) == YES
    assert cache.get(req(), now=110.0) is None
    assert len(cache) == 0  # the expired entry went


def test_cache_keys_on_action_app_key_ip_token() -> None:
    cache = DecisionCache(ttl=10)
    cache.put(req(token="t"), NO, now=0)
    assert cache.get(req(token="t"), now=1) == NO
    assert cache.get(req(token="u"), now=1) is None
    assert cache.get(req(), now=1) is None
    assert cache.get(req(ip="1.2.3.5", token="t"), now=1) is None
    assert cache.get(req("cam2", token="t"), now=1) is None
    publish = AuthRequest("publish", "hls", "live", "cam", "", "1.2.3.4", "t")
    assert cache.get(publish, now=1) is None


def test_cache_skips_non_cacheable_decisions() -> None:
    cache = DecisionCache(ttl=10)
    cache.put(req(), hook_failure("refused"), now=0)
    cache.put(req("x"), parse_hook_answer(500, b"", action="read"), now=0)
    assert cache.get(req(), now=0) is None
    assert cache.get(req("x"), now=0) is None
    assert len(cache) == 0


def test_cache_put_replaces() -> None:
    cache = DecisionCache(ttl=10)
    cache.put(req(), YES, now=0)
    cache.put(req(), NO, now=5)
    assert cache.get(req(), now=12) == NO  # the second put's ttl counts
    assert len(cache) == 1


def test_cache_off_with_ttl_zero() -> None:
    cache = DecisionCache(ttl=0)
    cache.put(req(), YES, now=0)
    assert cache.get(req(), now=0) is None
    assert len(cache) == 0


def test_cache_is_bounded_and_evicts_the_oldest() -> None:
    cache = DecisionCache(ttl=100, max_entries=3)
    for index in range(3):
        cache.put(req(f"k{index}"), YES, now=index)
    cache.put(req("k3"), NO, now=3)
    assert len(cache) == 3
    assert cache.get(req("k0"), now=4) is None
    assert [cache.get(req(f"k{i}"), now=4) for i in (1, 2, 3)] == [YES, YES, NO]


def test_cache_drops_expired_entries_when_putting() -> None:
    cache = DecisionCache(ttl=10, max_entries=100)
    for index in range(50):
        cache.put(req(f"k{index}"), YES, now=0)
    cache.put(req("late"), YES, now=20)
    assert len(cache) == 1


@given(st.lists(st.tuples(st.integers(0, 30), st.booleans()), max_size=200))
def test_cache_never_exceeds_its_bound(puts: list[tuple[int, bool]]) -> None:
    cache = DecisionCache(ttl=50, max_entries=8)
    for now, (key, allowed) in enumerate(puts):
        decision = Decision(allowed, "r")
        cache.put(req(f"k{key}"), decision, now=now)
        assert len(cache) <= 8
        assert cache.get(req(f"k{key}"), now=now) == decision


@pytest.mark.parametrize(("ttl", "max_entries"), [(-1, 10), (float("nan"), 10), (5, 0)])
def test_cache_refuses_nonsense(ttl: float, max_entries: int) -> None:
    with pytest.raises(ValueError):
        DecisionCache(ttl, max_entries)
