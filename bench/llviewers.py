"""Scenario llviewers: N Low-Latency HLS viewers of one published stream (ours only).

Each viewer is one keep-alive HTTP/1.1 connection (bench/llhls.py) that does what an LL-HLS
player does (draft-pantos-hls-rfc8216bis §6.2.5.2, §6.3.7): it loads the media playlist once,
then loops

    GET cmaf.m3u8?_HLS_msn=M&_HLS_part=N   (blocking reload: answered once that part exists)
    GET <that part's URI>

starting at the part being made when it joined and following every part after it. Figures over
the window (the ramp excluded):

- parts fetched per second (all viewers) against what N viewers need (N / part duration);
- part lateness: when its bytes were all in, against (a) the moment any viewer first got a
  playlist listing it ("listed") and (b) the part's end in wall-clock time, from
  PROGRAM-DATE-TIME plus the durations of the parts before it ("end"); a part is *late* when it
  arrived more than one part duration after its end;
- blocking-reload wait and part download times, HTTP statuses other than 200, connection errors,
  reloads that came back without the part asked for, and viewers that fell out of the playlist;
- server CPU and the bench client's own CPU (one process, on the non-server CPUs: when it is
  near 100 % of its core the figures are the client's limit, not the server's);
- ingest health: the stream's /api/streams entry (``newest_segment_age``, ``late``), polled every
  second, and the segment cadence of the playlist file, first without viewers and then with them.
"""

from __future__ import annotations

import os
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio

from bench import llhls, publish
from bench.hls import PlaylistTracker
from bench.latency import percentile
from bench.procs import Procs, cpu_seconds
from bench.proxy import KeyframeLog, serve_proxy
from bench.report import Table
from bench.targets import APP, Target, open_target

KEY = "llview"
# Seconds over which viewers start (they then follow parts, so they stay spread in time only
# by the server's answers).
RAMP_SECONDS = 2.0
# Seconds after the ramp before the window opens: every viewer is past its first part.
SETTLE_SECONDS = 2.0
# Seconds a request may take before it counts as an error (a blocking reload is answered
# within a part duration normally; rfc8216bis §6.2.5.2 lets a server hold it 3 target durations).
REQUEST_TIMEOUT = 10.0
# Seconds between polls of the stream's API entry.
API_INTERVAL = 1.0
# A reload answered without the part asked for is retried after this fraction of a part.
EARLY_RETRY_PARTS = 0.5
# Playlists parsed and kept by content (viewers mostly receive identical bytes).
PARSE_CACHE = 64
GZIP = b"Accept-Encoding: gzip\r\n"


@dataclass
class Shared:
    """What all viewers record (one trio thread: no locks)."""

    first_listed: dict[tuple[int, int], float] = field(default_factory=dict)
    fetched: list[tuple[float, int, int, float, float | None]] = field(default_factory=list)
    # (done wall, msn, index, duration, end wall)
    reload_waits: list[tuple[float, float]] = field(default_factory=list)  # (done, seconds)
    part_times: list[tuple[float, float]] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    error_sample: str | None = None
    early_reloads: int = 0
    resyncs: int = 0
    received: int = 0  # bytes
    part_target: float | None = None
    has_pdt: bool = False
    can_block: bool | None = None
    starts: dict[int, float] = field(default_factory=dict)  # msn -> PDT start (wall clock)
    _cache: dict[bytes, llhls.LLPlaylist] = field(default_factory=dict)

    def parse(self, r: llhls.Response, now: float) -> llhls.LLPlaylist:
        pl = self._cache.get(r.body)
        if pl is None:
            pl = llhls.parse(r.text())
            if len(self._cache) >= PARSE_CACHE:
                del self._cache[next(iter(self._cache))]
            self._cache[r.body] = pl
            for key in pl.parts:  # the first answer that lists a part: when it was listed
                self.first_listed.setdefault(key, now)
            for msn, start in pl.starts.items():
                self.starts.setdefault(msn, start)
            self.part_target = pl.part_target or self.part_target
            self.has_pdt = self.has_pdt or pl.has_pdt
            self.can_block = pl.can_block_reload
        return pl

    def fail(self, what: str) -> None:
        self.errors[what.split(":")[0]] += 1
        self.error_sample = self.error_sample or what


def _part_headers(part: llhls.Part) -> bytes:
    if part.byterange is None:
        return b""
    offset, length = part.byterange
    return f"Range: bytes={offset}-{offset + length - 1}\r\n".encode()


async def viewer(port: int, path: str, shared: Shared) -> None:
    conn = llhls.HttpConnection("127.0.0.1", port)
    try:
        await _follow(conn, path, shared)
    finally:
        conn.close()


async def _follow(conn: llhls.HttpConnection, path: str, shared: Shared) -> None:
    pl: llhls.LLPlaylist | None = None
    want: tuple[int, int] | None = None
    while True:
        try:
            with trio.fail_after(REQUEST_TIMEOUT):
                if want is None:  # join (or re-join) at the part being made
                    r = await conn.get(path, GZIP)
                    if r.status != 200:
                        shared.statuses[f"playlist {r.status}"] += 1
                        await trio.sleep(1.0)
                        continue
                    pl = shared.parse(r, time.time())
                    if pl.ended:
                        return
                    want = pl.edge
                t0 = time.time()
                r = await conn.get(f"{path}?_HLS_msn={want[0]}&_HLS_part={want[1]}", GZIP)
                t1 = time.time()
                if r.status != 200:
                    shared.statuses[f"reload {r.status}"] += 1
                    want = None
                    await trio.sleep(1.0)
                    continue
                pl = shared.parse(r, t1)
                shared.reload_waits.append((t1, t1 - t0))
                shared.received += r.size
                part = pl.parts.get(want)
                if part is None and want[0] < pl.open_msn and (want[0], 0) in pl.parts:
                    # The segment closed with fewer parts: the next is part 0 of the next one.
                    want = (want[0] + 1, 0)
                    part = pl.parts.get(want)
                if part is None:
                    if pl.ended:
                        return
                    oldest = min(pl.parts, default=None)
                    if oldest is not None and want < oldest:
                        # Fell behind the parts still listed (about 3 target durations): join
                        # again at the live edge.
                        shared.resyncs += 1
                        want = None
                    else:
                        shared.early_reloads += 1
                        await trio.sleep(EARLY_RETRY_PARTS * (pl.part_target or 0.2))
                    continue
                base = path.partition("?")[0]
                pr = await conn.get(
                    llhls.resolve(base, part.uri), _part_headers(part), keep_body=False
                )
                t2 = time.time()
                if pr.status not in (200, 206):
                    shared.statuses[f"part {pr.status}"] += 1
                else:
                    shared.received += pr.size
                    shared.part_times.append((t2, t2 - t1))
                    shared.fetched.append((t2, part.msn, part.index, part.duration, part.end_wall))
                want = pl.next_after(part.msn, part.index)
        except trio.TooSlowError:
            shared.fail("timeout")
            conn.close()
            want = None
        except (OSError, llhls.HttpError, ValueError) as exc:
            shared.fail(f"{type(exc).__name__}: {exc}")
            conn.close()
            want = None
            await trio.sleep(0.5)


@dataclass
class ApiWatch:
    """The stream's /api/streams entry, polled: the gateway's own view of its ingest."""

    samples: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    errors: int = 0

    async def run(self, client: httpx.AsyncClient, url: str) -> None:
        while True:
            try:
                r = await client.get(url, timeout=REQUEST_TIMEOUT)
                if r.status_code == 200:
                    self.samples.append((time.time(), r.json()))
                else:
                    self.errors += 1
            except (httpx.HTTPError, ValueError):
                self.errors += 1
            await trio.sleep(API_INTERVAL)

    def summary(self, start: float, end: float) -> dict[str, Any]:
        inside = [s for t, s in self.samples if start <= t <= end]
        ages = [s["newest_segment_age"] for s in inside if s.get("newest_segment_age") is not None]
        out: dict[str, Any] = {
            "polls": len(inside),
            "max_newest_segment_age_s": round(max(ages), 3) if ages else None,
        }
        for counter in ("late", "dropped", "jumps"):
            values = [s[counter] for s in inside if isinstance(s.get(counter), int)]
            out[f"{counter}_delta"] = values[-1] - values[0] if values else None
        counts = [s["segment_count"] for s in inside if isinstance(s.get("segment_count"), int)]
        out["segments"] = counts[-1] - counts[0] if counts else None
        return out


def _ms(v: float | None) -> float | None:
    return None if v is None else round(v * 1000, 1)


def _dist(values: list[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "p50_ms": _ms(percentile(values, 50)),
        "p99_ms": _ms(percentile(values, 99)),
        "max_ms": _ms(max(values, default=None)),
        "mean_ms": _ms(statistics.fmean(values)) if values else None,
    }


def pdt_offset(starts: dict[int, float], keyframes: list[float]) -> float | None:
    """How much later the playlist's PROGRAM-DATE-TIME puts a segment than its first keyframe
    reached the server (median over segments, each matched to the nearest keyframe arrival;
    both wall clock). Segments start at keyframes, so this is the error of the PDT."""
    if not keyframes:
        return None
    offsets = [pdt - min(keyframes, key=lambda k: abs(k - pdt)) for pdt in starts.values()]
    return statistics.median(offsets) if offsets else None


def figures(
    shared: Shared, start: float, end: float, viewers: int, offset: float | None = None
) -> dict[str, Any]:
    """The window's figures; ``offset`` (pdt_offset) is taken off the PDT-derived part ends, so
    "end" is when the part's last media reached the server."""
    window = end - start
    inside = [f for f in shared.fetched if start <= f[0] <= end]
    vs_listed, vs_end = [], []
    late_listed = late_end = 0
    for done, msn, index, duration, end_wall in inside:
        listed = shared.first_listed.get((msn, index))
        if listed is not None:
            vs_listed.append(done - listed)
            late_listed += done - listed > duration
        if end_wall is not None:
            arrived = end_wall - (offset or 0.0)
            vs_end.append(done - arrived)
            late_end += done - arrived > duration
    n = len(inside)
    mean_part = statistics.fmean(f[3] for f in inside) if inside else shared.part_target
    return {
        "window_s": round(window, 2),
        "parts": n,
        "parts_per_s": round(n / window, 1),
        "parts_needed_per_s": round(viewers / mean_part, 1) if mean_part else None,
        "part_target_s": shared.part_target,
        "mean_part_s": round(mean_part, 4) if mean_part else None,
        "pdt_offset_ms": _ms(offset),
        "late_vs_listed": _dist(vs_listed),
        "late_vs_end": _dist(vs_end) if vs_end else None,
        "late_fraction": round(late_end / len(vs_end), 4) if vs_end else None,
        "late_fraction_vs_listed": round(late_listed / len(vs_listed), 4) if vs_listed else None,
        "reload_wait": _dist([w for t, w in shared.reload_waits if start <= t <= end]),
        "part_download": _dist([w for t, w in shared.part_times if start <= t <= end]),
        "mb_per_s": round(shared.received / window / 1e6, 2),
    }


async def run_one(opts: Any, fixture: Path, workdir: Path) -> dict[str, Any]:
    res: dict[str, Any] = {"target": "ours", "viewers": opts.viewers}
    kf = KeyframeLog()
    async with Procs() as procs, open_target(
        "ours", procs, workdir / "ours",
        target_duration=opts.target_duration, cpus=opts.cpus,
    ) as target, trio.open_nursery() as proxy:  # fmt: skip
        if target.ll_playlist is None and opts.playlist == "cmaf.m3u8":
            raise RuntimeError("this gateway serves no LL-HLS playlist (cmaf.m3u8)")
        # Through the keyframe-timing proxy: when media really reached the server (the PDT
        # check and the "after part end" reference).
        port = await proxy.start(serve_proxy, target.rtmp_port, kf)
        to_wall = time.time() - trio.current_time()
        pub, watcher, tracker = await publish.publish_one(
            procs, target, fixture, KEY, workdir / "ours-logs",
            url=f"rtmp://127.0.0.1:{port}/{APP}/{KEY}",
        )  # fmt: skip
        api = ApiWatch()
        async with httpx.AsyncClient() as client, trio.open_nursery() as watching:
            watching.start_soon(publish.watch_forever, watcher, tracker)
            watching.start_soon(api.run, client, f"{target.http_base()}/api/streams/{APP}/{KEY}")
            b0 = time.time()
            tb0 = trio.current_time()
            await trio.sleep(opts.baseline)
            res["ingest_without_viewers"] = {
                **api.summary(b0, time.time()),
                "cadence": tracker.summary(tb0, trio.current_time()),
            }
            await _load(
                res, opts, target, tracker, api, lambda: [k.arrived + to_wall for k in kf.keyframes]
            )
            watching.cancel_scope.cancel()
        proxy.cancel_scope.cancel()
        res["publisher_alive"] = pub.returncode is None
        res["server_alive"] = target.alive()
        if not target.alive():
            res["server_log"] = target.log_tail()
    return res


async def _load(
    res: dict[str, Any],
    opts: Any,
    target: Target,
    tracker: PlaylistTracker,
    api: ApiWatch,
    keyframes: Callable[[], list[float]],
) -> None:
    """The viewers; ``keyframes()``: wall-clock keyframe arrivals at the server so far."""
    shared = Shared()
    path = f"/{APP}/{KEY}/{opts.playlist}"
    async with trio.open_nursery() as nursery:
        for _ in range(opts.viewers):
            nursery.start_soon(viewer, target.http_port, path, shared)
            await trio.sleep(RAMP_SECONDS / opts.viewers)
        await trio.sleep(SETTLE_SECONDS)
        statuses0, errors0 = Counter(shared.statuses), Counter(shared.errors)
        early0, resync0, received0 = shared.early_reloads, shared.resyncs, shared.received
        server0, own0 = cpu_seconds(target.pids()), cpu_seconds([os.getpid()])
        v0, tv0 = time.time(), trio.current_time()
        await trio.sleep(opts.seconds)
        v1, tv1 = time.time(), trio.current_time()
        server1, own1 = cpu_seconds(target.pids()), cpu_seconds([os.getpid()])
        nursery.cancel_scope.cancel()
    shared.received -= received0
    res.update(figures(shared, v0, v1, opts.viewers, pdt_offset(shared.starts, keyframes())))
    window = v1 - v0
    res.update(
        statuses=dict(shared.statuses - statuses0),
        errors=dict(shared.errors - errors0),
        error_sample=shared.error_sample,
        early_reloads=shared.early_reloads - early0,
        resyncs=shared.resyncs - resync0,
        can_block_reload=shared.can_block,
        has_pdt=shared.has_pdt,
        server_cpu_percent=round(100 * (server1 - server0) / window, 1),
        bench_cpu_percent=round(100 * (own1 - own0) / window, 1),
        ingest_with_viewers={**api.summary(v0, v1), "cadence": tracker.summary(tv0, tv1)},
    )


async def run(
    opts: Any, targets: list[str], fixture: Path, workdir: Path
) -> tuple[dict[str, Any], Table]:
    try:
        r = await run_one(opts, fixture, workdir)
    except* RuntimeError as eg:
        r = {"target": "ours", "error": "; ".join(str(e) for e in eg.exceptions)}
    col = "ours"
    table = Table(
        f"llviewers: {opts.viewers} LL-HLS viewers of one {fixture.name} stream, "
        f"{opts.seconds:g} s",
        [col],
    )

    def row(group: str, metric: str, *path: str) -> None:
        v: Any = r
        for p in path:
            v = v.get(p) if isinstance(v, dict) else None
        table.add(group, metric, {col: v})

    row("parts", "fetched /s", "parts_per_s")
    row("parts", "needed /s", "parts_needed_per_s")
    row("parts", "part target s", "part_target_s")
    row("parts", "mean part s", "mean_part_s")
    row("pdt", "offset ms", "pdt_offset_ms")
    row("after listed", "p50 ms", "late_vs_listed", "p50_ms")
    row("after listed", "p99 ms", "late_vs_listed", "p99_ms")
    row("after part end", "p50 ms", "late_vs_end", "p50_ms")
    row("after part end", "p99 ms", "late_vs_end", "p99_ms")
    row("late parts", "fraction", "late_fraction")
    row("reload wait", "p50 ms", "reload_wait", "p50_ms")
    row("reload wait", "p99 ms", "reload_wait", "p99_ms")
    row("part download", "p50 ms", "part_download", "p50_ms")
    row("part download", "p99 ms", "part_download", "p99_ms")
    row("http", "non-200", "statuses")
    row("http", "errors", "errors")
    row("http", "early reloads", "early_reloads")
    row("http", "resyncs", "resyncs")
    row("load", "MB/s", "mb_per_s")
    row("cpu", "server %", "server_cpu_percent")
    row("cpu", "bench client %", "bench_cpu_percent")
    for phase, label in (("ingest_without_viewers", "ingest alone"),
                         ("ingest_with_viewers", "ingest+viewers")):  # fmt: skip
        row(label, "max segment age s", phase, "max_newest_segment_age_s")
        row(label, "late (counter)", phase, "late_delta")
        row(label, "max interval s", phase, "cadence", "max_interval_s")
        row(label, "late segments", phase, "cadence", "late")
    if r.get("error"):
        table.add("error", "", {col: r["error"].splitlines()[0][:60]})
    params = {
        "viewers": opts.viewers,
        "seconds": opts.seconds,
        "baseline": opts.baseline,
        "playlist": opts.playlist,
        "fixture": str(fixture),
        "target_duration": opts.target_duration,
        "targets": ["ours"],
    }
    return {"params": params, "runs": [r]}, table
