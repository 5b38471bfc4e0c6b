"""What a worker does with the link (gateway.cluster): claims its streams, sends copies of their
HLS, applies the copies the others send, relays streams to workers whose RTMP players want
them, and answers the others' questions for /api and /metrics."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import prometheus_client
import trio
from prometheus_client.parser import text_string_to_metric_families

from gateway import bus
from gateway.cluster import Cluster, LiveSender, Mirror, ReplicatingStore, apply_copy
from gateway.hub import Hub, HubItem, SessionEnd, SessionStart, Stream, StreamBusy
from gateway.janitor import retire_ended
from segmenter.flv import FlvTag, TagType
from segmenter.keeper import end_stale_playlists
from segmenter.live import LiveStream
from segmenter.store import Store
from segmenter.sweep import EndedPlaylist

log = logging.getLogger("gateway.cluster")

# Seconds between checks for relayed streams no local player wants any more.
RELAY_IDLE_CHECK = 2.0
# Seconds without a request here for a stream's LL-HLS files after which its owner stops
# sending copies of them (as long as a player's playlist reload interval, many times over).
LIVE_INTEREST = 30.0


class Parts(Protocol):
    """What of the gateway (gateway.app.Gateway) this needs."""

    hub: Hub
    store: Store
    lives: dict[str, LiveStream]

    def local_streams(self) -> list[dict[str, Any]]: ...

    def stream(self, app: str, key: str) -> dict[str, Any] | None: ...

    def viewer_counts(self) -> dict[str, int]: ...

    def viewer_count(self, path: str) -> int: ...
    def abandon(self, path: str) -> None: ...

    @property
    def registry(self) -> prometheus_client.CollectorRegistry: ...

    @property
    def retention(self) -> float: ...


def encode_item(item: HubItem) -> tuple[Any, ...] | None:
    if isinstance(item, FlvTag):
        return (int(item.type), item.timestamp, item.body)
    if isinstance(item, SessionStart):
        return ("start",)
    if isinstance(item, SessionEnd):
        return ("end",)
    return None  # a Gap: the receiving hub makes its own


@dataclass(eq=False)
class _Relay:
    """This worker's copy of a stream another worker owns, for local RTMP players."""

    owner: int
    stream: Stream | None = None  # while the owner's session is published here
    connection_id: int = 0


class WorkerSide:
    def __init__(self, cluster: Cluster, gateway: Parts, waiters_notify: Callable[[str], None]):
        self.cluster = cluster
        self.gw = gateway
        self.mirror = Mirror(waiters_notify)
        self._notify = waiters_notify
        self.replicating = isinstance(gateway.store, ReplicatingStore)
        # Owner's side: the workers that asked for a stream's LL-HLS state, one sender each.
        self.senders: dict[str, dict[int, LiveSender]] = {}
        # Other side: when each stream made elsewhere was last asked for here, and of whom
        # its LL-HLS state was asked (and when).
        self._interest: dict[str, float] = {}
        self._asked: dict[str, tuple[int, float]] = {}
        self.relays: dict[str, _Relay] = {}  # streams relayed here (path -> relay)
        self.relay_targets: dict[str, set[int]] = {}  # streams relayed from here to workers
        self._sinks: dict[str, Callable[[HubItem], None]] = {}
        self._nursery: trio.Nursery | None = None
        self._relay_ids = -1_000_000  # connection ids of relayed sessions (never a real one)
        c = cluster
        c.on(bus.Put, lambda _s, m: self._copy(m))
        c.on(bus.Delete, lambda _s, m: self._copy(m))
        c.on(bus.LiveState, lambda _s, m: self.mirror.apply(m))
        c.on(bus.Gone, lambda _s, m: self.mirror.drop(m.path))
        c.on(bus.Owner, lambda _s, m: self._owner_changed(m))
        c.on(bus.Evict, lambda _s, m: self._evict(m))
        c.on(bus.Joined, lambda _s, m: self._joined(m.index))
        c.on(bus.Died, lambda _s, m: self._died(m))
        c.on(bus.Subscribe, self._subscribed)
        c.on(bus.Unsubscribe, lambda s, m: self._unsubscribed(s, m.path))
        c.on(bus.Relayed, self._relayed)
        c.on(bus.Ask, self._answer)
        c.on(bus.WantLive, lambda s, m: self._want_live(s, m.path))
        c.on(bus.UnwantLive, lambda s, m: self._unwant_live(s, m.path))

    async def run(self, nursery: trio.Nursery) -> None:
        """Housekeeping until cancelled: relays no local player wants are given up, and so
        are copies of LL-HLS state no one asked this worker for lately."""
        self._nursery = nursery
        while True:
            await trio.sleep(RELAY_IDLE_CHECK)
            now = trio.current_time()
            for path, last in list(self._interest.items()):
                if now - last > LIVE_INTEREST:
                    del self._interest[path]
                    asked = self._asked.pop(path, None)
                    if asked is not None:
                        self.cluster.send(asked[0], bus.UnwantLive(path))
                    self.mirror.drop(path)
            for path, relay in list(self.relays.items()):
                app, _, key = path.partition("/")
                stream = self.gw.hub.get(app, key)
                if stream is None or not (stream.players or stream.subscribers):
                    self._drop_relay(path, relay)
                    self.cluster.send(relay.owner, bus.Unsubscribe(path))

    # --- the owner's side ------------------------------------------------------------------
    def claimed(self, path: str, live: bool) -> None:
        """A local publisher started (``live``) or left (its segmenter still runs)."""
        self.cluster.claim(path, live)
        if live:
            self._attach_relay_sink(path)

    def released(self, path: str) -> None:
        """The stream's segmenter ended here: nothing of it is made here any more."""
        for sender in self.senders.pop(path, {}).values():
            sender.gone()
        self.cluster.release(path)

    def updated(self, path: str) -> None:
        """After every part, segment and ENDLIST of a local stream: its LL-HLS state to the
        workers that asked for it (pickling it costs more than the part: only on demand)."""
        senders = self.senders.get(path)
        live = self.gw.lives.get(path)
        if not senders or live is None:
            return
        playlists, parts, missing = live.lowlatency_state()
        for sender in senders.values():
            sender.update(playlists, parts, missing)

    def _want_live(self, sender: int, path: str) -> None:
        senders = self.senders.setdefault(path, {})
        if sender not in senders:
            senders[sender] = LiveSender(self.cluster, path, sender)
        live = self.gw.lives.get(path)
        if live is not None:
            senders[sender].update(*live.lowlatency_state())

    def _unwant_live(self, sender: int, path: str) -> None:
        self.senders.get(path, {}).pop(sender, None)

    def live_wanted(self, path: str) -> None:
        """A request here for the LL-HLS playlists or parts of ``path``, which another worker
        makes: ask it for copies (again if a second went by without one arriving)."""
        now = trio.current_time()
        self._interest[path] = now
        owner = self.cluster.owner_of(path)
        if owner is None or owner == self.cluster.index:
            return
        asked = self._asked.get(path)
        if asked is None or asked[0] != owner or (not self.mirror.has(path) and now - asked[1] > 1):
            self._asked[path] = (owner, now)
            self.cluster.send(owner, bus.WantLive(path))

    def _joined(self, index: int) -> None:
        """A worker (re)started: it gets a copy of the whole store from one worker (every
        worker holds the same); LL-HLS state it asks for."""
        first = min(self.cluster.alive - {index}, default=-1)
        if self.replicating and first == self.cluster.index and self._nursery is not None:
            self._nursery.start_soon(self._copy_store_to, index)

    async def _copy_store_to(self, index: int) -> None:
        """Every stored file to worker ``index``, segments before the playlists that list
        them, waiting for room on the link rather than dropping."""
        names = sorted(self.gw.store.names(), key=lambda n: n.endswith(".m3u8"))
        for name in names:
            data = self.gw.store.get(name)
            if data is not None:
                await self.cluster.send_waiting(index, bus.Put(name, data))
        log.info("copied %d stored files to worker %d", len(names), index)

    def _evict(self, message: bus.Evict) -> None:
        """Our publisher lost a race with another worker's (both claimed at once)."""
        self.cluster.owners[message.path] = bus.Owner(message.path, message.holder, True)
        self.gw.abandon(message.path)  # its segmenter stops without writing
        app, _, key = message.path.partition("/")
        stream = self.gw.hub.get(app, key)
        holder = stream.publisher if stream is not None else None
        if stream is None or holder is None or holder.owner is None:
            return
        why = f"worker {message.holder} already has a publisher on {message.path}"
        log.warning("%s: publisher %s dropped: %s", message.path, holder.peer, why)
        self.gw.hub.end_publish(stream, holder.connection_id)
        holder.owner.evict(why)

    def _owner_changed(self, owner: bus.Owner) -> None:
        if owner.worker >= 0 and owner.worker != self.cluster.index:
            if owner.path in self.gw.lives:
                # Our segmenter of this stream (its publisher gone) yields to the new owner's:
                # it stops without writing, the new one resumes the numbering from the store.
                log.info("%s: moved to worker %d", owner.path, owner.worker)
                self.gw.abandon(owner.path)
            relay = self.relays.get(owner.path)
            if relay is not None and relay.owner != owner.worker:
                self._drop_relay(owner.path, relay)
            app, _, key = owner.path.partition("/")
            stream = self.gw.hub.get(app, key)
            if owner.live and stream is not None and (stream.players or stream.subscribers):
                self._want(owner.path)  # local players wait for this stream: relay it
        elif owner.worker < 0:
            self.mirror.drop(owner.path)

    def _died(self, died: bus.Died) -> None:
        for path in died.paths:
            self.mirror.drop(path)
            relay = self.relays.get(path)
            if relay is not None and relay.owner == died.index:
                self._drop_relay(path, relay)
        for targets in self.relay_targets.values():
            targets.discard(died.index)
        for senders in self.senders.values():
            senders.pop(died.index, None)
        for path, asked in list(self._asked.items()):
            if asked[0] == died.index:
                del self._asked[path]
        if died.adopter != self.cluster.index or not died.paths:
            return
        # The dead worker's playlists can never grow: end them, retire them later.
        ended: list[EndedPlaylist] = []
        now = time.time()
        for path in died.paths:
            if path in self.gw.lives:
                continue
            for name in end_stale_playlists(self.gw.store, path + "/"):
                log.info("%s: ended (worker %d died)", name, died.index)
                ended.append(EndedPlaylist(name, now))
        if ended and self._nursery is not None:
            self._nursery.start_soon(
                retire_ended, self.gw.store, ended, self.gw.retention, self._made_here
            )

    def _made_here(self, path: str) -> bool:
        owner = self.cluster.owner_of(path)
        return path in self.gw.lives or (owner is not None and owner != self.cluster.index)

    def _copy(self, message: bus.Put | bus.Delete) -> None:
        if not self.replicating:
            return  # a disk hls_dir is shared: the owner's write is already ours
        store = self.gw.store
        assert isinstance(store, ReplicatingStore)
        apply_copy(store.copies, message)
        if isinstance(message, bus.Put):
            # A request for this file may be waiting for it (web.lowlatency.await_copy).
            self._notify("/".join(message.name.split("/", 2)[:2]))

    # --- RTMP relays between workers -------------------------------------------------------
    def want(self, stream: Stream) -> None:
        """A local RTMP player looked the stream up: relay it here if another worker owns it."""
        self._want(stream.path)

    def _want(self, path: str) -> None:
        owner = self.cluster.owner_elsewhere(path)
        if owner is None or path in self.relays:
            return
        self.relays[path] = _Relay(owner)
        self.cluster.send(owner, bus.Subscribe(path))

    def _drop_relay(self, path: str, relay: _Relay) -> None:
        self.relays.pop(path, None)
        if relay.stream is not None:
            self.gw.hub.end_publish(relay.stream, relay.connection_id)
            self.gw.hub.discard_if_idle(relay.stream)
            relay.stream = None

    def _subscribed(self, sender: int, message: bus.Subscribe) -> None:
        self.relay_targets.setdefault(message.path, set()).add(sender)
        app, _, key = message.path.partition("/")
        stream = self.gw.hub.get(app, key)
        if stream is not None and stream.publisher is not None and message.path in self.gw.lives:
            self._attach_relay_sink(message.path)
            items = [("start",), *(encode_item(t) for t in stream.start_items())]
            self.cluster.send(sender, bus.Relayed(message.path, tuple(items)))

    def _unsubscribed(self, sender: int, path: str) -> None:
        targets = self.relay_targets.get(path)
        if targets is None:
            return
        targets.discard(sender)
        if not targets:
            del self.relay_targets[path]
            sink = self._sinks.pop(path, None)
            app, _, key = path.partition("/")
            stream = self.gw.hub.get(app, key)
            if sink is not None and stream is not None:
                self.gw.hub.remove_sink(stream, sink)

    def _attach_relay_sink(self, path: str) -> None:
        if path in self._sinks or not self.relay_targets.get(path):
            return
        app, _, key = path.partition("/")
        stream = self.gw.hub.get(app, key)
        if stream is None:
            return

        def sink(item: HubItem) -> None:
            encoded = encode_item(item)
            if encoded is None:
                return
            for target in self.relay_targets.get(path, ()):
                self.cluster.send(target, bus.Relayed(path, (encoded,)))

        self._sinks[path] = sink
        self.gw.hub.add_sink(stream, sink)

    def _relayed(self, sender: int, message: bus.Relayed) -> None:
        relay = self.relays.get(message.path)
        if relay is None or relay.owner != sender:
            return
        app, _, key = message.path.partition("/")
        for item in message.items:
            if item[0] == "start":
                if relay.stream is not None:
                    self.gw.hub.end_publish(relay.stream, relay.connection_id)
                self._relay_ids -= 1
                relay.connection_id = self._relay_ids
                try:
                    relay.stream = self.gw.hub.start_publish(
                        app,
                        key,
                        peer=f"worker {sender}",
                        connection_id=relay.connection_id,
                        query={},
                        relayed=True,
                    )
                except StreamBusy as exc:
                    log.warning("%s: cannot relay from worker %d: %s", message.path, sender, exc)
                    relay.stream = None
            elif item[0] == "end":
                if relay.stream is not None:
                    self.gw.hub.end_publish(relay.stream, relay.connection_id)
                    relay.stream = None
            elif relay.stream is not None:
                kind, timestamp, body = item
                relay.stream.publish(FlvTag(TagType(kind), timestamp, body))

    def relayed_here(self, path: str) -> bool:
        return path in self.relays

    def relayed_from(self, path: str) -> int | None:
        relay = self.relays.get(path)
        return relay.owner if relay is not None else None

    # --- whole-gateway answers -------------------------------------------------------------
    def _answer(self, sender: int, ask: bus.Ask) -> None:
        if ask.what == "metrics":
            value: Any = prometheus_client.generate_latest(self.gw.registry)
        elif ask.what == "stream":  # the player page's poll: one stream, not all of them
            app, _, key = ask.path.partition("/")
            info = self.gw.stream(app, key)
            value = {
                "worker": self.cluster.index,
                "streams": [info] if info is not None else [],
                "viewers": {ask.path: self.gw.viewer_count(ask.path)},
            }
        else:
            value = {
                "worker": self.cluster.index,
                "streams": self.gw.local_streams(),
                "viewers": self.gw.viewer_counts(),
            }
        self.cluster.send(sender, bus.Answer(ask.request, value))


# --- /api and /metrics of the whole gateway -------------------------------------------------
def merge_streams(answers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every worker's streams as one list: a stream's entry is its owner's (with ``worker``);
    the RTMP players other workers serve it to through a relay are added to it, and its HLS
    viewers are counted on every worker."""
    viewers: dict[str, int] = {}
    owned: dict[str, dict[str, Any]] = {}
    relayed: dict[str, list[dict[str, Any]]] = {}
    for answer in answers:
        for path, count in answer.get("viewers", {}).items():
            viewers[path] = viewers.get(path, 0) + count
        for info in answer.get("streams", []):
            path = f"{info['app']}/{info['key']}"
            if info.get("relayed_from") is not None:
                relayed.setdefault(path, []).append(info)
            elif path not in owned or info.get("publisher"):
                owned[path] = {**info, "worker": answer.get("worker")}
    for path, copies in relayed.items():
        base = owned.get(path)
        if base is None:  # its owner did not answer: the relayed copy is what is known
            owned[path] = base = {**copies[0], "worker": copies[0]["relayed_from"]}
            base["players"] = []
        for copy in copies:
            base["players"] = [*(base.get("players") or []), *(copy.get("players") or [])]
    for path, info in owned.items():
        info["viewers"] = viewers.get(path, info.get("viewers", 0))
    return [owned[p] for p in sorted(owned)]


def merge_metrics(texts: list[bytes]) -> bytes:
    """Prometheus text of every worker as one: each series summed over the workers (process
    memory, CPU and files included: the gateway's total), except start and creation times,
    which keep the earliest."""
    families: dict[str, Any] = {}
    values: dict[tuple[str, str, tuple[tuple[str, str], ...]], float] = {}
    for text in texts:
        for family in text_string_to_metric_families(text.decode("utf-8")):
            samples = list(family.samples)
            known = families.get(family.name)
            if known is None:
                known = families[family.name] = family
                known.samples = []
            for sample in samples:
                labels = tuple(sorted(sample.labels.items()))
                key = (family.name, sample.name, labels)
                if key not in values:
                    values[key] = sample.value
                    known.samples.append(sample)
                elif sample.name.endswith(("_created", "start_time_seconds")):
                    values[key] = min(values[key], sample.value)
                else:
                    values[key] += sample.value
    for family in families.values():
        family.samples = [
            s._replace(value=values[(family.name, s.name, tuple(sorted(s.labels.items())))])
            for s in family.samples
        ]

    class _Merged:
        def collect(self) -> list[Any]:
            return list(families.values())

    registry = prometheus_client.CollectorRegistry(auto_describe=False)
    registry.register(_Merged())
    return prometheus_client.generate_latest(registry)


class ClusterStatus:
    """web.config.WholeGateway for one worker: its own figures and the other workers'."""

    def __init__(self, cluster: Cluster, gateway: Parts) -> None:
        self._cluster = cluster
        self._gw = gateway

    @property
    def worker(self) -> int:
        return self._cluster.index

    def _own(self, local: list[dict[str, Any]], viewers: dict[str, int]) -> dict[str, Any]:
        return {"worker": self._cluster.index, "streams": local, "viewers": viewers}

    async def streams(self, local: list[dict[str, Any]]) -> list[dict[str, Any]]:
        others = await self._cluster.ask_others("streams")
        return merge_streams([self._own(local, self._gw.viewer_counts()), *others])

    async def stream(
        self, app: str, key: str, local: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        # Asked of every worker: the owner describes it, the others add players and viewers.
        path = f"{app}/{key}"
        own = self._own([local] if local is not None else [], {path: self._gw.viewer_count(path)})
        others = await self._cluster.ask_others("stream", path)
        merged = merge_streams([own, *others])
        return next((s for s in merged if s["app"] == app and s["key"] == key), None)

    async def metrics(self, local: bytes) -> bytes:
        return merge_metrics([local, *await self._cluster.ask_others("metrics")])
