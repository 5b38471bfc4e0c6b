"""Push relays: the ``push`` grammar, target URLs, the backoff schedule, and relays driven in
memory (autojump clock) against a failing opener and against a real gateway RTMP session."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from functools import partial

import pytest
import trio
import trio.testing

from gateway.config import ConfigError, load_settings
from gateway.hub import Hub, HubItem, SessionEnd, SessionStart, Stream
from gateway.metrics import Metrics
from gateway.relay import Relay, RelayManager
from gateway.relay_config import Backoff, PushRule, RelayConfig, Target, parse_push, parse_target
from gateway.server import Session
from segmenter.flv import FlvTag, TagType
from tests.conftest import test_settings

META = FlvTag(TagType.SCRIPT, 0, b"\x02\x00\x0aonMetaData\x08\x00\x00\x00\x00\x00\x00\x09")
AVC_HEADER = FlvTag(TagType.VIDEO, 0, bytes([0x17, 0x00, 0, 0, 0, 1, 0x64, 0, 0x1F]))
AAC_HEADER = FlvTag(TagType.AUDIO, 0, bytes([0xAF, 0x00, 0x12, 0x10]))


def frame(ts: int, key: bool) -> FlvTag:
    return FlvTag(TagType.VIDEO, ts, bytes([0x17 if key else 0x27, 1, 0, 0, 0]) + bytes(200))


def audio(ts: int) -> FlvTag:
    return FlvTag(TagType.AUDIO, ts, b"\xaf\x01" + bytes(30))


# ---- grammar --------------------------------------------------------------------------------


def test_parse_push_entries_and_targets() -> None:
    text = (
        " live=rtmp://b.example/live/{key},live/cam=rtmps://x.example:4443/app/inst/s3cr3t?auth=1\n"
        "other=rtmp://[::1]/{app}/{key} "
    )
    rules = parse_push(text)
    assert rules == [
        PushRule("live", None, "rtmp://b.example/live/{key}"),
        PushRule("live", "cam", "rtmps://x.example:4443/app/inst/s3cr3t?auth=1"),
        PushRule("other", None, "rtmp://[::1]/{app}/{key}"),
    ]
    assert rules[0].matches("live", "any") and not rules[0].matches("other", "any")
    assert rules[1].matches("live", "cam") and not rules[1].matches("live", "cam2")
    assert parse_target(rules[0].target_url("live", "k1")) == Target(
        "rtmp", "b.example", 1935, "live", "k1", "rtmp://b.example/live"
    )
    t = parse_target(rules[1].target_url("live", "cam"))
    assert t == Target(
        "rtmps", "x.example", 4443, "app/inst", "s3cr3t?auth=1", "rtmps://x.example:4443/app/inst"
    )
    # The stream name may be a platform's secret key: shown only when it is our own key.
    assert t.label("cam") == "rtmps://x.example:4443/app/inst/<redacted>"
    assert parse_target("rtmp://b.example/live/cam").label("cam") == "rtmp://b.example/live/cam"
    ipv6 = parse_target(rules[2].target_url("other", "k"))
    assert (ipv6.host, ipv6.port, ipv6.tc_url) == ("::1", 1935, "rtmp://[::1]/other")
    assert parse_target("rtmps://h/a/b").port == 443
    assert parse_push("") == [] and parse_push(" , ") == []


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        ("live", "expected SELECTOR=URL"),
        ("live=", "expected SELECTOR=URL"),
        ("=rtmp://h/a/b", "selector must be APP or APP/KEY"),
        ("a/b/c=rtmp://h/a/b", "selector must be APP or APP/KEY"),
        ("li.ve=rtmp://h/a/b", "selector must be APP or APP/KEY"),
        ("live=http://h/a/b", "only rtmp:// and rtmps://"),
        ("live=rtmp:///a/b", "no host"),
        ("live=rtmp://h/onlyapp", "the path must be /APP/STREAM"),
        ("live=rtmp://h:99999/a/b", "invalid port"),
        ("live=rtmp://h/a/{name}", "only {app} and {key} placeholders"),
    ],
)
def test_parse_push_errors_name_the_entry(entry: str, why: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_push(f"live=rtmp://ok.example/live/{{key}} {entry}")
    assert f"push: entry {entry!r}: " in str(info.value)
    assert why in str(info.value)


def test_settings_validate_push_at_load() -> None:
    with pytest.raises(ConfigError, match="push: entry 'live=ftp://h/a/b'"):
        load_settings(env={}, overrides={"push": "live=ftp://h/a/b"})
    ok = load_settings(env={"GATEWAY_PUSH": "live=rtmp://h/live/{key}"})
    assert ok.push == "live=rtmp://h/live/{key}"


def test_backoff_schedule() -> None:
    b = Backoff()
    assert [b.delay(n, 0.5) for n in range(1, 9)] == [1, 2, 4, 8, 16, 30, 30, 30]
    assert b.delay(1, 0.0) == pytest.approx(0.8)  # -20 % jitter
    assert b.delay(3, 0.999999) == pytest.approx(4.8, abs=1e-4)  # +20 % jitter
    assert b.delay(5, 0.999999) <= 30 and b.delay(10**6, 0.999999) == 30  # capped, no overflow
    quick = Backoff(initial=0.1, maximum=0.5, factor=3, jitter=0)
    assert [quick.delay(n, 0.7) for n in range(1, 5)] == pytest.approx([0.1, 0.3, 0.5, 0.5])


# ---- relays in memory -----------------------------------------------------------------------


def publish_start(hub: Hub, conn_id: int) -> Stream:
    return hub.start_publish("live", "cam", peer="test", connection_id=conn_id, query={})


async def test_refused_target_is_retried_with_backoff_while_live(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub, metrics = Hub(), Metrics()
    attempts: list[float] = []

    async def refuse(target: Target) -> trio.abc.Stream:
        attempts.append(trio.current_time())
        raise ConnectionRefusedError(111, "Connection refused")

    stream = publish_start(hub, 1)
    config = RelayConfig(backoff=Backoff(jitter=0.2))
    relay = Relay(
        stream, parse_target("rtmp://t/live/cam"), hub, metrics, config, refuse, rand=lambda: 0.5
    )
    sub, rx = hub.attach(stream, "relay", config.queue)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(relay.run, sub, rx)
        await trio.sleep(40)
        t0 = attempts[0]
        assert [round(t - t0, 6) for t in attempts] == [0, 1, 3, 7, 15, 31]
        assert relay.state == "backoff" and relay.reconnects == 5
        assert relay.last_error is not None and "Connection refused" in relay.last_error
        label = 'relay_reconnects_total{target="rtmp://t/live/cam"}'
        assert f"{label} 5.0" in metrics_text(metrics)
        # Tags published meanwhile are consumed, not left to overflow the queue.
        for i in range(3 * config.queue):
            stream.publish(audio(i))
            if i % 500 == 0:
                await trio.sleep(0.01)  # the autojump clock moves only once the relay is idle
        await trio.sleep(1)
        assert sub.dropped == 0
        # The source leaves: no more attempts until it is back.
        hub.end_publish(stream, 1)
        await trio.sleep(100)
        assert relay.state == "stopped" and len(attempts) == 6
        publish_start(hub, 2)
        await trio.sleep(0.5)
        assert len(attempts) == 7 and attempts[-1] == pytest.approx(trio.current_time() - 0.5)
        nursery.cancel_scope.cancel()
    assert stream.subscribers == set()


def metrics_text(metrics: Metrics) -> str:
    from prometheus_client import generate_latest

    return generate_latest(metrics.registry).decode()


class Target_B:
    """A second gateway's hub reached through real RTMP sessions over memory streams."""

    def __init__(self, nursery: trio.Nursery) -> None:
        self.settings = test_settings()
        self.hub = Hub(on_stream_started=self._record)
        self.metrics = Metrics()
        self.nursery = nursery
        self.items: list[HubItem] = []
        self.connections = 0
        self.refuse_next = 0
        self._rx: trio.MemoryReceiveChannel[HubItem] | None = None

    def _record(self, stream: Stream) -> None:
        _, self._rx = self.hub.attach(stream, "recorder", 100_000)

    def drain(self) -> list[HubItem]:
        while self._rx is not None:
            try:
                self.items.append(self._rx.receive_nowait())
            except trio.WouldBlock:
                break
        return self.items

    async def open(self, target: Target) -> trio.abc.Stream:
        self.connections += 1
        if self.refuse_next:
            self.refuse_next -= 1
            raise ConnectionRefusedError(111, "refused")
        ours, theirs = trio.testing.memory_stream_pair()
        session = Session(
            theirs, f"relay#{self.connections}", self.settings, self.hub, self.metrics
        )
        self.nursery.start_soon(self._serve, session)
        return ours

    @staticmethod
    async def _serve(session: Session) -> None:
        # gateway.server lets a write to a peer that already closed escape as an ExceptionGroup
        # (serve_rtmp logs it as an internal error); the relay closing after deleteStream, as
        # FFmpeg does, triggers it. Not the relay's concern here.
        try:
            await session.run()
        except* trio.BrokenResourceError:
            pass


async def wait_for(cond: Callable[[], bool], timeout: float = 30) -> None:
    with trio.fail_after(timeout):
        while not cond():
            await trio.sleep(0.01)


async def test_relay_to_gateway_session_follows_publish_sessions(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = Hub(gop_cache_bytes=1 << 20)
    async with trio.open_nursery() as nursery:
        b = Target_B(nursery)
        b.refuse_next = 1  # the first attempt fails: backoff, then a clean start
        manager = RelayManager(
            test_settings(
                push="live=rtmp://b.example/live/{key}, live/cam=rtmp://b.example/live/{key}"
            ),
            hub,
            Metrics(),
            opener=b.open,
        )
        stream = publish_start(hub, 1)
        manager.start(stream, nursery)
        assert len(manager.relays("live/cam")) == 1  # two rules, one distinct target
        stamps = itertools.count(100_000, 20)
        for tag in (META, AVC_HEADER, AAC_HEADER):
            stream.publish(tag)
        for i in range(10):  # published while the relay is connecting: only the GOP counts
            stream.publish(frame(next(stamps), key=i % 5 == 0))
            stream.publish(audio(next(stamps)))
        await wait_for(lambda: manager.relays_for("live/cam")[0]["state"] == "publishing")
        info = manager.relays_for("live/cam")[0]
        assert info["reconnects"] == 1 and "refused" in info["last_error"]
        assert info["target"] == "rtmp://b.example/live/cam" and info["connected_since"]
        for i in range(10):
            stream.publish(frame(next(stamps), key=i % 5 == 0))
            stream.publish(audio(next(stamps)))
        await wait_for(lambda: sum(isinstance(t, FlvTag) for t in b.drain()) >= 3 + 10 + 20)
        got = [t for t in b.drain() if isinstance(t, FlvTag)]
        assert isinstance(b.items[0], SessionStart)
        assert got[:3] == [META, AVC_HEADER, AAC_HEADER]  # @setDataFrame stripped again by B
        assert got[3].body[0] == 0x17  # starts at the cached keyframe, timeline rebased to 0
        assert got[3].timestamp == 0
        stamps_b = [t.timestamp for t in got[3:]]
        assert stamps_b == sorted(stamps_b) and stamps_b[-1] == (40 * 19 + 20) - 40 * 5
        # The publisher leaves: the relay unpublishes, B ends its session.
        hub.end_publish(stream, 1)
        await wait_for(lambda: isinstance(b.drain()[-1], SessionEnd))
        await wait_for(lambda: manager.relays_for("live/cam")[0]["state"] == "stopped")
        # Next session: a new connection, a new session at B, no backoff involved.
        stream = publish_start(hub, 2)
        for tag in (AVC_HEADER, AAC_HEADER, frame(5, key=True), audio(6)):
            stream.publish(tag)
        await wait_for(
            lambda: (
                len(b.drain()) > 0 and isinstance(b.items[-1], FlvTag) and b.items[-1].timestamp > 0
            )
        )
        assert b.connections == 3
        assert manager.relays_for("live/cam")[0]["bytes_sent"] > 20 * 200
        nursery.cancel_scope.cancel()


async def test_rtmps_target_that_does_not_speak_tls_fails_cleanly() -> None:
    """The TLS path is real (trio.SSLStream, default context): a plain TCP peer is an error."""

    async def not_tls(sock: trio.SocketStream) -> None:
        await sock.send_all(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        await sock.aclose()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, not_tls, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        hub = Hub()
        stream = publish_start(hub, 1)
        manager = RelayManager(
            test_settings(push=f"live=rtmps://127.0.0.1:{port}/live/{{key}}"), hub, Metrics()
        )
        manager.start(stream, nursery)
        await wait_for(lambda: manager.relays_for("live/cam")[0]["state"] == "backoff", 10)
        error = manager.relays_for("live/cam")[0]["last_error"]
        assert error.startswith("connection failed:") and "SSL" in error, error
        nursery.cancel_scope.cancel()
