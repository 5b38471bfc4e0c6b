"""Scenario 4, viewers: N concurrent HTTP clients playing one live stream like HLS players do.

Each viewer reloads the playlist every target duration (RFC 8216 §6.3.4) and downloads every
segment it has not fetched yet, starting at the live edge. Measured: requests/s, MB/s, response
times, errors; and whether ingest is unaffected: the segment cadence with viewers against the same
stream's cadence just before, without them.
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path
from typing import Any

import httpx
import m3u8
import trio

from bench import configs, publish, wrk
from bench.configs import RunConfig
from bench.hls import PlaylistTracker
from bench.latency import percentile
from bench.procs import Procs, cpu_seconds
from bench.report import Table
from bench.targets import Target, open_target

# Seconds over which viewers start, so they do not all poll in the same instant.
RAMP_SECONDS = 2.0
# Seconds a viewer request may take before it counts as an error.
REQUEST_TIMEOUT = 10.0


class Stats:
    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {"playlist": [], "segment": []}
        self.bytes = 0
        self.errors = 0
        self.error_sample: str | None = None

    def fail(self, what: str) -> None:
        self.errors += 1
        self.error_sample = self.error_sample or what


async def viewer(client: httpx.AsyncClient, url: str, period: float, stats: Stats) -> None:
    last_seq: int | None = None  # newest media sequence number fetched
    while True:
        t = trio.current_time()
        try:
            r = await client.get(url, timeout=REQUEST_TIMEOUT)
            stats.times["playlist"].append(trio.current_time() - t)
            stats.bytes += len(r.content)
            if r.status_code != 200:
                stats.fail(f"playlist {r.status_code}")
                await trio.sleep(period)
                continue
            pl = m3u8.loads(r.text, uri=url)
            seq0 = pl.media_sequence or 0
            if last_seq is None:  # a player joins at the live edge: the newest segment only
                last_seq = seq0 + len(pl.segments) - 2
            for i, seg in enumerate(pl.segments):
                if seq0 + i <= last_seq:
                    continue
                last_seq = seq0 + i
                t = trio.current_time()
                sr = await client.get(seg.absolute_uri, timeout=REQUEST_TIMEOUT)
                stats.times["segment"].append(trio.current_time() - t)
                stats.bytes += len(sr.content)
                if sr.status_code != 200:
                    stats.fail(f"segment {sr.status_code}")
        except httpx.HTTPError as exc:
            stats.fail(f"{type(exc).__name__}: {exc}")
        await trio.sleep(period)


async def run_one(config: RunConfig, opts: Any, fixture: Path, workdir: Path) -> dict[str, Any]:
    layout = configs.plan(opts, config)
    res: dict[str, Any] = {**config.describe(), "viewers": opts.viewers, "cpus": layout.describe()}
    with configs.clients_on(opts, layout):
        async with Procs() as procs, open_target(
            config.target, procs, workdir / config.tag,
            target_duration=opts.target_duration, nginx_workers=opts.nginx_workers, cpus=layout,
            formats=config.formats, settings=config.settings,
        ) as target:  # fmt: skip
            await _phases(res, procs, target, opts, fixture, workdir / f"{config.tag}-logs")
    return res


async def _phases(
    res: dict[str, Any], procs: Procs, target: Target, opts: Any, fixture: Path, logdir: Path
) -> None:
    """Ingest alone, then the Python viewers (unless --wrk-only), then wrk."""
    pub, watcher, tracker = await publish.publish_one(procs, target, fixture, "view", logdir)
    url = target.playlist_url("view")
    async with trio.open_nursery() as watching:
        watching.start_soon(publish.watch_forever, watcher, tracker)
        b0 = trio.current_time()
        await trio.sleep(opts.seconds)
        b1 = trio.current_time()
        res["cadence_without_viewers"] = tracker.summary(b0, b1)
        if not getattr(opts, "wrk_only", False):
            await _load(res, opts, target, tracker)
        if wrk.available():
            h0 = trio.current_time()
            cpu0 = cpu_seconds(target.pids())
            res["wrk_playlist"] = await wrk.hammer(url, opts.viewers, opts.seconds)
            h1 = trio.current_time()
            # Server CPU while wrk ran (its whole tree; of one core, several with workers).
            res["wrk_playlist"]["server_cpu_percent"] = round(
                100 * (cpu_seconds(target.pids()) - cpu0) / (h1 - h0), 1
            )
            res["wrk_playlist"]["cadence"] = tracker.summary(h0, h1)
        watching.cancel_scope.cancel()
    res["publisher_alive"] = pub.returncode is None


async def _load(res: dict[str, Any], opts: Any, target: Target, tracker: PlaylistTracker) -> None:
    """Run the viewers for the window; figures cover the window only (not the ramp)."""
    stats = Stats()
    limits = httpx.Limits(max_connections=opts.viewers, max_keepalive_connections=opts.viewers)
    url = target.playlist_url("view")
    async with httpx.AsyncClient(limits=limits) as client, trio.open_nursery() as nursery:
        for _ in range(opts.viewers):
            nursery.start_soon(viewer, client, url, opts.target_duration, stats)
            await trio.sleep(RAMP_SECONDS / opts.viewers)
        first = {kind: len(times) for kind, times in stats.times.items()}
        start_bytes, start_errors = stats.bytes, stats.errors
        server_cpu0, own_cpu0 = cpu_seconds(target.pids()), cpu_seconds([os.getpid()])
        v0 = trio.current_time()
        await trio.sleep(opts.seconds)
        v1 = trio.current_time()
        server_cpu1, own_cpu1 = cpu_seconds(target.pids()), cpu_seconds([os.getpid()])
        nursery.cancel_scope.cancel()
    window = v1 - v0
    inside = {kind: times[first[kind] :] for kind, times in stats.times.items()}
    res.update(
        window_s=round(window, 2),
        requests_per_s=round(sum(len(t) for t in inside.values()) / window, 1),
        mb_per_s=round((stats.bytes - start_bytes) / window / 1e6, 2),
        errors=stats.errors - start_errors,
        error_sample=stats.error_sample,
        server_cpu_percent=round(100 * (server_cpu1 - server_cpu0) / window, 1),
        bench_cpu_percent=round(100 * (own_cpu1 - own_cpu0) / window, 1),
        cadence_with_viewers=tracker.summary(v0, v1),
    )
    for kind, times in inside.items():
        res[f"{kind}_ms"] = {
            "n": len(times),
            "p50": _ms(percentile(times, 50)),
            "p99": _ms(percentile(times, 99)),
            "mean": _ms(statistics.fmean(times)) if times else None,
        }


def _ms(v: float | None) -> float | None:
    return None if v is None else round(v * 1000, 1)


async def run(
    opts: Any, targets: list[str], fixture: Path, workdir: Path
) -> tuple[dict[str, Any], Table]:
    columns = configs.configs(opts, targets)
    runs = []
    for config in columns:
        try:
            runs.append(await run_one(config, opts, fixture, workdir))
        except RuntimeError as exc:  # a target that cannot start is a result, not a crash
            runs.append({**config.describe(), "error": str(exc)})
    table = Table(
        f"viewers: {opts.viewers} on one {fixture.name} stream, {opts.seconds:g} s",
        [c.column for c in columns],
    )
    by = {r["column"]: r for r in runs}

    def row(group: str, metric: str, *path: str) -> None:
        values: dict[str, Any] = {}
        for c in table.columns:
            v: Any = by[c]
            for p in path:
                v = v.get(p) if isinstance(v, dict) else None
            values[c] = v
        if all(v is None for v in values.values()):
            return  # a phase that did not run (--wrk-only, no wrk): no row of dashes
        table.add(group, metric, values)

    row("load", "requests/s", "requests_per_s")
    row("load", "MB/s", "mb_per_s")
    row("load", "errors", "errors")
    row("playlist", "p50 ms", "playlist_ms", "p50")
    row("playlist", "p99 ms", "playlist_ms", "p99")
    row("segment", "p50 ms", "segment_ms", "p50")
    row("segment", "p99 ms", "segment_ms", "p99")
    row("cpu", "server %", "server_cpu_percent")
    row("cpu", "bench client %", "bench_cpu_percent")
    row("ingest alone", "max interval s", "cadence_without_viewers", "max_interval_s")
    row("ingest+viewers", "max interval s", "cadence_with_viewers", "max_interval_s")
    row("ingest alone", "late", "cadence_without_viewers", "late")
    row("ingest+viewers", "late", "cadence_with_viewers", "late")
    row("wrk playlist", "requests/s", "wrk_playlist", "requests_per_s")
    row("wrk playlist", "p50 ms", "wrk_playlist", "p50_ms")
    row("wrk playlist", "p99 ms", "wrk_playlist", "p99_ms")
    row("wrk playlist", "errors", "wrk_playlist", "socket_errors")
    row("wrk playlist", "non-2xx", "wrk_playlist", "non_2xx")
    row("wrk playlist", "server CPU %", "wrk_playlist", "server_cpu_percent")
    row("ingest+wrk", "max interval s", "wrk_playlist", "cadence", "max_interval_s")
    row("ingest+wrk", "late", "wrk_playlist", "cadence", "late")
    params = {"viewers": opts.viewers, "seconds": opts.seconds, "fixture": str(fixture),
              "targets": targets, "ours_env": getattr(opts, "ours_env", None),
              "wrk_only": bool(getattr(opts, "wrk_only", False))}  # fmt: skip
    layouts = {c.column: configs.plan(opts, c).describe() for c in columns}
    return {"params": params, "runs": runs, "layouts": layouts}, table
