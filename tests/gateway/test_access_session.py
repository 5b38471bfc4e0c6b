"""Access control of RTMP sessions (issue 14): a real hook server on loopback and real tokens,
the RTMP client being the sans-IO Connection over an in-memory stream."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import trio
import trio.testing
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from gateway.access import AccessControl
from gateway.config import Settings
from gateway.hub import Hub
from gateway.metrics import Metrics
from gateway.rtmp import events as ev
from gateway.rtmp.connection import Connection, Role
from gateway.server import Session
from tests.authhook import (
    Answer,
    HookServer,
    closed_port_url,
    json_answer,
    start_document,
    start_hook,
)
from tests.gateway.test_server import pump

SECRET = "x" * 40


@pytest.fixture
async def hook(nursery: trio.Nursery) -> AsyncIterator[HookServer]:
    yield await start_hook(nursery, HookServer())


async def start_access(nursery: trio.Nursery, **settings: Any) -> tuple[AccessControl, Hub]:
    access = AccessControl(Settings(**settings))
    await nursery.start(access.run)
    return access, Hub(takeover_after=access.settings.publish_takeover_after)


def open_session(
    nursery: trio.Nursery, access: AccessControl, hub: Hub, settings: Settings | None = None
) -> tuple[trio.abc.Stream, trio.Event]:
    client, server = trio.testing.memory_stream_pair()
    done = trio.Event()
    session = Session(
        server, "127.0.0.1:5000", settings or access.settings, hub, Metrics(), access=access
    )

    async def run() -> None:
        await session.run()
        done.set()

    nursery.start_soon(run)
    return client, done


async def publish(
    nursery: trio.Nursery, access: AccessControl, hub: Hub, name: str, app: str = "live"
) -> tuple[ev.Status, trio.abc.Stream, trio.Event]:
    client, done = open_session(nursery, access, hub)
    conn = Connection(role=Role.CLIENT)
    conn.connect(app, f"rtmp://127.0.0.1/{app}")
    conn.publish(name)
    events = await pump(client, conn, ev.Status)
    status = events[-1]
    assert isinstance(status, ev.Status)
    return status, client, done


async def test_hook_allows_and_maps_the_secret_key_to_the_public_name(
    nursery: trio.Nursery, hook: HookServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    hook.answer = lambda ask: json_answer(200, {"name": "alice"})
    access, hub = await start_access(nursery, auth_hook_url=hook.url)
    status, _, _ = await publish(nursery, access, hub, "s3cr3t-alice?token=t1&x=y")
    assert status.code == "NetStream.Publish.Start"
    assert hub.get("live", "alice") is not None and hub.get("live", "s3cr3t-alice") is None
    [ask] = hook.requests
    assert {k: v for k, v in ask.items() if k != "_headers"} == {
        "action": "publish",
        "protocol": "rtmp",
        "app": "live",
        "key": "s3cr3t-alice",
        "query": "token=t1&x=y",
        "ip": "127.0.0.1",
        "token": "t1",
    }
    assert ask["_headers"]["content-type"] == "application/json"
    assert "s3cr3t" not in caplog.text  # the secret key is in no log line


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (lambda ask: json_answer(403, {"error": "no"}), "hook answered HTTP 403"),
        (lambda ask: json_answer(500, {}), "hook answered HTTP 500"),
        (lambda ask: (200, b"<html>not json"), "not JSON"),
        (lambda ask: json_answer(200, {"name": "../../etc"}), "invalid name"),
        (lambda ask: None, "no answer within"),
    ],
    ids=["403", "500", "garbage", "bad-name", "hangs"],
)
async def test_a_refusing_or_broken_hook_denies_with_badname_and_closes(
    nursery: trio.Nursery, hook: HookServer, answer: Any, reason: str
) -> None:
    hook.answer = answer
    access, hub = await start_access(nursery, auth_hook_url=hook.url, auth_hook_timeout=0.5)
    status, _, done = await publish(nursery, access, hub, "s3cr3t")
    assert status.code == "NetStream.Publish.BadName"
    assert reason in status.description and "s3cr3t" not in status.description
    assert hub.publishers() == 0 and hub.get("live", "s3cr3t") is None
    with trio.fail_after(5):
        await done.wait()  # the connection is closed after the status: encoders fail visibly


async def test_a_hook_that_is_down_denies(nursery: trio.Nursery) -> None:
    access, hub = await start_access(nursery, auth_hook_url=closed_port_url())
    status, _, done = await publish(nursery, access, hub, "key")
    assert status.code == "NetStream.Publish.BadName"
    assert "auth hook unavailable" in status.description
    with trio.fail_after(5):
        await done.wait()


async def test_a_hanging_hook_delays_no_other_publisher(
    nursery: trio.Nursery, hook: HookServer
) -> None:
    hook.answer = lambda ask: None if ask["key"] == "slow" else (200, b"")
    access, hub = await start_access(nursery, auth_hook_url=hook.url, auth_hook_timeout=3)
    slow_status: list[ev.Status] = []

    async def slow() -> None:
        slow_status.append((await publish(nursery, access, hub, "slow"))[0])

    nursery.start_soon(slow)
    with trio.fail_after(5):
        while not hook.calls("publish"):
            await trio.sleep(0.01)
    started = trio.current_time()
    status, _, _ = await publish(nursery, access, hub, "fast")
    assert status.code == "NetStream.Publish.Start"
    assert trio.current_time() - started < 1.5  # not behind the hanging request (3 s)
    assert not slow_status
    with trio.fail_after(6):
        while not slow_status:
            await trio.sleep(0.05)
    assert slow_status[0].code == "NetStream.Publish.BadName"


async def test_answers_are_cached_per_request_when_asked(
    nursery: trio.Nursery, hook: HookServer
) -> None:
    access, hub = await start_access(nursery, auth_hook_url=hook.url, auth_cache_seconds=60)
    for _ in range(2):
        status, client, done = await publish(nursery, access, hub, "key")
        assert status.code == "NetStream.Publish.Start"
        await client.aclose()
        with trio.fail_after(5):
            await done.wait()
    assert len(hook.calls("publish")) == 1


def hs256(claims: dict[str, Any], secret: str = SECRET, **header: Any) -> str:
    return jwt.encode(claims, secret, algorithm="HS256", headers=header or None)


@pytest.mark.parametrize(
    ("token", "allowed"),
    [
        (hs256({"permissions": [{"action": "publish", "path": "live/cam"}]}), True),
        (hs256({"permissions": [{"action": "publish", "path": "live/*"}]}), True),
        (hs256({"permissions": [{"action": "publish", "path": "live/other"}]}), False),
        (hs256({"permissions": [{"action": "read", "path": "live/cam"}]}), False),
        (hs256({"permissions": [{"action": "publish", "path": "*"}], "exp": 1}), False),
        (hs256({"permissions": [{"action": "publish", "path": "*"}]}, "y" * 40), False),
        ("eyJhbGciOiJub25lIn0.eyJwZXJtaXNzaW9ucyI6W3siYWN0aW9uIjoicHVibGlzaCJ9XX0.", False),
        ("A" * 100_000, False),
    ],
    ids=["exact", "pattern", "other-stream", "read-only", "expired", "forged", "alg-none", "100KB"],
)
async def test_jwt_on_the_stream_key(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, token: str, allowed: bool
) -> None:
    access, hub = await start_access(nursery, auth_jwt_secret=SECRET)
    started = trio.current_time()
    status, _, _ = await publish(nursery, access, hub, f"cam?token={token}")
    # Decided without waiting on any timer (the clock only moves when every task waits on one).
    assert trio.current_time() == started
    if allowed:
        assert status.code == "NetStream.Publish.Start"
        assert hub.get("live", "cam") is not None
    else:
        assert status.code == "NetStream.Publish.BadName"
        assert token[:20] not in status.description
        assert hub.publishers() == 0


async def test_jwt_on_the_connect_url(nursery: trio.Nursery) -> None:
    access, hub = await start_access(nursery, auth_jwt_secret=SECRET)
    token = hs256({"permissions": [{"action": "publish", "path": "live/*"}]})
    client, _ = open_session(nursery, access, hub)
    conn = Connection(role=Role.CLIENT)
    conn.connect(f"live?token={token}", f"rtmp://127.0.0.1/live?token={token}")
    conn.publish("cam")
    events = await pump(client, conn, ev.Status)
    assert isinstance(events[-1], ev.Status) and events[-1].code == "NetStream.Publish.Start"


async def test_takeover_of_a_silent_name_needs_the_right_to_publish_it(
    nursery: trio.Nursery, hook: HookServer
) -> None:
    def answer(ask: dict[str, Any]) -> Answer:
        if ask["key"] in ("good", "good-too"):
            return json_answer(200, {"name": "cam"})
        return json_answer(403, {})

    hook.answer = answer
    access, hub = await start_access(
        nursery, auth_hook_url=hook.url, publish_takeover_after=0.5, idle_timeout=600
    )
    first, _, _ = await publish(nursery, access, hub, "good")
    assert first.code == "NetStream.Publish.Start"
    stream = hub.get("live", "cam")
    assert stream is not None and stream.publisher is not None
    owner = stream.publisher.connection_id
    await trio.sleep(1)  # the first publisher sent nothing since: its name may be taken over
    intruder, _, _ = await publish(nursery, access, hub, "cam")  # the public name, no right
    assert intruder.code == "NetStream.Publish.BadName"
    assert stream.publisher is not None and stream.publisher.connection_id == owner
    allowed, _, _ = await publish(nursery, access, hub, "good-too")  # may publish "cam"
    assert allowed.code == "NetStream.Publish.Start"
    assert stream.publisher is not None and stream.publisher.connection_id != owner


async def test_read_auth_refuses_rtmp_play_without_a_token(nursery: trio.Nursery) -> None:
    access, hub = await start_access(nursery, auth_jwt_secret=SECRET, read_auth=True)
    client, done = open_session(nursery, access, hub)
    conn = Connection(role=Role.CLIENT)
    conn.connect("live", "rtmp://127.0.0.1/live")
    conn.play("cam")
    events = await pump(client, conn, ev.Status)
    status = events[-1]
    assert isinstance(status, ev.Status) and status.code == "NetStream.Play.Failed"
    assert "not allowed to play live/cam" in status.description
    with trio.fail_after(5):
        await done.wait()


async def test_read_auth_allows_rtmp_play_with_a_read_token(nursery: trio.Nursery) -> None:
    access, hub = await start_access(
        nursery, auth_jwt_secret=SECRET, read_auth=True, play_wait_timeout=0
    )
    token = hs256({"permissions": [{"action": "read", "path": "live/cam"}]})
    client, _ = open_session(nursery, access, hub)
    conn = Connection(role=Role.CLIENT)
    conn.connect("live", "rtmp://127.0.0.1/live")
    conn.play(f"cam?token={token}")
    events = await pump(client, conn, ev.Status)
    status = events[-1]
    # Allowed: the play goes on (nothing is live, so the usual answer for a missing stream).
    assert isinstance(status, ev.Status) and status.code != "NetStream.Play.Failed"


def rsa_jwks(kid: str) -> tuple[Any, bytes]:
    """A private RSA key and the JWKS (JSON) that publishes its public half."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid=kid, alg="RS256", use="sig")
    return key, json.dumps({"keys": [jwk]}).encode()


@pytest.mark.parametrize("where", ["file", "url"])
async def test_rs256_tokens_checked_against_a_jwks_file_or_url(
    nursery: trio.Nursery, tmp_path: Path, where: str
) -> None:
    key, jwks = rsa_jwks("k1")
    hits: list[str] = []
    if where == "file":
        source = tmp_path / "jwks.json"
        source.write_bytes(jwks)
        location = str(source)
    else:
        location = await start_document(nursery, jwks, hits)
    access, hub = await start_access(nursery, auth_jwks=location)
    claims = {"permissions": [{"action": "publish", "path": "live/*"}]}
    good = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})
    other_key, _ = rsa_jwks("k1")
    forged = jwt.encode(claims, other_key, algorithm="RS256", headers={"kid": "k1"})
    status, _, _ = await publish(nursery, access, hub, f"cam?token={good}")
    assert status.code == "NetStream.Publish.Start"
    status, _, _ = await publish(nursery, access, hub, f"cam2?token={forged}")
    assert status.code == "NetStream.Publish.BadName"
    assert "signature" in status.description
    assert hits == ([] if where == "file" else ["/jwks.json"])  # fetched once, at start


async def test_a_jwks_that_cannot_be_loaded_stops_the_start(nursery: trio.Nursery) -> None:
    access = AccessControl(Settings(auth_jwks=closed_port_url().replace("/auth", "/jwks")))
    with pytest.raises(OSError, match="auth_jwks: cannot load"):
        await nursery.start(access.run)
