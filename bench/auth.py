"""Scenario auth (issue 14): what access control costs a publish, a play and an HLS viewer.

Every server runs twice side by side, without access control and with the bench's HTTP hook
(``ours+hook``: ``auth_hook_url`` and ``read_auth``; ``nginx-rtmp+hook``: ``on_publish`` and
``on_play`` pointing at the same hook), each with one FFmpeg publisher of the watched stream.

Part 1, setup: ``--setups`` publishes of fresh names, then as many RTMP plays of the published
stream, alternating between the servers so that they share the machine's noise. The client is
the project's own sans-IO RTMP client (gateway.rtmp.connection in the client role) on a raw trio
socket: time from the TCP connect to NetStream.Publish.Start / NetStream.Play.Start (and to the
first media message of a play), and from the publish/play command to that status, which is
where the hook is asked. Beside it, the hook's own round trip (the bench POSTing the gateway's
JSON through httpx with keep-alive, as the gateway does), the hook's service time and ours'
``auth_hook_duration_seconds`` (the round trip the gateway saw), so that "setup with the hook -
setup without = one hook round trip" can be read off the table, and hook calls per setup.

Part 2, HLS viewers (ours only: nginx-rtmp has no per-session HLS authorisation): ``--viewers``
sessions over ``--ramp`` seconds, each started as a player starts one: GET index.m3u8 without a
token (the one request the hook is asked about), then only URIs from the playlists it got, which
carry the playback token. ``--viewer-mode segments`` (default) reloads the variant index.m3u8
names (cmaf.m3u8) without blocking every target duration and downloads the init segment and new
segments (RFC 8216 §6.3.4; hls.js without lowLatencyMode); ``ll`` follows it with blocking
reloads and parts as bench/llviewers.py does. Reported: hook read calls per session
(must be <= 1), requests/s, statuses, response times, server CPU and the bench's own CPU, for
the same viewers against the server without read_auth (the cost of token checks, signing and
per-viewer playlists).

The hook is a minimal HTTP/1.1 server (h11) in a thread of the bench process with its own trio
loop, so that 1000 viewers on the bench's loop do not delay its answers by their queueing.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import h11
import httpx
import trio

from bench import llhls, publish
from bench.latency import percentile
from bench.llviewers import GZIP, _part_headers
from bench.procs import Procs, cpu_seconds
from bench.report import Table
from bench.targets import APP, LABELS, Target, open_target

KEY = "authview"  # the stream that is played and watched
API_TOKEN = "bench-" + secrets.token_urlsafe(16)  # lets the bench read ours' /metrics
# Seconds one RTMP setup may take before it counts as failed.
SETUP_TIMEOUT = 10.0
# Seconds the gateway gives the hook (the default 2 s is plenty; a loaded bench is not a refusal).
HOOK_TIMEOUT = 10.0
# Seconds after the ramp before the window opens.
SETTLE_SECONDS = 2.0
# Seconds an HTTP request may take before it counts as an error.
REQUEST_TIMEOUT = 10.0
# Seconds a viewer waits before starting a new session after a failed one.
RETRY_SECONDS = 1.0


# --- the hook ---------------------------------------------------------------------------------
def hook_action(body: bytes) -> str:
    """The action asked about: ours POSTs JSON with "action"; nginx-rtmp a form with "call"
    (publish, play, ...; play is a read)."""
    try:
        value = json.loads(body)
        if isinstance(value, dict) and isinstance(value.get("action"), str):
            return str(value["action"])
    except ValueError:
        pass
    call = parse_qs(body.decode("latin-1")).get("call", ["?"])[0]
    return "read" if call == "play" else call


@dataclass
class BenchHook:
    """Answers 200 to every POST after ``delay`` seconds; counts requests by (path, action)."""

    delay: float = 0.0
    port: int = 0
    calls: Counter[tuple[str, str]] = field(default_factory=Counter)
    # (path, action, seconds from the request's last byte to the answer's)
    served: list[tuple[str, str, float]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def snapshot(self) -> tuple[Counter[tuple[str, str]], int]:
        with self._lock:
            return Counter(self.calls), len(self.served)

    def service_since(self, mark: int, path: str) -> list[float]:
        with self._lock:
            return [s for p, _, s in self.served[mark:] if p == path]

    @asynccontextmanager
    async def running(self) -> AsyncIterator[BenchHook]:
        ready, stop = threading.Event(), threading.Event()
        thread = threading.Thread(target=trio.run, args=(self._serve, ready, stop), daemon=True)
        thread.start()
        await trio.to_thread.run_sync(ready.wait)
        try:
            yield self
        finally:
            stop.set()
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(thread.join)

    async def _serve(self, ready: threading.Event, stop: threading.Event) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1", backlog=4096)
        self.port = int(listeners[0].socket.getsockname()[1])
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, self._connection, listeners)
            ready.set()
            while not stop.is_set():
                await trio.sleep(0.05)
            nursery.cancel_scope.cancel()

    async def _connection(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            async with stream:
                while await self._exchange(stream, conn):
                    conn.start_next_cycle()
        except (h11.ProtocolError, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass

    async def _exchange(self, stream: trio.SocketStream, conn: h11.Connection) -> bool:
        """One request and its answer; False when the connection is over."""
        path, body = "", bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Request):
                path = event.target.decode("latin-1").lstrip("/")
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            else:  # ConnectionClosed, PAUSED
                return False
        started = time.perf_counter()
        action = hook_action(bytes(body))
        if self.delay:
            await trio.sleep(self.delay)
        answer = h11.Response(status_code=200, headers=[("content-length", "0")])
        await stream.send_all(conn.send(answer) + (conn.send(h11.EndOfMessage()) or b""))
        with self._lock:
            self.calls[path, action] += 1
            self.served.append((path, action, time.perf_counter() - started))
        return conn.our_state is h11.DONE and conn.their_state is h11.DONE


async def hook_round_trips(url: str, n: int) -> list[float]:
    """``n`` sequential POSTs of a gateway-like body through one keep-alive httpx client."""
    body = json.dumps({"action": "publish", "protocol": "rtmp", "app": APP, "key": "probe",
                       "query": "", "ip": "127.0.0.1", "token": None}).encode()  # fmt: skip
    times = []
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT) as client:
        await client.post(url, content=body)  # the connection, as the gateway's is warm
        for _ in range(n):
            t0 = time.perf_counter()
            r = await client.post(url, content=body, headers={"content-type": "application/json"})
            times.append(time.perf_counter() - t0)
            r.raise_for_status()
    return times


# --- RTMP setup -------------------------------------------------------------------------------
@dataclass
class Setup:
    total: float  # TCP connect started -> Publish.Start / Play.Start
    command: float  # publish / play sent -> that status
    first_media: float | None = None  # play: TCP connect started -> first audio/video message


async def rtmp_setup(port: int, key: str, *, play: bool) -> Setup:
    from gateway.rtmp import events as ev
    from gateway.rtmp.connection import NEED_DATA, Connection, Role

    wanted = "NetStream.Play.Start" if play else "NetStream.Publish.Start"
    t0 = trio.current_time()
    sock = await trio.open_tcp_stream("127.0.0.1", port)
    async with sock:
        conn = Connection(role=Role.CLIENT)
        conn.connect(APP, f"rtmp://127.0.0.1:{port}/{APP}")
        conn.play(key) if play else conn.publish(key)
        sent = started = None
        while True:
            while (event := conn.next_event()) is not NEED_DATA:
                now = trio.current_time()
                if isinstance(event, ev.StreamCreated):
                    sent = now  # the publish/play command is queued now, sent just below
                elif isinstance(event, ev.Status):
                    if event.code == wanted:
                        started = now
                        if not play:
                            return Setup(started - t0, started - (sent or t0))
                    elif event.level == "error":
                        raise RuntimeError(f"{event.code}: {event.description}")
                elif isinstance(event, ev.Media) and event.type in (8, 9) and started is not None:
                    return Setup(started - t0, started - (sent or t0), now - t0)
                elif isinstance(event, ev.ConnectResult) and not event.success:
                    raise RuntimeError(f"connect refused: {event.description}")
                elif isinstance(event, ev.ConnectionClosed):
                    raise RuntimeError("server closed the connection")
            if out := conn.data_to_send():
                await sock.send_all(out)
            conn.receive_data(await sock.receive_some(65536))


# --- servers ----------------------------------------------------------------------------------
@dataclass
class Server:
    column: str  # "ours", "ours+hook", "nginx-rtmp", "nginx-rtmp+hook"
    target: Target
    hook_path: str | None  # the hook's path for this server (None: no hook)
    scope: trio.CancelScope  # cancelled: the server stops
    publisher: trio.Process

    @property
    def ours(self) -> bool:
        return self.target.name == "ours"


def _columns(targets: list[str]) -> list[str]:
    return [f"{LABELS[t]}{suffix}" for t in targets for suffix in ("", "+hook")]


async def _metric_sums(server: Server, client: httpx.AsyncClient) -> tuple[float, float] | None:
    """(sum, count) of ours' auth_hook_duration_seconds, from /metrics."""
    if not server.ours or server.hook_path is None:
        return None
    r = await client.get(
        f"{server.target.http_base()}/metrics", headers={"authorization": f"Bearer {API_TOKEN}"}
    )
    values = {}
    for line in r.text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("auth_hook_duration_seconds_sum", "auth_hook_duration_seconds_count"):
            values[name] = float(value)
    return values.get("auth_hook_duration_seconds_sum", 0.0), values.get(
        "auth_hook_duration_seconds_count", 0.0
    )


def _ms(v: float | None) -> float | None:
    return None if v is None else round(v * 1000, 2)


def _dist(values: list[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "p50_ms": _ms(percentile(values, 50)),
        "p90_ms": _ms(percentile(values, 90)),
        "p99_ms": _ms(percentile(values, 99)),
        "max_ms": _ms(max(values, default=None)),
    }


async def part1(
    opts: Any, servers: list[Server], hook: BenchHook, client: httpx.AsyncClient
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    mark = hook.snapshot()[1]
    sums0 = {s.column: await _metric_sums(s, client) for s in servers}
    for what, play in (("publish", False), ("play", True)):
        setups: dict[str, list[Setup]] = {s.column: [] for s in servers}
        failed: Counter[str] = Counter()
        errors: dict[str, str] = {}
        calls_before = hook.snapshot()[0]
        for i in range(opts.setups):
            for s in servers:  # interleaved: every column sees the same moments of noise
                key = KEY if play else f"pub{i}"
                try:
                    with trio.fail_after(SETUP_TIMEOUT):
                        setup = await rtmp_setup(s.target.rtmp_port, key, play=play)
                    setups[s.column].append(setup)
                except (trio.TooSlowError, RuntimeError, OSError) as exc:
                    failed[s.column] += 1
                    errors.setdefault(s.column, f"{type(exc).__name__}: {exc}")
        calls = hook.snapshot()[0] - calls_before
        action = "read" if play else "publish"
        for s in servers:
            ok = setups[s.column]
            made = calls[s.hook_path, action] if s.hook_path else 0
            res = out.setdefault(s.column, {"column": s.column, "target": s.target.name})
            res[what] = {
                "setups": len(ok),
                "failed": failed[s.column],
                "error": errors.get(s.column),
                "total": _dist([x.total for x in ok]),
                "command": _dist([x.command for x in ok]),
                "hook_calls": made,
                "hook_calls_per_setup": round(made / opts.setups, 3) if s.hook_path else None,
            }
            if play:
                res[what]["first_media"] = _dist([x.first_media for x in ok if x.first_media])
    for s in servers:
        res = out[s.column]
        if s.hook_path is not None:
            res["hook_service"] = _dist(hook.service_since(mark, s.hook_path))
            before, after = sums0[s.column], await _metric_sums(s, client)
            if before is not None and after is not None and after[1] > before[1]:
                res["gateway_hook_mean_ms"] = _ms((after[0] - before[0]) / (after[1] - before[1]))
    return out


# --- HLS viewers ------------------------------------------------------------------------------
@dataclass
class Load:
    """What all viewers record (one trio thread: no locks)."""

    sessions: int = 0
    requests: int = 0
    received: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    error_sample: str | None = None
    playlist_times: list[tuple[float, float]] = field(default_factory=list)  # (done, seconds)
    media_times: list[tuple[float, float]] = field(default_factory=list)

    def fail(self, what: str) -> None:
        self.errors[what.split(":")[0]] += 1
        self.error_sample = self.error_sample or what


class _Restart(Exception):
    """The session cannot go on (a refusal, a lost playlist): the viewer starts a new one."""


async def _get(
    conn: llhls.HttpConnection,
    load: Load,
    kind: str,
    target: str,
    headers: bytes = b"",
    *,
    keep_body: bool = True,
) -> llhls.Response:
    t0 = time.time()
    with trio.fail_after(REQUEST_TIMEOUT):
        r = await conn.get(target, headers, keep_body=keep_body)
    t1 = time.time()
    load.requests += 1
    load.received += r.size
    (load.playlist_times if kind == "playlist" else load.media_times).append((t1, t1 - t0))
    if r.status not in (200, 206):
        load.statuses[f"{kind} {r.status}"] += 1
        raise _Restart
    return r


def _media_playlist(text: str) -> tuple[int, list[str], str | None]:
    """(EXT-X-MEDIA-SEQUENCE, URI lines, EXT-X-MAP URI) of a playlist; the URI lines of a
    multivariant playlist are its variants."""
    seq, uris, init = 0, [], None
    for line in text.splitlines():
        if line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            seq = int(line.partition(":")[2])
        elif line.startswith("#EXT-X-MAP:"):
            init = line.partition('URI="')[2].partition('"')[0]
        elif line and not line.startswith("#"):
            uris.append(line.strip())
    return seq, uris, init


async def viewer(port: int, mode: str, reload_s: float, load: Load) -> None:
    """Playback sessions, one after another: a session that fails is started again."""
    conn = llhls.HttpConnection("127.0.0.1", port)
    index = f"/{APP}/{KEY}/index.m3u8"
    try:
        while True:
            try:
                load.sessions += 1  # the tokenless request: the one the hook may be asked about
                r = await _get(conn, load, "playlist", index, GZIP)
                variants = _media_playlist(r.text())[1]
                if not variants:
                    raise llhls.HttpError("index.m3u8 names no variant")
                path = llhls.resolve(index, variants[0])  # carries the session's token
                if mode == "ll":
                    await _follow_parts(conn, path, load)
                else:
                    await _follow_segments(conn, path, reload_s, load)
                return
            except _Restart:
                pass
            except trio.TooSlowError:
                load.fail("timeout")
            except (OSError, llhls.HttpError, ValueError, KeyError) as exc:
                load.fail(f"{type(exc).__name__}: {exc}")
            conn.close()
            await trio.sleep(RETRY_SECONDS)
    finally:
        conn.close()


async def _follow_segments(
    conn: llhls.HttpConnection, path: str, reload_s: float, load: Load
) -> None:
    """Reload without blocking every target duration; fetch the init segment once and every
    new segment (a player without low-latency mode, e.g. hls.js's default)."""
    base = path.partition("?")[0]
    last: int | None = None
    while True:
        started = trio.current_time()
        seq, uris, init = _media_playlist((await _get(conn, load, "playlist", path, GZIP)).text())
        if last is None and init is not None:
            await _get(conn, load, "media", llhls.resolve(base, init), keep_body=False)
        for msn, uri in enumerate(uris, seq):
            if (last is None and msn == seq + len(uris) - 1) or (last is not None and msn > last):
                await _get(conn, load, "media", llhls.resolve(base, uri), keep_body=False)
                last = msn
        await trio.sleep_until(started + reload_s)


async def _follow_parts(conn: llhls.HttpConnection, path: str, load: Load) -> None:
    base = path.partition("?")[0]
    pl = llhls.parse((await _get(conn, load, "playlist", path, GZIP)).text())
    if not pl.can_block_reload:
        raise llhls.HttpError(f"{base} is not a Low-Latency HLS playlist")
    want = pl.edge
    sep = "&" if "?" in path else "?"
    while True:
        reload = f"{path}{sep}_HLS_msn={want[0]}&_HLS_part={want[1]}"
        pl = llhls.parse((await _get(conn, load, "playlist", reload, GZIP)).text())
        part = pl.parts.get(want)
        if part is None and want[0] < pl.open_msn and (want[0], 0) in pl.parts:
            want = (want[0] + 1, 0)  # the segment closed with fewer parts
            part = pl.parts.get(want)
        if part is None:
            oldest = min(pl.parts, default=None)
            if oldest is not None and want < oldest:
                want = pl.edge  # fell behind the listed parts: on at the live edge
            else:
                await trio.sleep(0.5 * (pl.part_target or 0.2))
            continue
        uri = llhls.resolve(base, part.uri)
        await _get(conn, load, "media", uri, _part_headers(part), keep_body=False)
        want = pl.next_after(part.msn, part.index)


async def part2(opts: Any, server: Server, hook: BenchHook) -> dict[str, Any]:
    load = Load()
    calls0 = hook.snapshot()[0]
    target = server.target
    async with trio.open_nursery() as nursery:
        for _ in range(opts.viewers):
            nursery.start_soon(
                viewer, target.http_port, opts.viewer_mode, opts.target_duration, load
            )
            await trio.sleep(opts.ramp / opts.viewers)
        await trio.sleep(SETTLE_SECONDS)
        requests0, received0 = load.requests, load.received
        server0, own0 = cpu_seconds(target.pids()), cpu_seconds([os.getpid()])
        t0 = time.time()
        await trio.sleep(opts.seconds)
        t1 = time.time()
        server1, own1 = cpu_seconds(target.pids()), cpu_seconds([os.getpid()])
        requests1, received1 = load.requests, load.received
        nursery.cancel_scope.cancel()
    calls = hook.snapshot()[0] - calls0
    reads = calls[server.hook_path, "read"] if server.hook_path else 0
    window = t1 - t0
    return {
        "viewers": opts.viewers,
        "sessions": load.sessions,
        "hook_read_calls": reads,
        "hook_calls_per_session": round(reads / load.sessions, 4) if server.hook_path else None,
        "requests_per_s": round((requests1 - requests0) / window, 1),
        "mb_per_s": round((received1 - received0) / window / 1e6, 2),
        "playlist": _dist([s for t, s in load.playlist_times if t0 <= t <= t1]),
        "media": _dist([s for t, s in load.media_times if t0 <= t <= t1]),
        "statuses": dict(load.statuses),
        "errors": dict(load.errors),
        "error_sample": load.error_sample,
        "server_cpu_percent": round(100 * (server1 - server0) / window, 1),
        "bench_cpu_percent": round(100 * (own1 - own0) / window, 1),
        "window_s": round(window, 2),
    }


# --- the scenario -----------------------------------------------------------------------------
def _hook_settings(url: str) -> dict[str, str]:
    return {
        "GATEWAY_AUTH_HOOK_URL": url,
        "GATEWAY_AUTH_HOOK_TIMEOUT": f"{HOOK_TIMEOUT:g}",
        "GATEWAY_READ_AUTH": "true",
        "GATEWAY_API_TOKEN": API_TOKEN,
    }


async def run_all(
    opts: Any, targets: list[str], fixture: Path, workdir: Path, hook: BenchHook
) -> dict[str, Any]:
    runs: dict[str, dict[str, Any]] = {}
    async with Procs() as procs, httpx.AsyncClient(timeout=REQUEST_TIMEOUT) as client:
        servers: list[Server] = []
        async with trio.open_nursery() as watching:
            for name in targets:
                for with_hook in (False, True):
                    column = f"{LABELS[name]}{'+hook' if with_hook else ''}"
                    path = f"{name}-hook" if with_hook else None
                    url = hook.url(path) if path else ""
                    opened = open_target(
                        name, procs, workdir / column,
                        target_duration=opts.target_duration, nginx_workers=opts.nginx_workers,
                        cpus=opts.cpus,
                        settings=_hook_settings(url) if path else None,
                        nginx_directives=f"on_publish {url};\non_play {url};" if path else "",
                    )  # fmt: skip
                    try:
                        target, scope = await watching.start(_hold, opened)
                        pub, watcher, tracker = await publish.publish_one(
                            procs, target, fixture, KEY, workdir / f"{column}-logs"
                        )
                    except RuntimeError as exc:
                        runs[column] = {"column": column, "target": name, "error": str(exc)}
                        continue
                    watching.start_soon(publish.watch_forever, watcher, tracker)
                    servers.append(Server(column, target, path, scope, pub))
            rtt = await hook_round_trips(hook.url("probe"), opts.setups)
            for column, res in (await part1(opts, servers, hook, client)).items():
                runs[column] = res
            for s in servers:
                runs[s.column]["server_alive"] = s.target.alive()
                if not s.ours:  # part 2 is ours only: the others' ingest would only add noise
                    await procs.stop(s.publisher)
                    s.scope.cancel()
            for s in servers:
                if s.ours and opts.viewers > 0:  # --viewers 0: setup only
                    runs[s.column]["viewers"] = await part2(opts, s, hook)
                    runs[s.column]["server_alive"] = s.target.alive()
            watching.cancel_scope.cancel()
    return {"hook_round_trip": _dist(rtt), "runs": runs}


async def _hold(
    opened: Any, *, task_status: trio.TaskStatus[tuple[Target, trio.CancelScope]]
) -> None:
    """Keep a target open in the nursery until it or its own scope is cancelled."""
    with trio.CancelScope() as scope:
        async with opened as target:
            task_status.started((target, scope))
            await trio.sleep_forever()


async def run(
    opts: Any, targets: list[str], fixture: Path, workdir: Path
) -> tuple[dict[str, Any], Table]:
    hook = BenchHook(delay=opts.hook_delay / 1000)
    async with hook.running():
        result = await run_all(opts, targets, fixture, workdir, hook)
    columns = _columns(targets)
    table = Table(
        f"auth: publish/play setup ({opts.setups} each) and {opts.viewers} HLS viewers "
        f"({opts.viewer_mode}) of one {fixture.name} stream, {opts.seconds:g} s, "
        f"hook delay {opts.hook_delay:g} ms",
        columns,
    )
    runs = result["runs"]

    def row(group: str, metric: str, *path: str) -> None:
        values = {}
        for c in columns:
            v: Any = runs.get(c)
            for p in path:
                v = v.get(p) if isinstance(v, dict) else None
            values[c] = v
        table.add(group, metric, values)

    rtt = result["hook_round_trip"]
    for what in ("publish", "play"):
        status = "Publish.Start" if what == "publish" else "Play.Start"
        row(f"{what} setup", f"connect->{status} p50 ms", what, "total", "p50_ms")
        row(f"{what} setup", f"connect->{status} p90 ms", what, "total", "p90_ms")
        row(f"{what} setup", f"{what}->{status} p50 ms", what, "command", "p50_ms")
        if what == "play":
            row(f"{what} setup", "connect->first media p50 ms", what, "first_media", "p50_ms")
        for c in columns:  # the hook's cost: this column's p50 less the same server's without
            base = runs.get(c.removesuffix("+hook"), {}).get(what)
            mine = runs.get(c, {}).get(what)
            if c.endswith("+hook") and base and mine:
                for stage in ("total", "command"):
                    a, b = mine[stage]["p50_ms"], base[stage]["p50_ms"]
                    if a is not None and b is not None:
                        mine[f"added_{stage}_p50_ms"] = round(a - b, 2)
        row(f"{what} setup", "with hook - without: connect p50 ms", what, "added_total_p50_ms")
        row(f"{what} setup", f"with hook - without: {what} p50 ms", what, "added_command_p50_ms")
        row(f"{what} setup", "hook calls per setup", what, "hook_calls_per_setup")
        row(f"{what} setup", "failed", what, "failed")
    table.add("hook", "round trip p50 ms (bench, httpx)", {c: rtt["p50_ms"] for c in columns
                                                          if c.endswith("+hook")})  # fmt: skip
    row("hook", "service p50 ms (in the hook)", "hook_service", "p50_ms")
    row("hook", "round trip mean ms (gateway metrics)", "gateway_hook_mean_ms")
    if opts.viewers > 0:
        row("hls viewers", "sessions started", "viewers", "sessions")
        row("hls viewers", "hook read calls", "viewers", "hook_read_calls")
        row("hls viewers", "hook calls per session", "viewers", "hook_calls_per_session")
        row("hls viewers", "requests /s", "viewers", "requests_per_s")
        row("hls viewers", "MB/s", "viewers", "mb_per_s")
        row("hls viewers", "playlist p50 ms", "viewers", "playlist", "p50_ms")
        row("hls viewers", "playlist p99 ms", "viewers", "playlist", "p99_ms")
        row("hls viewers", "segment/part p50 ms", "viewers", "media", "p50_ms")
        row("hls viewers", "segment/part p99 ms", "viewers", "media", "p99_ms")
        row("hls viewers", "non-200 statuses", "viewers", "statuses")
        row("hls viewers", "errors", "viewers", "errors")
        row("cpu", "server % (window)", "viewers", "server_cpu_percent")
        row("cpu", "bench client % (window)", "viewers", "bench_cpu_percent")
    for c, r in runs.items():
        if r.get("error"):
            table.add("error", "", {c: r["error"].splitlines()[0][:60]})
    params = {
        "setups": opts.setups,
        "viewers": opts.viewers,
        "viewer_mode": opts.viewer_mode,
        "ramp": opts.ramp,
        "seconds": opts.seconds,
        "hook_delay_ms": opts.hook_delay,
        "fixture": str(fixture),
        "target_duration": opts.target_duration,
        "targets": targets,
    }
    ordered = [runs[c] for c in columns if c in runs]
    return {"params": params, "hook_round_trip": rtt, "runs": ordered}, table
