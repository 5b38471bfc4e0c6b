"""Push relays: republish live streams to other RTMP servers, as an RTMP client.

One long-lived task per (stream, target), started when the stream gets its first publisher. It
follows the source's publish sessions through its hub queue: on SessionStart it connects and
publishes (docs/protocol.md §4), sends metadata, sequence headers and the cached GOP so the target
starts at a keyframe, then live tags; on SessionEnd it unpublishes and waits for the next session.
A target that refuses or drops is retried with capped, jittered exponential backoff while the
source is live. Slow targets never slow the publisher: the queue overflows into a Gap and the
relay skips to the next keyframe (gateway.player.PlayerFeed, the player's policy).
"""

from __future__ import annotations

import logging
import math
import random
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

import trio

from gateway.config import ConfigError, Settings
from gateway.hub import (
    Gap,
    Hub,
    HubItem,
    SessionEnd,
    SessionStart,
    Stream,
    Subscriber,
    is_keyframe,
)
from gateway.metrics import Metrics
from gateway.player import FLUSH_EVERY, PlayerFeed
from gateway.relay_config import RelayConfig, Target, parse_push, parse_target
from gateway.reload import split_changes
from gateway.rtmp import ertmp
from gateway.rtmp import events as ev
from gateway.rtmp.client import set_data_frame
from gateway.rtmp.connection import NEED_DATA, Connection, Role
from gateway.rtmp.errors import ProtocolError
from gateway.rtmp.limits import Limits
from gateway.tls import client_context, describe_tls_error
from segmenter.flv import FlvTag, TagType

log = logging.getLogger("gateway.relay")

RECEIVE_SIZE = 16 * 1024  # a target only sends acks, pings and status
_ON_METADATA = b"\x02\x00\x0aonMetaData"  # AMF0 string "onMetaData" (docs/protocol.md §3)
_NET_ERRORS = (OSError, trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError)


def _why(exc: BaseException) -> str:
    """trio wraps TLS and socket errors in BrokenResourceError: name the cause too."""
    tls = describe_tls_error(exc)
    if tls is not None:
        return tls  # e.g. "TLS certificate not accepted: self-signed certificate"
    cause = exc.__cause__ or exc.__context__
    return f"{exc!r} ({cause!r})" if cause is not None else repr(exc)


Opener = Callable[[Target], Awaitable[trio.abc.Stream]]


async def open_target(target: Target, context: ssl.SSLContext | None = None) -> trio.abc.Stream:
    """TCP, plus TLS for rtmps:// with SNI and the certificate checked for the host against
    ``context`` (default: the system's CAs)."""
    sock = await trio.open_tcp_stream(target.host, target.port)
    if target.scheme != "rtmps":
        return sock
    context = context if context is not None else ssl.create_default_context()
    tls = trio.SSLStream(sock, context, server_hostname=target.host)
    try:
        await tls.do_handshake()
    except BaseException:
        await trio.aclose_forcefully(sock)
        raise
    return tls


def relay_config(settings: Settings) -> RelayConfig:
    """The relays' configuration out of the gateway's settings."""
    limits = Limits(max_message_size=settings.max_message_size)
    return RelayConfig(send_timeout=settings.send_timeout, limits=limits)


def target_opener(settings: Settings) -> Opener:
    """open_target trusting the system's CAs and tls_ca_file (one context for every relay)."""
    return partial(open_target, context=client_context(settings))


class RelayFailed(Exception):
    """The target refused, dropped or stalled; the message is the relay's last_error."""


class Reconnect(Exception):
    """The target asked us to reconnect (E-RTMP v2 ReconnectRequest), to ``target``."""

    def __init__(self, target: Target) -> None:
        super().__init__("reconnect requested")
        self.target = target


def reconnect_target(current: Target, event: ev.ReconnectRequest) -> Target:
    """Where a ReconnectRequest sends a relay: its tcUrl (resolved) with our stream name, or the
    same target. A tcUrl we cannot use keeps the current target (and is logged)."""
    if event.tc_url is None or event.tc_url == current.tc_url:
        return current
    try:
        return parse_target(f"{event.tc_url.rstrip('/')}/{current.name}")
    except ConfigError as exc:
        log.warning("reconnect request to an unusable tcUrl ignored: %s", exc)
        return current


@dataclass(eq=False)
class _Link:
    sock: trio.abc.Stream
    conn: Connection
    send_timeout: float
    on_sent: Callable[[int], None]
    stream_id: int = 0
    failure: str | None = None
    reconnect: ev.ReconnectRequest | None = None  # asked by the target; done at a keyframe
    lock: trio.StrictFIFOLock = field(default_factory=trio.StrictFIFOLock)

    async def flush(self) -> None:
        async with self.lock:
            out = self.conn.data_to_send()
            if out:
                with trio.fail_after(self.send_timeout):
                    await self.sock.send_all(out)
                self.on_sent(len(out))


def _setup_done(event: ev.Event) -> int | None:
    """Stream id once the target said Publish.Start; raises RelayFailed on a refusal."""
    if isinstance(event, ev.ConnectResult) and not event.success:
        raise RelayFailed(f"connect refused: {event.code} {event.description}".strip())
    if isinstance(event, ev.CallFailed) and event.command in ("createStream", "publish"):
        raise RelayFailed(f"{event.command} refused: {event.code} {event.description}".strip())
    if isinstance(event, ev.Status):
        if event.level == "error":
            raise RelayFailed(f"publish refused: {event.code} {event.description}".strip())
        if event.code == "NetStream.Publish.Start":
            return event.stream_id
    if isinstance(event, ev.ConnectionClosed):
        raise RelayFailed("target closed the connection during setup")
    return None


@dataclass(eq=False)
class Relay:
    """One stream pushed to one target; its fields are what the API shows."""

    stream: Stream
    target: Target
    hub: Hub
    metrics: Metrics
    config: RelayConfig
    opener: Opener = open_target
    rand: Callable[[], float] = random.random
    state: str = "stopped"  # connecting, publishing, backoff, stopped
    connected_since: float | None = None  # wall clock of the current Publish.Start
    reconnects: int = 0
    bytes_sent: int = 0
    dropped: int = 0
    last_error: str | None = None
    failures: int = 0  # consecutive, for the backoff
    url: str = ""  # the rule's target URL, placeholders filled in (what a reload compares)
    # Cancelled when a reload removes the relay's rule; the other relays go on.
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    _feed: PlayerFeed | None = None

    @property
    def label(self) -> str:
        return self.target.label(self.stream.key)

    def _fields(self, event: str, **more: object) -> dict[str, object]:
        """The facts of a log line about this relay (JSON logs: gateway.logs)."""
        stream = self.stream
        return {"event": event, "app": stream.app, "key": stream.key, "target": self.label, **more}

    def describe(self) -> dict[str, Any]:
        since = self.connected_since
        return {
            "target": self.label,
            "state": self.state,
            "connected_since": (
                datetime.fromtimestamp(since, UTC).isoformat(timespec="seconds") if since else None
            ),
            "reconnects": self.reconnects,
            "bytes_sent": self.bytes_sent,
            "dropped": self.dropped + (self._feed.dropped if self._feed else 0),
            "last_error": self.last_error,
        }

    async def run(self, sub: Subscriber, rx: trio.MemoryReceiveChannel[HubItem]) -> None:
        """Follow the source's sessions until cancelled (gateway shutdown)."""
        try:
            while True:
                if self.stream.publisher is None:
                    self.state = "stopped"
                    async for item in rx:
                        if isinstance(item, SessionStart):
                            break
                    else:
                        return  # our queue was closed
                await self._follow_session(rx)
        finally:
            self.state = "stopped"
            self.hub.detach(self.stream, sub)
            rx.close()

    async def _follow_session(self, rx: trio.MemoryReceiveChannel[HubItem]) -> None:
        first = True
        while True:
            if not first:
                self.reconnects += 1
                self.metrics.relay_reconnects.labels(self.label).inc()
            first = False
            try:
                if await self._attempt(rx):
                    return
            except Reconnect as exc:
                # E-RTMP v2: at once (no backoff), to where the target said.
                log.info(
                    "relay %s -> %s: reconnecting on the target's request to %s",
                    self.stream.path, self.label, exc.target.label(self.stream.key),
                )  # fmt: skip
                self.target = exc.target
                continue
            except RelayFailed as exc:
                self.last_error = str(exc)
            self.failures += 1
            delay = self.config.backoff.delay(self.failures, self.rand())
            self.state = "backoff"
            log.warning(
                "relay %s -> %s: %s; retrying in %.1f s",
                self.stream.path,
                self.label,
                self.last_error,
                delay,
                extra=self._fields("relay_down", cause=self.last_error, retry_in=round(delay, 3)),
            )
            if await self._discard(rx, trio.current_time() + delay):
                return

    async def _discard(self, rx: trio.MemoryReceiveChannel[HubItem], deadline: float) -> bool:
        """Drop queued tags until ``deadline``; True if the source's session ended first."""
        with trio.move_on_at(deadline):
            async for item in rx:
                if isinstance(item, SessionEnd):
                    return True
            return True
        return False

    async def _attempt(self, rx: trio.MemoryReceiveChannel[HubItem]) -> bool:
        """Connect and publish; True when the source's session ended. Raises RelayFailed."""
        self.state = "connecting"
        ended = False
        link: _Link | None = None
        failure: RelayFailed | None = None
        async with trio.open_nursery() as nursery:

            async def watch_source() -> None:
                nonlocal ended
                ended = await self._discard(rx, math.inf)
                nursery.cancel_scope.cancel()  # the source left: stop connecting

            nursery.start_soon(watch_source)
            try:
                link = await self._open()
            except RelayFailed as exc:
                failure = exc
            nursery.cancel_scope.cancel()
        if failure is not None:
            raise failure
        if ended or link is None:
            if link is not None:
                await trio.aclose_forcefully(link.sock)
            return True
        return await self._publish(link, rx)

    async def _open(self) -> _Link:
        t = self.target
        try:
            with trio.fail_after(self.config.setup_timeout):
                sock = await self.opener(t)
                try:
                    conn = Connection(Role.CLIENT, self.config.limits)
                    conn.connect(t.app, t.tc_url, extra=ertmp.client_properties())
                    conn.publish(t.name)
                    link = _Link(sock, conn, self.config.send_timeout, self._sent)
                    while True:
                        await link.flush()
                        conn.receive_data(await sock.receive_some(RECEIVE_SIZE))
                        while (event := conn.next_event()) is not NEED_DATA:
                            assert not isinstance(event, type)
                            sid = _setup_done(event)
                            if sid is not None:
                                link.stream_id = sid
                                return link
                except BaseException:
                    await trio.aclose_forcefully(sock)
                    raise
        except trio.TooSlowError:
            raise RelayFailed(f"no Publish.Start within {self.config.setup_timeout} s") from None
        except _NET_ERRORS as exc:
            raise RelayFailed(f"connection failed: {_why(exc)}") from None
        except ProtocolError as exc:
            raise RelayFailed(f"protocol error: {exc}") from None  # names the reason, and detail

    def _sent(self, n: int) -> None:
        self.bytes_sent += n
        self.metrics.relay_bytes_sent.labels(self.label).inc(n)

    async def _publish(self, link: _Link, rx: trio.MemoryReceiveChannel[HubItem]) -> bool:
        # Synchronously: drop what queued up during setup, then start from the hub's snapshot
        # (metadata, headers, GOP cache) so nothing is sent twice and the target starts clean.
        while True:
            try:
                rx.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break
        if self.stream.publisher is None:  # the session ended while we were connecting
            await self._stop(link)
            return True
        start = self.stream.start_items()
        has_video = self.stream.video_header is not None
        # Every track goes to a target that announced capsEx Multitrack in its connect _result
        # (E-RTMP v2: a client aware of it MAY publish multitrack); track 0 to any other.
        multitrack = link.conn.peer_caps.multitrack
        feed = self._feed = PlayerFeed(has_video=has_video, multitrack=multitrack)
        self.state, self.failures = "publishing", 0
        self.connected_since = time.time()
        self.metrics.relays_active.inc()
        log.info(
            "relay %s -> %s: publishing",
            self.stream.path,
            self.label,
            extra=self._fields("relay_up"),
        )
        ended = False
        try:
            for tag in start:
                self._send(link, feed, tag)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read_target, link, nursery.cancel_scope)
                ended = await self._pump(link, rx, feed)
                nursery.cancel_scope.cancel()
        finally:
            self.metrics.relays_active.dec()
            self.connected_since, self._feed = None, None
            self.dropped += feed.dropped
            await trio.aclose_forcefully(link.sock)
        if link.reconnect is not None and not ended:
            raise Reconnect(reconnect_target(self.target, link.reconnect))
        if link.failure is not None and not ended:
            raise RelayFailed(link.failure)
        return ended

    def _send(self, link: _Link, feed: PlayerFeed, item: FlvTag) -> None:
        tag = feed.view(item)
        if tag is None:
            return
        ts = feed.accept(tag)
        if ts is None:
            return
        body = tag.body
        if tag.type is TagType.SCRIPT and body.startswith(_ON_METADATA):
            body = set_data_frame(body)  # as FFmpeg publishes metadata (docs/protocol.md §4.5)
        link.conn.send_media(link.stream_id, int(tag.type), ts, body)

    async def _pump(
        self, link: _Link, rx: trio.MemoryReceiveChannel[HubItem], feed: PlayerFeed
    ) -> bool:
        """Hub queue -> target until the source's session ends (True) or the link fails."""
        try:
            await link.flush()
            unflushed = 0
            async for item in rx:
                if isinstance(item, FlvTag):
                    if link.reconnect is not None and is_keyframe(item):
                        # The media boundary the reconnect waited for: the new connection
                        # starts from the hub's snapshot, this keyframe's GOP included.
                        await self._stop(link)
                        return False
                    self._send(link, feed, item)
                elif isinstance(item, Gap):
                    feed.gap(item.dropped)
                elif isinstance(item, SessionEnd):
                    await self._stop(link)
                    return True
                unflushed += 1
                if unflushed >= FLUSH_EVERY or rx.statistics().current_buffer_used == 0:
                    await link.flush()  # bounded by send_timeout: a stalled target fails
                    unflushed = 0
            return True
        except trio.TooSlowError:
            link.failure = f"target not reading for {self.config.send_timeout} s"
        except (*_NET_ERRORS, ProtocolError) as exc:
            link.failure = link.failure or f"connection lost: {_why(exc)}"
        return False

    async def _read_target(self, link: _Link, scope: trio.CancelScope) -> None:
        """Acks, pings and status from the target; its close or an error status ends the link."""
        try:
            while link.failure is None:
                link.conn.receive_data(await link.sock.receive_some(RECEIVE_SIZE))
                while (event := link.conn.next_event()) is not NEED_DATA:
                    if isinstance(event, ev.ConnectionClosed):
                        link.failure = "target closed the connection"
                    elif isinstance(event, ev.Status) and event.level == "error":
                        link.failure = f"target: {event.code} {event.description}".strip()
                    elif isinstance(event, ev.ReconnectRequest) and link.reconnect is None:
                        log.info(
                            "relay %s -> %s: target asks to reconnect (%s)",
                            self.stream.path, self.label, event.description,
                        )  # fmt: skip
                        link.reconnect = event
                    if link.failure is not None:
                        break
                await link.flush()  # acknowledgements and ping responses (§5.4.3, §7.1.7)
        except trio.TooSlowError:
            link.failure = f"target not reading for {self.config.send_timeout} s"
        except (*_NET_ERRORS, ProtocolError) as exc:
            link.failure = f"connection lost: {_why(exc)}"
        scope.cancel()

    async def _stop(self, link: _Link) -> None:
        """FCUnpublish + deleteStream, as FFmpeg ends a publish; best effort, bounded."""
        with trio.move_on_after(self.config.stop_timeout):
            try:
                link.conn.delete_stream(link.stream_id)
                await link.flush()
            except (trio.TooSlowError, *_NET_ERRORS, ProtocolError):
                pass
        log.info(
            "relay %s -> %s: source ended, unpublished",
            self.stream.path,
            self.label,
            extra=self._fields("relay_unpublish", bytes=self.bytes_sent),
        )


class RelayManager:
    """Owns every relay; :meth:`start` is called when a stream gets a publisher."""

    def __init__(
        self,
        settings: Settings,
        hub: Hub,
        metrics: Metrics,
        *,
        config: RelayConfig | None = None,
        opener: Opener | None = None,
    ) -> None:
        self.rules = parse_push(settings.push)
        self.config = config if config is not None else relay_config(settings)
        self.hub, self.metrics = hub, metrics
        self.opener = opener if opener is not None else target_opener(settings)
        self._relays: dict[str, list[Relay]] = {}

    def _urls(self, stream: Stream) -> list[str]:
        """The target URLs of the rules matching ``stream``, one per distinct URL."""
        app, key = stream.app, stream.key
        return sorted({r.target_url(app, key) for r in self.rules if r.matches(app, key)})

    def start(self, stream: Stream, nursery: trio.Nursery) -> None:
        """Attach (synchronously, so the first session is not missed) and start the relays of
        every rule matching ``stream``; one relay per distinct target URL. Called at every
        publish start: a stream whose relays exist already is left alone."""
        if stream.path in self._relays:
            return
        for url in self._urls(stream):
            self._start(stream, url, nursery)

    def _start(self, stream: Stream, url: str, nursery: trio.Nursery) -> None:
        relay = Relay(
            stream, parse_target(url), self.hub, self.metrics, self.config, self.opener, url=url
        )
        sub, rx = self.hub.attach(stream, f"relay {relay.label}", self.config.queue)
        self._relays.setdefault(stream.path, []).append(relay)
        log.info(
            "relay %s -> %s: started",
            stream.path,
            relay.label,
            extra=relay._fields("relay_start"),
        )
        nursery.start_soon(self._run, relay, sub, rx)

    async def _run(
        self, relay: Relay, sub: Subscriber, rx: trio.MemoryReceiveChannel[HubItem]
    ) -> None:
        with relay.scope:
            await relay.run(sub, rx)

    def reconfigure(self, settings: Settings, streams: list[Stream], nursery: trio.Nursery) -> None:
        """Apply reloaded ``push`` rules to the ``streams`` being segmented: relays whose target
        is no longer wanted stop, new targets start; a relay whose target stays keeps running
        (its connection is not touched). Later relays use the reloaded timeouts."""
        self.rules = parse_push(settings.push)
        self.config = relay_config(settings)
        for stream in streams:
            running = self._relays.get(stream.path, [])
            stop, start = split_changes([r.url for r in running], self._urls(stream))
            for relay in [r for r in running if r.url in stop]:
                relay.scope.cancel()
                running.remove(relay)
                log.info(
                    "relay %s -> %s: stopped (its rule was removed by a reload)",
                    stream.path,
                    relay.label,
                    extra=relay._fields("relay_stop"),
                )
            if not running:
                self._relays.pop(stream.path, None)
            for url in start:
                self._start(stream, url, nursery)

    def relays(self, path: str) -> list[Relay]:
        return list(self._relays.get(path, ()))

    def relays_for(self, path: str) -> list[dict[str, Any]]:
        return [r.describe() for r in self._relays.get(path, ())]
