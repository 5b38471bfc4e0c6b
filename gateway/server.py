"""RTMP listener and per-connection sessions: with gateway.readmux, where RTMP bytes meet sockets.

Each connection is one task owning one sans-IO :class:`gateway.rtmp.connection.Connection`. Every
wait has a deadline (setup, idle read, write); every failure is contained to its connection and
logged with its cause; the publish slot is released on every exit path.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import NamedTuple

import trio

from gateway.access import AccessControl
from gateway.auth import AuthRequest, Transport
from gateway.config import Settings
from gateway.hub import MEDIA_TYPES, Hub, Stream, StreamBusy, split_query
from gateway.metrics import Metrics
from gateway.player import Output, PlayerFeed, play
from gateway.readmux import (
    DEADLINE_SLACK,
    METRIC_BATCH,
    SO_RCVLOWAT,
    MuxedPublisher,
    ReadMux,
    lowat_for,
    set_lowat,
)
from gateway.readmux import available as readmux_available
from gateway.rtmp import events as ev
from gateway.rtmp.connection import NEED_DATA, Connection
from gateway.rtmp.errors import ProtocolError
from gateway.rtmp.ertmp import Capabilities
from gateway.rtmp.limits import Limits
from gateway.tls import describe_tls_error, server_context
from segmenter.flv import FlvTag
from segmenter.names import valid_name
from web.app import RESERVED_APP_NAMES

log = logging.getLogger("gateway.rtmp")

RECEIVE_SIZE = 64 * 1024  # bytes per read: a few chunks of a high-bitrate keyframe
# The read buffer a connection starts with: the handshake and commands fit, and idle or
# never-publishing connections (up to max_connections of them) do not hold 64 KiB each.
FIRST_RECEIVE_SIZE = 4 * 1024
REFUSAL_LOG_INTERVAL = 10.0  # seconds between log lines about connections refused at the limit
SHOWN_NAME = 160  # characters of a refused app or stream name quoted back (valid ones are <= 128)
_ids = itertools.count(1)


def shown(name: str) -> str:
    """A peer-chosen name for a log line or onStatus description: repr, cut to SHOWN_NAME
    characters (a name may be a 1 MiB AMF string: logged and echoed whole, every refused
    attempt would cost that much log and reply)."""
    if len(name) <= SHOWN_NAME:
        return repr(name)
    return f"{name[:SHOWN_NAME]!r}... ({len(name)} characters)"


def rtmp_limits(settings: Settings) -> Limits:
    return Limits(max_message_size=settings.max_message_size)


@dataclass(eq=False)
class Session:
    sock: trio.abc.Stream
    peer: str
    settings: Settings
    hub: Hub
    metrics: Metrics
    id: int = field(default_factory=lambda: next(_ids))
    app: str | None = None
    connect_query: str = ""  # the connect URL's query string as received (a token, say)
    # What the client announced in connect (Enhanced RTMP capsEx, FourCCs): empty for legacy.
    caps: Capabilities = field(default_factory=Capabilities)
    # Who may publish and play (None: anyone, as without access settings).
    access: AccessControl | None = None
    # The transport: "rtmps" when sock is TLS (the log lines and the auth hook say which).
    protocol: str = "rtmp"
    # Publishes and plays waiting for the auth decision, by message stream id.
    pending: set[int] = field(default_factory=set)
    published: dict[int, Stream] = field(default_factory=dict)

    # Plays in progress by message stream id: the task's cancel scope and the feed pause acts on.
    playing: dict[int, tuple[trio.CancelScope, PlayerFeed]] = field(default_factory=dict)
    _send_lock: trio.StrictFIFOLock = field(default_factory=trio.StrictFIFOLock)
    _nursery: trio.Nursery | None = None
    # Runs the players' writer of each stream this session plays (gateway.player.Fanout): a
    # stream's writer outlives any one player, so the server passes its own nursery. None: this
    # session's (a lone session, in tests, then waits for the writer of the streams it plays).
    fanouts: trio.Nursery | None = None
    _conn: Connection = field(init=False)
    # Why the connection ended; every task sets it, so what is left is a cancellation from
    # outside: the gateway stopping.
    _cause: str = "gateway stopping"
    # The shared reader for publishing connections (None: this connection waits on its own).
    mux: ReadMux | None = None
    # Once the connection plays, every write goes through here (players' media are written by
    # their stream's task, in order with our own messages).
    output: Output | None = None
    # trio clock when bytes last came from the peer (as of the reader's last pass): idle
    # timeout of a muxed publisher, and how long a publisher has been silent (hub takeover).
    last_read: float = field(default_factory=trio.current_time)
    _opened: float = field(default_factory=trio.current_time)
    # Set when the connection is closed (run() returned).
    closed: trio.Event = field(default_factory=trio.Event)

    def request_reconnect(self, description: str, tc_url: str | None = None) -> bool:
        """E-RTMP v2 "Reconnect Request": ask a publisher that announced capsEx Reconnect to
        reconnect (to ``tc_url``, or here); True if asked. The caller then flushes."""
        conn = getattr(self, "_conn", None)
        if conn is None or not self.published or not self.caps.reconnect:
            return False
        try:
            conn.send_reconnect_request(description, tc_url)
        except ProtocolError:
            return False  # the connection already failed: it is closing anyway
        log.info("rtmp #%d %s: asked to reconnect (%s)", self.id, self.peer, description)
        return True

    async def run(self) -> None:
        conn = Connection(limits=rtmp_limits(self.settings))
        self._conn = conn
        self._cause = "gateway stopping"
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                # Failures are turned into a cause inside each task: a nursery would wrap them.
                await self._guarded(self._read_loop(conn))
                nursery.cancel_scope.cancel()
        finally:
            for stream in self.published.values():
                self._end_publish(stream, "connection closed")
            self.published.clear()
            with trio.move_on_after(1, shield=True):
                await self.sock.aclose()
            self.closed.set()
            sent = conn.bytes_sent + (self.output.media_bytes if self.output is not None else 0)
            log.info(
                "%s connection #%d from %s closed (%s); %d bytes in, %d out",
                self.protocol,
                self.id,
                self.peer,
                self._cause,
                conn.bytes_received,
                sent,
                extra={
                    "event": "connection_close",
                    "peer": self.peer,
                    "connection": self.id,
                    "cause": self._cause,
                    "duration": round(trio.current_time() - self._opened, 3),
                    "bytes": conn.bytes_received,
                    "bytes_out": sent,
                },
            )

    async def _guarded(self, work: Awaitable[str | None]) -> None:
        """Run one of this connection's tasks; any peer-caused failure ends the connection."""
        try:
            cause = await work
        except ProtocolError as exc:
            cause = f"protocol error: {exc}"  # the message starts with the reason
            self.metrics.protocol_errors.labels(exc.reason).inc()
        except trio.TooSlowError:
            cause = "write timeout (peer not reading)"
            self.metrics.protocol_errors.labels("write-timeout").inc()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            tls = describe_tls_error(exc)  # RTMPS: a failed handshake, a bad record
            cause = tls or f"connection lost: {exc!r}"
            if tls is not None:
                self.metrics.protocol_errors.labels("tls-error").inc()
        if cause is not None:
            self._cause = cause
            assert self._nursery is not None
            self._nursery.cancel_scope.cancel()

    async def _read_loop(self, conn: Connection) -> str:
        setup_deadline = trio.current_time() + self.settings.setup_timeout
        idle_timeout = self.settings.idle_timeout
        # The idle deadline is moved at most once per DEADLINE_SLACK of the timeout, not per
        # read: re-registering a deadline cost more than parsing a small (audio) message.
        slack = idle_timeout * DEADLINE_SLACK
        receive = self._receiver()
        counted = 0  # bytes read since the last update of the rtmp_bytes_received counter
        lowat = 1  # the socket's current SO_RCVLOWAT (1 = the kernel default)
        can_lowat = SO_RCVLOWAT is not None and isinstance(self.sock, trio.SocketStream)
        mux = self.mux if isinstance(self.sock, trio.SocketStream) else None
        with trio.CancelScope() as scope:
            while True:
                gate = self.hub.write_gate
                if gate is not None and self.published and gate.closed:
                    # The disk is behind: read nothing more until it catches up (TCP
                    # back-pressure reaches the encoder); other tasks go on meanwhile.
                    scope.deadline = math.inf
                    cause = await gate.pause(f"rtmp #{self.id} {self.peer}")
                    if cause is not None:
                        return cause
                if mux is not None and self.published and not self.playing:
                    # Only publishing: the shared reader takes over until that changes.
                    scope.deadline = math.inf
                    cause = await MuxedPublisher(self, conn, mux, lowat).run()
                    if cause is not None:
                        return cause
                    lowat = 1
                    continue
                now = self.last_read = trio.current_time()
                if self.playing:
                    deadline = math.inf  # players may send nothing for long; writes bounded
                elif self.published:
                    deadline = now + idle_timeout
                else:
                    deadline = min(now + idle_timeout, setup_deadline)
                if deadline < scope.deadline or deadline - scope.deadline > slack:
                    scope.deadline = deadline
                if can_lowat:
                    want = 1
                    if self.published and not self.playing:
                        want = lowat_for(conn)
                    if want != lowat:
                        lowat = want
                        can_lowat = self._set_lowat(want)
                data = await receive()
                counted += len(data)
                if counted >= METRIC_BATCH or not data:
                    self.metrics.bytes_in.inc(counted)  # the counter takes a lock: not per read
                    counted = 0
                conn.receive_data(data)
                self.handle_events(conn)
                if conn.has_data_to_send:
                    scope.deadline = math.inf  # a slow write is a write timeout, not idle
                    await self.flush()
                if not data:
                    return "closed by peer"
        cause = "setup-timeout" if not self.published else "idle-timeout"
        self.metrics.protocol_errors.labels(cause).inc()
        return cause.replace("-", " ")

    def _receiver(self) -> Callable[[], Awaitable[bytes | bytearray | memoryview]]:
        """The read of the loop. On a TCP socket: after a read that drained the socket (returned
        less than the buffer), wait for readiness before the next read; otherwise read at once.
        trio's receive_some yields to the scheduler on every call even with data ready, and
        reading until EAGAIN costs a failed syscall per wake-up: for a publisher's small messages
        those were the largest per-message costs. Waiting first also honours SO_RCVLOWAT, which
        a read does not (it returns what is there). A read that filled the buffer is followed by
        a plain yield, so a peer that keeps the socket full cannot starve other connections.
        Reads go into one reused buffer (a fresh 64 KiB bytes per read was malloc churn), 4 KiB
        until a read fills it, then 64 KiB; the view returned is valid until the next read, and
        Connection.receive_data copies it."""
        if not isinstance(self.sock, trio.SocketStream):
            stream = self.sock
            return lambda: stream.receive_some(RECEIVE_SIZE)
        fd = self.sock.socket.fileno()
        readv, wait_readable = os.readv, trio.lowlevel.wait_readable
        checkpoint = trio.lowlevel.checkpoint
        size = FIRST_RECEIVE_SIZE
        buffer = bytearray(size)
        buffers, view = [buffer], memoryview(buffer)
        drained = False

        async def receive() -> memoryview:
            nonlocal drained, size, buffers, view
            while True:
                if drained:
                    await wait_readable(fd)
                else:
                    await checkpoint()  # the last read filled the buffer: let others run first
                try:
                    n = readv(fd, buffers)
                except BlockingIOError:
                    drained = True
                    continue
                drained = n < size
                data = view[:n]
                if not drained and size < RECEIVE_SIZE:
                    # Media is coming: the full buffer from the next read on (data keeps the
                    # first buffer alive until the caller has copied it).
                    size = RECEIVE_SIZE
                    buffer = bytearray(size)
                    buffers, view = [buffer], memoryview(buffer)
                return data

        return receive

    def _set_lowat(self, value: int) -> bool:
        """Set SO_RCVLOWAT; False (stop trying) where the platform refuses it."""
        assert isinstance(self.sock, trio.SocketStream)
        return set_lowat(self.sock.socket, value)

    async def flush(self) -> None:
        """Write what the protocol queued; one writer at a time, bounded by send_timeout."""
        if self.output is not None:
            await self.output.flush()
            return
        if not self._conn.has_data_to_send:
            return  # nothing queued: no lock, no checkpoint (the common case of a publisher)
        async with self._send_lock:
            out = self._conn.data_to_send()
            if out:
                with trio.fail_after(self.settings.send_timeout):
                    await self.sock.send_all(out)

    def handle_events(self, conn: Connection) -> None:
        while True:
            event = conn.next_event()
            if event is NEED_DATA:
                return
            if isinstance(event, ev.Media):
                stream = self.published.get(event.stream_id)
                kind = MEDIA_TYPES.get(event.type)
                if stream is not None and kind is not None:
                    stream.publish(FlvTag(kind, event.timestamp, event.body))
            elif isinstance(event, ev.ConnectRequest):
                self._on_connect(conn, event)
            elif isinstance(event, ev.PublishRequest):
                self._on_publish(conn, event)
            elif isinstance(event, ev.PlayRequest):
                self._on_play(conn, event)
            elif isinstance(event, ev.PauseRequest):
                self._on_pause(conn, event)
            elif isinstance(event, ev.Unpublish | ev.StreamDeleted):
                stream = self.published.pop(event.stream_id, None)
                if stream is not None:
                    self._end_publish(stream, "publisher ended the stream")
                if isinstance(event, ev.StreamDeleted) and event.stream_id in self.playing:
                    self.playing.pop(event.stream_id)[0].cancel()
            elif isinstance(event, ev.ConnectionClosed):
                return

    def _on_play(self, conn: Connection, event: ev.PlayRequest) -> None:
        key = split_query(event.name)[0]
        if self.app is None or not valid_name(key):
            log.warning(
                "rtmp #%d %s: play refused: invalid name %s",
                self.id,
                self.peer,
                shown(key),
                extra=self._fields("play_refused", cause="invalid name"),
            )
            conn.reject_play(
                event.stream_id,
                "NetStream.Play.StreamNotFound",
                f"invalid stream name {shown(key)}",
            )
            return
        if self.access is not None and self.access.read_auth:
            if event.stream_id in self.pending:
                return  # one decision per stream id at a time
            self.pending.add(event.stream_id)
            query = self._raw_query(event.name, event.query)
            request = self.access.request("read", self._transport, self.app, key, query, self.ip)
            assert self._nursery is not None
            self._nursery.start_soon(self._authorize_play, conn, event, key, request)
            return
        self._start_play(conn, event, key)

    async def _authorize_play(
        self, conn: Connection, event: ev.PlayRequest, key: str, request: AuthRequest
    ) -> None:
        assert self.access is not None
        try:
            decision = await self.access.check(request)
        finally:
            self.pending.discard(event.stream_id)
        if not decision.allowed:
            why = f"not allowed to play {self.app}/{key}: {decision.reason}"
            log.warning(
                "rtmp #%d %s: play refused: %s",
                self.id,
                self.peer,
                why,
                extra=self._fields("play_refused", key, cause=decision.reason),
            )
            conn.reject_play(event.stream_id, "NetStream.Play.Failed", why)
            await self._close_after_refusal(f"play refused: {decision.reason}")
            return
        self._start_play(conn, event, key)
        await self.flush()

    def _start_play(self, conn: Connection, event: ev.PlayRequest, key: str) -> None:
        assert self.app is not None
        if event.stream_id in self.playing:
            # A new play replaces the old one (§7.2.2.1).
            self.playing.pop(event.stream_id)[0].cancel()
        stream = self.hub.lookup(self.app, key)
        if self.output is None:
            timeout = self.settings.send_timeout
            self.output = Output(self.sock, conn, self._send_lock, timeout)
        # A player that announced capsEx Multitrack gets every track; others track 0 only.
        scope, feed = trio.CancelScope(), PlayerFeed(multitrack=self.caps.multitrack)
        self.playing[event.stream_id] = (scope, feed)
        assert self._nursery is not None
        self._nursery.start_soon(self._run_player, scope, feed, event.stream_id, stream)

    def _on_pause(self, conn: Connection, event: ev.PauseRequest) -> None:
        current = self.playing.get(event.stream_id)
        if current is None:
            return
        current[1].pause(event.pause)
        code = "NetStream.Pause.Notify" if event.pause else "NetStream.Unpause.Notify"
        conn.send_status(event.stream_id, "status", code, "paused" if event.pause else "resumed")

    async def _run_player(
        self, scope: trio.CancelScope, feed: PlayerFeed, stream_id: int, stream: Stream
    ) -> None:
        with scope:
            await self._guarded(self._play(feed, stream_id, stream))
        current = self.playing.get(stream_id)
        if current is not None and current[0] is scope:
            del self.playing[stream_id]

    async def _play(self, feed: PlayerFeed, stream_id: int, stream: Stream) -> str | None:
        assert self.output is not None  # made by _on_play
        owner = self.fanouts or self._nursery
        assert owner is not None  # run() opened the session's nursery before any play
        return await play(
            conn=self._conn,
            stream_id=stream_id,
            stream=stream,
            hub=self.hub,
            settings=self.settings,
            metrics=self.metrics,
            output=self.output,
            peer=self.peer,
            owner=owner,
            feed=feed,
        )

    def _on_connect(self, conn: Connection, event: ev.ConnectRequest) -> None:
        app = event.app.partition("?")[0].strip("/")
        if app in RESERVED_APP_NAMES:
            log.warning(
                "rtmp #%d %s: connect refused: reserved app name %r",
                self.id,
                self.peer,
                app,
                extra=self._fields("connect_refused", cause="reserved app name"),
            )
            conn.reject_connect(f"application name {app!r} is reserved for the gateway's own URLs")
            return
        if not valid_name(app):
            log.warning(
                "rtmp #%d %s: connect refused: invalid app name %s",
                self.id,
                self.peer,
                shown(app),
                extra=self._fields("connect_refused", cause="invalid app name"),
            )
            conn.reject_connect(f"invalid application name {shown(app)}")
            return
        self.app = app
        # rtmp://host/live?token=x puts the query on the app/tcUrl: kept for authorisation.
        self.connect_query = event.query
        for problem in event.problems:  # a malformed E-RTMP hint is ignored, never fatal
            log.warning("rtmp #%d %s: connect: %s", self.id, self.peer, problem)
        self.caps = event.capabilities
        if self.caps.announced:
            log.info(
                "rtmp #%d %s: Enhanced RTMP client: capsEx %d, fourCcList %s",
                self.id, self.peer, self.caps.caps_ex, ",".join(self.caps.fourcc_list) or "-",
            )  # fmt: skip
        conn.accept_connect()

    def _on_publish(self, conn: Connection, event: ev.PublishRequest) -> None:
        app = self.app
        key, query = split_query(event.name)
        if event.query:
            query = {**split_query("?" + event.query)[1], **query}
        if self.connect_query:  # the stream name's parameters win
            query = {**split_query("?" + self.connect_query)[1], **query}
        if app is None:
            self._reject(
                conn, event.stream_id, "NetStream.Publish.Denied", "publish before connect"
            )
            return
        if not valid_name(key):
            self._reject(
                conn,
                event.stream_id,
                "NetStream.Publish.BadName",
                f"invalid stream name {shown(key)}: use 1-128 of A-Z a-z 0-9 _ -",
            )
            return
        if self.access is not None and not self.access.publish_open:
            if event.stream_id in self.pending or event.stream_id in self.published:
                self._reject(
                    conn, event.stream_id, "NetStream.Publish.BadName", "already publishing"
                )
                return
            # Nothing happens before the decision: no Publish.Start, playlist, relay or API
            # entry. The check runs in its own task, so the connection keeps reading (and a
            # slow hook delays no one else); setup_timeout still bounds it.
            self.pending.add(event.stream_id)
            raw = self._raw_query(event.name, event.query)
            request = self.access.request("publish", self._transport, app, key, raw, self.ip)
            assert self._nursery is not None
            self._nursery.start_soon(self._authorize_publish, conn, event.stream_id, request, query)
            return
        self._start_publish(conn, event.stream_id, app, key, query)

    async def _authorize_publish(
        self,
        conn: Connection,
        stream_id: int,
        request: AuthRequest,
        query: dict[str, list[str]],
    ) -> None:
        assert self.access is not None
        try:
            decision = await self.access.check(request)
        finally:
            self.pending.discard(stream_id)
        if not decision.allowed:
            # The description names the cause, never the key (it may be the secret).
            why = f"not allowed to publish in {request.app}: {decision.reason}"
            self._reject(conn, stream_id, "NetStream.Publish.BadName", why)
            return
        # A hook may map the (secret) key to the public name the stream is served under.
        self._start_publish(conn, stream_id, request.app, decision.name or request.key, query)
        await self.flush()

    def _start_publish(
        self, conn: Connection, stream_id: int, app: str, key: str, query: dict[str, list[str]]
    ) -> None:
        try:
            stream = self.hub.start_publish(
                app, key, peer=self.peer, connection_id=self.id, query=query, owner=self
            )
        except StreamBusy as exc:
            # The log names the publisher holding the name; the refused peer (anyone who knows
            # or guesses the key) is not told the streamer's address.
            busy = f"{app}/{key} is already being published"
            self._reject(conn, stream_id, "NetStream.Publish.BadName", busy, str(exc), key=key)
            return
        self.published[stream_id] = stream
        self.metrics.publishers.set(self.hub.publishers())
        conn.accept_publish(stream_id)
        log.info(
            "publish start %s/%s from %s (connection #%d)",
            app,
            key,
            self.peer,
            self.id,
            extra=self._fields("publish_start", key),
        )

    @property
    def _transport(self) -> Transport:
        return "rtmps" if self.protocol == "rtmps" else "rtmp"

    @property
    def ip(self) -> str:
        """The peer's address without the port (what the auth hook is told)."""
        host = self.peer.rpartition(":")[0] if ":" in self.peer else self.peer
        return host.strip("[]")

    def _raw_query(self, name: str, query: str) -> str:
        """The query strings of the stream name and of the connect URL, as received (the
        name's first, so its parameters win, as in split_query)."""
        parts = [name.partition("?")[2], query, self.connect_query]
        return "&".join(p for p in parts if p)

    async def _close_after_refusal(self, cause: str) -> None:
        """Send the refusal, then close: an encoder shows the error instead of waiting."""
        with trio.move_on_after(self.settings.send_timeout):
            async with self._send_lock:
                pass  # a write in progress (often of the refusal itself) ends first
            await self.flush()
        self._cause = cause
        assert self._nursery is not None
        self._nursery.cancel_scope.cancel()

    def evict(self, why: str) -> None:
        """A new publisher took our name over (the peer sent nothing for publish_takeover_after)."""
        log.warning("rtmp #%d %s: %s", self.id, self.peer, why)
        self._cause = why
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    def _reject(
        self,
        conn: Connection,
        stream_id: int,
        code: str,
        description: str,
        logged: str | None = None,
        *,
        key: str | None = None,
    ) -> None:
        """Refuse a publish with ``description``; ``logged`` (default: the same) goes to the log."""
        why = description if logged is None else logged
        log.warning(
            "rtmp #%d %s: publish refused: %s (%s)",
            self.id,
            self.peer,
            code,
            why,
            extra=self._fields("publish_refused", key, cause=f"{code}: {why}"),
        )
        self.metrics.publish_rejected.labels(code).inc()
        conn.reject_publish(stream_id, code, description)
        assert self._nursery is not None
        self._nursery.start_soon(self._close_after_refusal, f"publish refused: {description}")

    def _end_publish(self, stream: Stream, why: str) -> None:
        pub = stream.publisher
        mine = pub is not None and pub.connection_id == self.id
        duration = trio.current_time() - pub.monotonic_start if mine and pub else None
        self.hub.end_publish(stream, self.id)
        self.metrics.publishers.set(self.hub.publishers())
        fields = self._fields("publish_stop", stream.key, cause=why)
        fields.update(app=stream.app, bytes=self._conn.bytes_received)
        if duration is not None:
            fields["duration"] = round(duration, 3)
        log.info("publish stop %s from %s (%s)", stream.path, self.peer, why, extra=fields)

    def _fields(self, event: str, key: str | None = None, **more: object) -> dict[str, object]:
        """The facts of a log line about this connection (JSON logs: gateway.logs)."""
        fields: dict[str, object] = {"event": event, "peer": self.peer, "connection": self.id}
        if self.app is not None:
            fields["app"] = self.app
        if key is not None:
            fields["key"] = key
        fields.update(more)
        return fields


class Sessions:
    """The open RTMP sessions, for a graceful shutdown: once ``closing``, new connections are
    refused (a publisher asked to reconnect must not come back to a gateway that is stopping)."""

    def __init__(self) -> None:
        self.open: set[Session] = set()
        self.closing = False

    async def request_reconnects(self, wait: float, description: str) -> int:
        """Ask every publisher that announced capsEx Reconnect to reconnect (E-RTMP v2), then
        give them up to ``wait`` seconds in all to leave on their own (the spec's old server
        keeps processing their messages meanwhile). Returns how many were asked."""
        self.closing = True
        if wait <= 0:
            return 0
        asked = [s for s in list(self.open) if s.request_reconnect(description)]
        with trio.move_on_after(wait):
            async with trio.open_nursery() as nursery:
                for session in asked:
                    nursery.start_soon(self._flush_and_wait, session)
        return len(asked)

    @staticmethod
    async def _flush_and_wait(session: Session) -> None:
        try:
            await session.flush()  # bounded by send_timeout
        except (trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            return  # the connection is failing: it closes on its own
        await session.closed.wait()


class Listening(NamedTuple):
    """A bound RTMP listener, as :func:`serve_rtmp` reports them: plain RTMP first."""

    host: str
    port: int
    protocol: str = "rtmp"  # or "rtmps"


async def listen_tcp(settings: Settings, port: int, protocol: str) -> list[trio.SocketListener]:
    """Listeners on ``port`` of ``settings.host`` (all families); an error names the protocol
    and the address (the supervisor's listeners are made here too)."""
    try:
        return await trio.open_tcp_listeners(port, host=settings.host or None)
    except OSError as exc:
        where = f"{settings.host}:{port}"
        what = protocol.upper()
        raise OSError(exc.errno, f"cannot listen for {what} on {where}: {exc.strerror}") from None


async def _serve_incoming(
    incoming: trio.MemoryReceiveChannel[tuple[str, trio.SocketStream]],
    handle: Callable[[str, trio.SocketStream], Awaitable[None]],
    nursery: trio.Nursery,
) -> None:
    async for protocol, sock in incoming:
        nursery.start_soon(handle, "rtmps" if protocol == "rtmps" else "rtmp", sock)


async def serve_rtmp(
    settings: Settings,
    hub: Hub,
    metrics: Metrics,
    access: AccessControl | None = None,
    *,
    current: Callable[[], Settings] | None = None,
    sessions: Sessions | None = None,
    incoming: trio.MemoryReceiveChannel[tuple[str, trio.SocketStream]] | None = None,
    task_status: trio.TaskStatus[list[Listening]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Accept RTMP connections on rtmp_port (unless -1) and, with tls_cert, RTMPS on rtmps_port
    until cancelled; reports the bound addresses. ``access`` decides who may publish and play
    (None: anyone); ``sessions`` (if given) tracks the open sessions for shutdown.
    ``current`` gives the settings as reloaded: each new connection gets the limits of that
    moment (the listeners stay as bound). ``incoming``: connections another process accepted
    (a worker's, from the supervisor) instead of listeners of its own."""
    listeners: list[tuple[str, trio.SocketListener]] = []
    tls_context: ssl.SSLContext | None = None
    if incoming is not None and settings.tls_cert:
        tls_context = server_context(settings)
    try:
        if incoming is not None:
            pass  # the supervisor listens
        elif settings.rtmp_port >= 0:
            found = await listen_tcp(settings, settings.rtmp_port, "rtmp")
            listeners += [("rtmp", lst) for lst in found]
        if settings.tls_cert and incoming is None:
            tls_context = server_context(settings)
            found = await listen_tcp(settings, settings.rtmps_port, "rtmps")
            listeners += [("rtmps", lst) for lst in found]
    except BaseException:
        for _, lst in listeners:
            await trio.aclose_forcefully(lst)
        raise
    addresses: list[Listening] = []
    for protocol, lst in listeners:
        host, port = lst.socket.getsockname()[:2]
        addresses.append(Listening(str(host), int(port), protocol))
    started_with = settings
    active = 0  # both listeners' connections: max_connections is one limit
    per_ip: dict[str, int] = {}  # connections open by address (max_connections_per_ip)
    # Refusals at the limit are logged once per REFUSAL_LOG_INTERVAL: a peer hammering a full
    # server would otherwise get a log line per attempt.
    refusal_logged_at, refused_unlogged = -math.inf, 0

    async def handle(protocol: str, sock: trio.SocketStream) -> None:
        nonlocal active, refusal_logged_at, refused_unlogged
        settings = current() if current is not None else started_with
        try:
            host, port = sock.socket.getpeername()[:2]
            peer = f"{host}:{port}"
        except OSError:
            host, peer = "unknown", "unknown"
        if sessions is not None and sessions.closing:
            with trio.move_on_after(1, shield=True):
                await sock.aclose()  # stopping: a reconnecting publisher must go elsewhere
            return
        per_ip_limit = settings.max_connections_per_ip
        if per_ip_limit and per_ip.get(host, 0) >= per_ip_limit:
            metrics.connections_refused.inc()
            now = trio.current_time()
            if now - refusal_logged_at >= REFUSAL_LOG_INTERVAL:
                log.warning(
                    "rtmp connection from %s refused: max_connections_per_ip (%d) reached",
                    peer,
                    per_ip_limit,
                    extra={
                        "event": "connection_refused",
                        "peer": peer,
                        "cause": "max_connections_per_ip",
                    },
                )
                refusal_logged_at = now
            with trio.move_on_after(1, shield=True):
                await sock.aclose()
            return
        if active >= settings.max_connections:
            metrics.connections_refused.inc()
            now = trio.current_time()
            if now - refusal_logged_at < REFUSAL_LOG_INTERVAL:
                refused_unlogged += 1
            else:
                more = f" ({refused_unlogged} more since the last line)" if refused_unlogged else ""
                log.warning(
                    "%s connection from %s refused: max_connections (%d) reached%s",
                    protocol,
                    peer,
                    settings.max_connections,
                    more,
                    extra={"event": "connection_refused", "peer": peer, "cause": "max_connections"},
                )
                refusal_logged_at, refused_unlogged = now, 0
            with trio.move_on_after(1, shield=True):
                await sock.aclose()
            return
        active += 1
        per_ip[host] = per_ip.get(host, 0) + 1
        metrics.connections_total.inc()
        metrics.connections_active.inc()
        stream: trio.abc.Stream = sock
        if tls_context is not None and protocol == "rtmps":
            # The TLS handshake happens in the session's first read, so its setup deadline
            # covers it. https_compatible: a peer closing without close_notify is just EOF
            # (RTMP ends its streams itself; there is no truncation to detect).
            stream = trio.SSLStream(sock, tls_context, server_side=True, https_compatible=True)
        # The shared reader polls raw sockets: TLS connections read on their own.
        session = Session(
            stream,
            peer,
            settings,
            hub,
            metrics,
            mux=mux if stream is sock else None,
            protocol=protocol,
            access=access,
            fanouts=nursery,
        )
        log.info("%s connection #%d from %s", protocol, session.id, peer)
        if sessions is not None:
            sessions.open.add(session)
        try:
            await session.run()
        except Exception:
            # A bug must cost one connection, never the listener and the other streams.
            log.exception("%s connection #%d from %s: internal error", protocol, session.id, peer)
            metrics.protocol_errors.labels("internal-error").inc()
        finally:
            if sessions is not None:
                sessions.open.discard(session)
            active -= 1
            left = per_ip.pop(host) - 1
            if left:
                per_ip[host] = left
            metrics.connections_active.dec()

    mux = None
    if settings.rtmp_read_interval > 0 and readmux_available():
        mux = ReadMux(settings.rtmp_read_interval)
    async with trio.open_nursery() as nursery:
        if mux is not None:
            nursery.start_soon(mux.run)
        for protocol, lst in listeners:
            nursery.start_soon(trio.serve_listeners, partial(handle, protocol), [lst])
        if incoming is not None:
            nursery.start_soon(_serve_incoming, incoming, handle, nursery)
        task_status.started(addresses)
