"""Signed playback tokens: round trip, expiry, binding to one stream, tampering, format."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.auth import Decision, PlaybackSigner, new_session_id

SECRET = b"playback-secret-0123456789abcdef"
EXPIRES = 1_800_000_000
SIGNER = PlaybackSigner(SECRET)
NAMES = st.from_regex(r"[A-Za-z0-9_-]{1,128}", fullmatch=True)
SESSIONS = st.from_regex(r"[A-Za-z0-9_-]{0,64}", fullmatch=True)
INVALID = Decision(False, "playback token invalid")


def test_vector() -> None:
    # The format, byte for byte: a change to it breaks every link already handed out.
    message = b"p1\0live\0cam\0" + str(EXPIRES).encode() + b"\0sess"
    mac = hmac.new(SECRET, message, hashlib.sha256).digest()[:16]
    expected = f"p1~{EXPIRES}~sess~" + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    assert SIGNER.sign("live", "cam", EXPIRES, "sess") == expected


def test_round_trip() -> None:
    session = new_session_id()
    token = SIGNER.sign("live", "cam", EXPIRES, session)
    decision = SIGNER.verify(token, "live", "cam", EXPIRES - 1)
    assert decision == Decision(True, "playback token valid", session=session)


def test_no_session() -> None:
    token = SIGNER.sign("live", "cam", EXPIRES)
    assert SIGNER.verify(token, "live", "cam", 0) == Decision(True, "playback token valid")


def test_expiry() -> None:
    token = SIGNER.sign("live", "cam", EXPIRES, "s")
    assert SIGNER.verify(token, "live", "cam", EXPIRES - 0.001).allowed
    assert SIGNER.verify(token, "live", "cam", EXPIRES) == Decision(False, "playback token expired")
    assert SIGNER.verify(token, "live", "cam", EXPIRES + 86400).reason == "playback token expired"


@pytest.mark.parametrize(("app", "key"), [("live", "cam2"), ("live2", "cam"), ("cam", "live")])
def test_other_stream(app: str, key: str) -> None:
    token = SIGNER.sign("live", "cam", EXPIRES)
    assert SIGNER.verify(token, app, key, 0) == INVALID


def test_app_and_key_boundary_is_bound() -> None:
    # "a" + "bc" and "ab" + "c" must not sign the same message.
    token = SIGNER.sign("a", "bc", EXPIRES)
    assert SIGNER.verify(token, "ab", "c", 0) == INVALID


def test_other_secret() -> None:
    token = PlaybackSigner(b"another-secret").sign("live", "cam", EXPIRES)
    assert SIGNER.verify(token, "live", "cam", 0) == INVALID


def test_extending_the_expiry_is_refused() -> None:
    token = SIGNER.sign("live", "cam", EXPIRES, "s")
    later = token.replace(str(EXPIRES), str(EXPIRES + 3600))
    assert later != token
    assert SIGNER.verify(later, "live", "cam", 0) == INVALID


def test_session_is_bound() -> None:
    token = SIGNER.sign("live", "cam", EXPIRES, "aaaa")
    assert SIGNER.verify(token.replace("~aaaa~", "~bbbb~"), "live", "cam", 0) == INVALID
    assert SIGNER.verify(token.replace("~aaaa~", "~~"), "live", "cam", 0) == INVALID


@settings(max_examples=300)
@given(NAMES, NAMES, SESSIONS, st.data())
def test_tampering_any_character_is_refused(
    app: str, key: str, session: str, data: st.DataObject
) -> None:
    token = SIGNER.sign(app, key, EXPIRES, session)
    index = data.draw(st.integers(0, len(token) - 1))
    replacement = data.draw(st.characters(codec="ascii"))
    tampered = token[:index] + replacement + token[index + 1 :]
    if tampered != token:
        assert SIGNER.verify(tampered, app, key, 0) == INVALID


@given(NAMES, NAMES, SESSIONS, st.integers(1, 10**12 - 1))
def test_format(app: str, key: str, session: str, expires: int) -> None:
    token = SIGNER.sign(app, key, expires, session)
    assert re.fullmatch(r"[A-Za-z0-9_.~-]+", token)
    assert PlaybackSigner.looks_like_playback_token(token)
    assert token == f"p1~{expires}~{session}~{token.rsplit('~', 1)[1]}"
    assert len(token.rsplit("~", 1)[1]) == 22
    assert SIGNER.verify(token, app, key, expires - 1).allowed


def test_short() -> None:
    token = SIGNER.sign("live", "cam", 99_999_999_999, new_session_id())
    assert len(token) < 80


def test_new_session_id() -> None:
    ids = {new_session_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{16}", session) for session in ids)


@pytest.mark.parametrize(
    ("app", "key", "expires", "session"),
    [
        ("", "cam", EXPIRES, ""),
        ("live", "a/b", EXPIRES, ""),
        ("live", "a" * 129, EXPIRES, ""),
        ("live", "cam", 0, ""),
        ("live", "cam", -5, ""),
        ("live", "cam", 10**12, ""),
        ("live", "cam", EXPIRES, "a~b"),
        ("live", "cam", EXPIRES, "a" * 65),
    ],
)
def test_sign_refuses_what_verify_could_not_read(
    app: str, key: str, expires: int, session: str
) -> None:
    with pytest.raises(ValueError):
        SIGNER.sign(app, key, expires, session)


def test_empty_secret_refused() -> None:
    with pytest.raises(ValueError):
        PlaybackSigner(b"")


@pytest.mark.parametrize(
    "token",
    [
        "",
        "p1~",
        "p1~~~",
        "p1~" + "9" * 13 + "~s~" + "A" * 22,  # expires too long
        f"p1~0{EXPIRES}~s~" + "A" * 22,  # leading zero: not the canonical form we sign
        f"p2~{EXPIRES}~s~" + "A" * 22,
        f"p1~{EXPIRES}~s~" + "A" * 21,
        f"p1~{EXPIRES}~s~" + "A" * 23,
        f"p1~{EXPIRES}~s~" + "A" * 22 + "~",
        "p1~" + "x" * 100_000,
        "p1~\u00e9~s~" + "A" * 22,
        "a.b.c",
    ],
)
def test_malformed_is_refused_quietly(token: str) -> None:
    assert SIGNER.verify(token, "live", "cam", 0) == INVALID


def test_invalid_names_at_verify() -> None:
    token = SIGNER.sign("live", "cam", EXPIRES)
    assert SIGNER.verify(token, "live", "cam\0", 0) == INVALID
    assert SIGNER.verify(token, "", "", 0) == INVALID


@given(st.text(max_size=200), st.text(max_size=20), st.text(max_size=20))
def test_garbage_never_raises(token: str, app: str, key: str) -> None:
    decision = SIGNER.verify(token, app, key, 0)
    assert decision == INVALID


@pytest.mark.parametrize(
    ("token", "looks"),
    [("p1~1~~x", True), ("p1~", True), ("p1", False), ("xp1~", False), ("a.b.c", False)],
)
def test_looks_like_playback_token(token: str, looks: bool) -> None:
    assert PlaybackSigner.looks_like_playback_token(token) is looks


def test_mac_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr("gateway.auth.playback.hmac.compare_digest", spy)
    token = SIGNER.sign("live", "cam", EXPIRES)
    assert SIGNER.verify(token, "live", "cam", 0).allowed
    assert calls == [(token.rsplit("~", 1)[1], token.rsplit("~", 1)[1])]
