"""Pull relays: ingest a stream from another RTMP server as if it had been published here.

``Settings.pull`` holds entries ``APP/KEY=URL``: the gateway plays URL as an RTMP client (the
sans-IO Connection in the client role) and feeds what it receives into the hub as the publisher of
``APP/KEY``, so HLS, RTMP players and push relays work on it like on any published stream. A
pull keeps trying with backoff for the life of the process; a local publisher that already holds
the name wins (the pull waits), and the source stopping (UnpublishNotify) ends the session here.
"""

from __future__ import annotations

import itertools
import logging
import math
import random
from dataclasses import dataclass, field, replace
from typing import Any

import trio

from gateway.config import Settings
from gateway.hub import MEDIA_TYPES, Hub, Stream, StreamBusy
from gateway.relay import (
    _NET_ERRORS,
    Opener,
    Reconnect,
    _why,
    open_target,
    reconnect_target,
    target_opener,
)
from gateway.relay_config import Backoff, PullRule, parse_pull
from gateway.reload import split_changes
from gateway.rtmp import ertmp
from gateway.rtmp import events as ev
from gateway.rtmp.connection import NEED_DATA, Connection, Role
from gateway.rtmp.errors import ProtocolError
from segmenter.flv import FlvTag

log = logging.getLogger("gateway.pull")

# PullRule and parse_pull (the pull setting's grammar) live in relay_config with push's.
__all__ = ["PullManager", "PullRule", "parse_pull"]

UNPUBLISHED = "NetStream.Play.UnpublishNotify"  # the source's publisher left (nginx, SRS, ours)
RECEIVE_SIZE = 64 * 1024  # bytes per read: media comes in, as on a publisher's connection


class PullFailed(Exception):
    """The source refused, dropped or stalled; the message becomes last_error."""


@dataclass(eq=False)
class Pull:
    rule: PullRule
    hub: Hub
    settings: Settings
    connection_id: int  # negative: never collides with accepted connections' ids
    opener: Opener = open_target
    backoff: Backoff = field(default_factory=Backoff)
    state: str = "connecting"
    reconnects: int = 0
    bytes_received: int = 0
    last_error: str | None = None
    # Cancelled when a reload removes the pull's rule (its publish ends as on a source stop).
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    _stream: Stream | None = None

    @property
    def label(self) -> str:
        return self.rule.target.label(self.rule.key)

    def _fields(self, event: str, **more: object) -> dict[str, object]:
        """The facts of a log line about this pull (JSON logs: gateway.logs)."""
        rule = self.rule
        return {"event": event, "app": rule.app, "key": rule.key, "source": self.label, **more}

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.label,
            "state": self.state,
            "reconnects": self.reconnects,
            "bytes_received": self.bytes_received,
            "last_error": self.last_error,
        }

    async def run(self) -> None:
        failures = 0
        rng = random.Random()
        while True:
            self.state = "connecting"
            try:
                await self._attempt()
                failures = 0
                self.last_error = "source closed the connection"
            except Reconnect as exc:  # E-RTMP v2: at once, to where the source said
                self._end("source asked to reconnect")
                log.info("pull %s/%s: reconnecting on the source's request", self.rule.app,
                         self.rule.key)  # fmt: skip
                self.rule = replace(self.rule, target=exc.target)
                self.reconnects += 1
                continue
            except PullFailed as exc:
                failures += 1
                self.last_error = str(exc)
            finally:
                self._end("pull ended")
            self.state = "backoff"
            delay = self.backoff.delay(max(failures, 1), rng.random())
            log.warning(
                "pull %s/%s from %s: %s; retrying in %.1f s",
                self.rule.app, self.rule.key, self.label, self.last_error, delay,
                extra=self._fields("relay_down", cause=self.last_error, retry_in=round(delay, 3)),
            )  # fmt: skip
            await trio.sleep(delay)
            self.reconnects += 1

    async def _attempt(self) -> None:
        t = self.rule.target
        setup_timeout = self.settings.setup_timeout
        try:
            # setup_timeout bounds TCP connect, handshake and connect, as for our own peers: a
            # source that accepts and then stalls the handshake (or trickles bytes, each within
            # idle_timeout) fails the attempt instead of holding the pull in "connecting". The
            # play may then wait longer (a source may hold it until its publisher comes).
            with trio.CancelScope(deadline=trio.current_time() + setup_timeout) as setup:
                sock = await self.opener(t)
                async with sock:
                    conn = Connection(Role.CLIENT)
                    conn.connect(t.app, t.tc_url, extra=ertmp.client_properties())
                    conn.play(t.name)
                    while True:
                        if out := conn.data_to_send():
                            with trio.fail_after(self.settings.send_timeout):
                                await sock.send_all(out)
                        try:
                            with trio.fail_after(self.settings.idle_timeout):
                                data = await sock.receive_some(RECEIVE_SIZE)
                        except trio.TooSlowError:
                            raise PullFailed(
                                f"nothing received for {self.settings.idle_timeout:g} s"
                            ) from None
                        self.bytes_received += len(data)
                        conn.receive_data(data)
                        while (event := conn.next_event()) is not NEED_DATA:
                            assert not isinstance(event, type)
                            if isinstance(event, ev.ConnectResult) and event.success:
                                setup.deadline = math.inf
                            self._on_event(event)
                        if not data:
                            return
                        gate = self.hub.write_gate
                        if gate is not None and self._stream is not None and gate.closed:
                            # The disk is behind: stop reading the source until it catches up.
                            cause = await gate.pause(f"pull {self.label}")
                            if cause is not None:
                                raise PullFailed(cause)
            if setup.cancelled_caught:
                raise PullFailed(f"no RTMP handshake and connect within {setup_timeout:g} s")
        except trio.TooSlowError:
            raise PullFailed("source did not answer in time") from None
        except _NET_ERRORS as exc:
            raise PullFailed(f"connection failed: {_why(exc)}") from None
        except ProtocolError as exc:
            raise PullFailed(f"protocol error: {exc}") from None  # the message names the reason

    def _on_event(self, event: ev.Event) -> None:
        if isinstance(event, ev.Media):
            kind = MEDIA_TYPES.get(event.type)
            if kind is not None:
                self._publisher().publish(FlvTag(kind, event.timestamp, event.body))
        elif isinstance(event, ev.ConnectResult) and not event.success:
            raise PullFailed(f"connect refused: {event.code} {event.description}".strip())
        elif isinstance(event, ev.CallFailed):
            raise PullFailed(f"{event.command} refused: {event.code}".strip())
        elif isinstance(event, ev.Status):
            if event.level == "error":
                raise PullFailed(f"play refused: {event.code} {event.description}".strip())
            if event.code == "NetStream.Play.Start":
                self.state = "playing"
            elif event.code == UNPUBLISHED:
                self._end("source unpublished")
        elif isinstance(event, ev.ReconnectRequest):
            raise Reconnect(reconnect_target(self.rule.target, event))

    def _publisher(self) -> Stream:
        if self._stream is None:
            app, key = self.rule.app, self.rule.key
            try:
                self._stream = self.hub.start_publish(
                    app, key, peer=f"pull {self.label}", connection_id=self.connection_id,
                    query={},
                )  # fmt: skip
            except StreamBusy as exc:
                raise PullFailed(f"not pulling: {exc}") from None
            log.info(
                "publish start %s/%s pulled from %s",
                app,
                key,
                self.label,
                extra=self._fields("publish_start", peer=f"pull {self.label}"),
            )
        return self._stream

    def _end(self, why: str) -> None:
        if self._stream is not None:
            self.hub.end_publish(self._stream, self.connection_id)
            log.info(
                "publish stop %s (%s)",
                self._stream.path,
                why,
                extra=self._fields("publish_stop", cause=why, bytes=self.bytes_received),
            )
            self._stream = None


class PullManager:
    """Owns one long-lived task per pull rule; :meth:`describe` feeds the API."""

    def __init__(self, settings: Settings, hub: Hub, *, opener: Opener | None = None) -> None:
        self._opener = opener if opener is not None else target_opener(settings)
        self._hub = hub
        self._ids = itertools.count(1)
        self._nursery: trio.Nursery | None = None
        self.pulls = [self._pull(rule, settings) for rule in parse_pull(settings.pull)]

    def _pull(self, rule: PullRule, settings: Settings) -> Pull:
        # Negative ids never collide with accepted connections' (nor with each other's).
        return Pull(rule, self._hub, settings, -next(self._ids), opener=self._opener)

    def start(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        for pull in self.pulls:
            nursery.start_soon(self._run, pull)

    async def _run(self, pull: Pull) -> None:
        with pull.scope:
            await pull.run()

    def reconfigure(self, settings: Settings) -> None:
        """Apply reloaded ``pull`` rules: pulls of removed or changed entries stop (their
        publish ends), new ones start; a pull whose entry is unchanged keeps its connection."""
        stop, start = split_changes([p.rule for p in self.pulls], parse_pull(settings.pull))
        for pull in [p for p in self.pulls if p.rule in stop]:
            pull.scope.cancel()
            self.pulls.remove(pull)
            log.info(
                "pull %s/%s from %s: stopped (its entry was removed by a reload)",
                pull.rule.app, pull.rule.key, pull.label,
                extra=pull._fields("relay_stop"),
            )  # fmt: skip
        for pull in self.pulls:
            pull.settings = settings  # timeouts of its next attempts
        for rule in start:
            pull = self._pull(rule, settings)
            self.pulls.append(pull)
            if self._nursery is not None:
                self._nursery.start_soon(self._run, pull)

    def pulls_for(self, path: str) -> list[dict[str, Any]]:
        return [p.describe() for p in self.pulls if f"{p.rule.app}/{p.rule.key}" == path]
