"""Authorizer.decide: each rule of the decision order, and what reaches the hook."""

from __future__ import annotations

from typing import Any

import jwt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.auth import (
    Authorizer,
    AuthRequest,
    Decision,
    DecisionCache,
    JwtVerifier,
    NeedHook,
    PlaybackSigner,
    hook_failure,
    parse_hook_answer,
)

SECRET = "a-shared-secret-of-at-least-32-bytes!"
API_TOKEN = "api-token-0123456789"
NOW = 1_800_000_000.0
SIGNER = PlaybackSigner(b"playback-secret-0123456789abcdef")


def jwt_for(*permissions: dict[str, str], exp: float = NOW + 60) -> str:
    return jwt.encode({"permissions": list(permissions), "exp": exp}, SECRET, algorithm="HS256")


PUBLISH_CAM = jwt_for({"action": "publish", "path": "live/cam"})
READ_CAM = jwt_for({"action": "read", "path": "live/cam"})
API_JWT = jwt_for({"action": "api"})
EXPIRED = jwt_for({"action": "publish", "path": "*"}, {"action": "read", "path": "*"}, exp=NOW)
PLAY_CAM = SIGNER.sign("live", "cam", int(NOW) + 60, "sess")
PLAY_OTHER = SIGNER.sign("live", "other", int(NOW) + 60, "sess")
PLAY_EXPIRED = SIGNER.sign("live", "cam", int(NOW), "sess")


def authorizer(
    *,
    hook: bool = False,
    jwt_on: bool = False,
    signer: bool = False,
    read_auth: bool = False,
    api_token: str | None = None,
    ttl: float = 0,
) -> Authorizer:
    return Authorizer(
        hook=hook,
        jwt=JwtVerifier(secret=SECRET) if jwt_on else None,
        signer=SIGNER if signer else None,
        read_auth=read_auth,
        api_token=api_token,
        cache=DecisionCache(ttl),
    )


def request(action: str, token: str | None = None, key: str = "cam") -> AuthRequest:
    app = "" if action == "api" else "live"
    key = "" if action == "api" else key
    return AuthRequest(action, "http", app, key, "", "1.2.3.4", token)  # type: ignore[arg-type]


def allow(reason: str, **extra: Any) -> Decision:
    return Decision(True, reason, **extra)


def deny(reason: str) -> Decision:
    return Decision(False, reason)


HOOK = "hook"  # the expected outcome is NeedHook for the request itself

CASES: list[tuple[str, dict[str, Any], str, str | None, Decision | str]] = [
    # 1. reads are open unless read_auth
    ("open read", {}, "read", None, allow("reads are open")),
    ("open read ignores a bad token", {"jwt_on": True}, "read", EXPIRED, allow("reads are open")),
    ("open read, hook on", {"hook": True}, "read", None, allow("reads are open")),
    # 2. the api
    ("api open", {}, "api", None, allow("api is open")),
    ("api open with a token", {}, "api", "whatever", allow("api is open")),
    ("api token", {"api_token": API_TOKEN}, "api", API_TOKEN, allow("api token")),
    (
        "api token wrong",
        {"api_token": API_TOKEN},
        "api",
        API_TOKEN + "x",
        deny("api needs Authorization: Bearer <api_token>"),
    ),
    (
        "api token missing",
        {"api_token": API_TOKEN},
        "api",
        None,
        deny("api needs Authorization: Bearer <api_token>"),
    ),
    (
        "api token + hook: token",
        {"api_token": API_TOKEN, "hook": True},
        "api",
        API_TOKEN,
        allow("api token"),
    ),
    ("api token + hook: other token", {"api_token": API_TOKEN, "hook": True}, "api", "x", HOOK),
    ("api guarded by the hook only", {"hook": True}, "api", None, HOOK),
    (
        "api guarded by jwt: no token",
        {"jwt_on": True},
        "api",
        None,
        deny("a token is needed for the api"),
    ),
    ("api guarded by jwt: api jwt", {"jwt_on": True}, "api", API_JWT, allow("token allows api")),
    (
        "api guarded by jwt: publish jwt",
        {"jwt_on": True},
        "api",
        PUBLISH_CAM,
        deny("token does not allow api of this stream"),
    ),
    (
        "api jwt with an api token set",
        {"jwt_on": True, "api_token": API_TOKEN},
        "api",
        API_JWT,
        allow("token allows api"),
    ),
    (
        "api token is not a publish token",
        {"api_token": API_TOKEN, "jwt_on": True},
        "publish",
        API_TOKEN,
        deny("token not accepted"),
    ),
    # 3. playback tokens
    (
        "playback token",
        {"signer": True, "read_auth": True},
        "read",
        PLAY_CAM,
        allow("playback token valid", session="sess"),
    ),
    (
        "playback token, other stream",
        {"signer": True, "read_auth": True},
        "read",
        PLAY_OTHER,
        deny("playback token invalid"),
    ),
    (
        "playback token expired",
        {"signer": True, "read_auth": True},
        "read",
        PLAY_EXPIRED,
        deny("playback token expired"),
    ),
    (
        "playback token: the hook is not asked",
        {"signer": True, "read_auth": True, "hook": True},
        "read",
        PLAY_EXPIRED,
        deny("playback token expired"),
    ),
    (
        "playback token cannot publish",
        {"signer": True, "hook": True},
        "publish",
        PLAY_CAM,
        deny("a playback token does not allow publish"),
    ),
    (
        "playback token cannot publish, even when publishing is open",
        {"signer": True},
        "publish",
        PLAY_CAM,
        deny("a playback token does not allow publish"),
    ),
    (
        "playback token cannot open the api",
        {"signer": True, "api_token": API_TOKEN},
        "api",
        PLAY_CAM,
        deny("a playback token does not allow api"),
    ),
    ("playback token without a signer", {"read_auth": True, "hook": True}, "read", PLAY_CAM, HOOK),
    # 4. JWTs
    ("jwt publish", {"jwt_on": True}, "publish", PUBLISH_CAM, allow("token allows publish")),
    (
        "jwt publish + hook: no hook call",
        {"jwt_on": True, "hook": True},
        "publish",
        PUBLISH_CAM,
        allow("token allows publish"),
    ),
    ("jwt read", {"jwt_on": True, "read_auth": True}, "read", READ_CAM, allow("token allows read")),
    (
        "jwt read cannot publish",
        {"jwt_on": True},
        "publish",
        READ_CAM,
        deny("token does not allow publish of this stream"),
    ),
    ("jwt expired", {"jwt_on": True}, "publish", EXPIRED, deny("token expired")),
    (
        "jwt expired + hook: the hook decides",
        {"jwt_on": True, "hook": True},
        "publish",
        EXPIRED,
        HOOK,
    ),
    ("jwt not granting + hook", {"jwt_on": True, "hook": True}, "publish", READ_CAM, HOOK),
    ("jwt off: a jwt goes to the hook", {"hook": True}, "publish", PUBLISH_CAM, HOOK),
    (
        "jwt off, no hook: publish is open",
        {},
        "publish",
        EXPIRED,
        allow("no publish auth configured"),
    ),
    # 6. the hook
    ("hook publish", {"hook": True}, "publish", None, HOOK),
    ("hook read", {"hook": True, "read_auth": True}, "read", None, HOOK),
    ("hook with a plain token", {"hook": True}, "publish", "secret", HOOK),
    # 7. nothing could answer
    ("publish open", {}, "publish", None, allow("no publish auth configured")),
    (
        "publish open, api token set",
        {"api_token": API_TOKEN},
        "publish",
        None,
        allow("no publish auth configured"),
    ),
    (
        "publish open, read_auth",
        {"read_auth": True, "signer": True},
        "publish",
        None,
        allow("no publish auth configured"),
    ),
    ("jwt: no token", {"jwt_on": True}, "publish", None, deny("a token is needed to publish")),
    (
        "jwt: a token that is no jwt",
        {"jwt_on": True},
        "publish",
        "secret",
        deny("token not accepted"),
    ),
    (
        "read_auth: no token",
        {"read_auth": True, "signer": True},
        "read",
        None,
        deny("a token is needed to watch"),
    ),
    (
        "read_auth, jwt: no token",
        {"read_auth": True, "jwt_on": True},
        "read",
        None,
        deny("a token is needed to watch"),
    ),
    (
        "read_auth: plain token",
        {"read_auth": True, "signer": True},
        "read",
        "xyz",
        deny("token not accepted"),
    ),
]


@pytest.mark.parametrize(
    ("config", "action", "token", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_rules(
    config: dict[str, Any], action: str, token: str | None, expected: Decision | str
) -> None:
    req = request(action, token)
    decision = authorizer(**config).decide(req, NOW)
    if expected == HOOK:
        assert decision == NeedHook(req)
    else:
        assert decision == expected


def test_publish_open() -> None:
    assert authorizer().publish_open
    assert authorizer(api_token=API_TOKEN, read_auth=True, signer=True).publish_open
    assert not authorizer(hook=True).publish_open
    assert not authorizer(jwt_on=True).publish_open


def test_empty_api_token_is_no_api_token() -> None:
    auth = authorizer(api_token="")
    assert auth.decide(request("api", ""), NOW) == allow("api is open")
    guarded = authorizer(api_token="", hook=True)
    assert guarded.decide(request("api", ""), NOW) == NeedHook(request("api", ""))


def test_too_long_token_is_refused_before_the_hook() -> None:
    auth = authorizer(hook=True, read_auth=True)
    huge = "x" * 100_000
    assert auth.decide(request("publish", huge), NOW) == deny("token too long")
    assert auth.decide(request("read", huge), NOW) == deny("token too long")
    at_limit = "x" * 4096
    assert auth.decide(request("publish", at_limit), NOW) == NeedHook(request("publish", at_limit))


def test_hook_answer_is_cached_per_request() -> None:
    auth = authorizer(hook=True, ttl=30)
    req = request("publish", "secret")
    assert auth.decide(req, NOW) == NeedHook(req)
    answer = parse_hook_answer(200, b'{"name": "public"}', action="publish")
    auth.record(req, answer, NOW)
    assert auth.decide(req, NOW + 29) == answer
    assert auth.decide(req, NOW + 29).name == "public"  # type: ignore[union-attr]
    assert auth.decide(req, NOW + 30) == NeedHook(req)
    other = request("publish", "secret", key="cam2")
    assert auth.decide(other, NOW) == NeedHook(other)


def test_hook_refusal_is_cached_but_not_a_failure() -> None:
    auth = authorizer(hook=True, ttl=30)
    refused, down = request("publish", "a"), request("publish", "b")
    auth.record(refused, parse_hook_answer(403, b"", action="publish"), NOW)
    auth.record(down, hook_failure("connection refused"), NOW)
    assert auth.decide(refused, NOW + 1) == deny("hook answered HTTP 403")
    assert auth.decide(down, NOW + 1) == NeedHook(down)


def test_cache_is_not_consulted_before_a_granting_jwt() -> None:
    auth = authorizer(hook=True, jwt_on=True, ttl=30)
    req = request("publish", PUBLISH_CAM)
    auth.record(req, deny("hook answered HTTP 403"), NOW)
    assert auth.decide(req, NOW) == allow("token allows publish")
    # A token the JWT check refuses falls through to the cached hook answer.
    expired = request("publish", EXPIRED)
    auth.record(expired, allow("allowed by the auth hook"), NOW)
    assert auth.decide(expired, NOW) == allow("allowed by the auth hook")


def test_cache_off_asks_the_hook_every_time() -> None:
    auth = authorizer(hook=True, ttl=0)
    req = request("publish", None)
    auth.record(req, allow("allowed by the auth hook"), NOW)
    assert auth.decide(req, NOW) == NeedHook(req)


CONFIGS = st.fixed_dictionaries(
    {
        "hook": st.booleans(),
        "jwt_on": st.booleans(),
        "signer": st.booleans(),
        "read_auth": st.booleans(),
        "api_token": st.sampled_from([None, API_TOKEN]),
    }
)
TOKENS = st.one_of(
    st.none(),
    st.sampled_from([PUBLISH_CAM, READ_CAM, API_JWT, EXPIRED, PLAY_CAM, PLAY_OTHER, API_TOKEN]),
    st.text(max_size=50),
)


@given(CONFIGS, st.sampled_from(["publish", "read", "api"]), TOKENS)
def test_reasons_never_hold_the_token_or_the_key(
    config: dict[str, Any], action: str, token: str | None
) -> None:
    req = request(action, token, key="the-secret-stream-key")
    decision = authorizer(**config).decide(req, NOW)
    if isinstance(decision, NeedHook):
        assert config["hook"]
        assert decision.request is req
        return
    assert "the-secret-stream-key" not in decision.reason
    if token is not None and len(token) >= 8:
        assert token not in decision.reason


@given(CONFIGS, TOKENS)
def test_nothing_but_an_open_gateway_lets_a_stranger_publish(
    config: dict[str, Any], token: str | None
) -> None:
    # Only a JWT that grants publish of live/cam, or publishing being open, allows it without
    # asking the hook.
    auth = authorizer(**config)
    decision = auth.decide(request("publish", token), NOW)
    if isinstance(decision, Decision) and decision.allowed:
        assert auth.publish_open or (config["jwt_on"] and token == PUBLISH_CAM)
