"""Scenario ``front``: playlist requests per second from the gateway alone, through the nginx
cache of deploy/nginx/gateway-cache.conf in front of it, and from nginx-rtmp's own HLS serving.

One publisher (the fixture, looped) per target. For each playlist, ``wrk`` asks as fast as the
server side answers on ``--viewers`` connections for ``--seconds``, with Accept-Encoding: gzip
as players send it: requests/s, p50/p99, errors,
the server side's CPU (the gateway, plus the cache's nginx when it is in front; nginx-rtmp's
master and worker) and the ingest cadence meanwhile. Behind the cache, the gateway's own
/metrics counts how many of those requests reached it (upstream requests/s).

With ``--server-cpus auto`` (default) the gateway and the cache's nginx share the server's CPU,
as nginx-rtmp has it alone, and wrk runs on the others: the cache is measured as part of the
server side, not as extra cores. ``--server-cpus none`` lets everything share every core.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import trio
from prometheus_client.parser import text_string_to_metric_families

from bench import cache, publish, wrk
from bench.hls import PlaylistTracker
from bench.procs import Procs, cpu_seconds, descendants, free_port, wait_tcp
from bench.report import Table
from bench.targets import Target, open_target, run_each

# Column labels, in order.
OURS, CACHED, RTMP = "ours", "ours+cache", "nginx-rtmp"
KEY = "front"
# What players send (browsers, hls.js through them, FFmpeg): playlists come back gzipped from
# the gateway and through the cache; nginx-rtmp's HTTP server has gzip off and ignores it.
HEADERS = {"Accept-Encoding": "gzip"}
# The gateway's route label for playlists (web.hls.PLAYLIST_ROUTE; bench does not import web).
PLAYLIST_ROUTE = "/<name:app>/<name:key>/<playlist:file>"


async def playlist_requests(client: httpx.AsyncClient, target: Target) -> float:
    """Playlist requests the gateway answered so far (its http_requests counter)."""
    text = (await client.get(f"{target.http_base()}/metrics")).text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        if family.name == "http_requests"
        for s in family.samples
        if s.name == "http_requests_total" and s.labels.get("route") == PLAYLIST_ROUTE
    )


@asynccontextmanager
async def open_cache(
    procs: Procs, target: Target, workdir: Path, opts: Any
) -> AsyncIterator[tuple[int, trio.Process]]:
    """The deployed cache configuration in front of ``target`` (on the server's CPUs)."""
    port = free_port()
    directory = workdir / "cache"
    conf = cache.write_conf(
        directory, upstream_port=target.http_port, listen_port=port, workers=opts.nginx_workers
    )
    args = [*opts.cpus.server_prefix(), *cache.command(directory, conf)]
    proc = await procs.start(args, log=directory / "nginx.out")
    try:
        await wait_tcp(port, proc)
        yield port, proc
    finally:
        with trio.CancelScope(shield=True):
            await procs.stop(proc)


async def measure(
    url: str,
    opts: Any,
    pids: list[int],
    tracker: PlaylistTracker,
    origin: Target | None = None,
    cache_pids: list[int] | None = None,
) -> dict[str, Any]:
    """wrk on ``url``; CPU of ``pids`` (and of ``cache_pids`` apart); ``origin``: the gateway
    behind a cache, whose playlist requests are counted."""
    async with httpx.AsyncClient(timeout=10) as client:
        before = await playlist_requests(client, origin) if origin is not None else 0.0
        cpu0, cache0 = cpu_seconds(pids), cpu_seconds(cache_pids or [])
        t0 = trio.current_time()
        res = await wrk.hammer(url, opts.viewers, opts.seconds, HEADERS)
        t1 = trio.current_time()
        cpu1, cache1 = cpu_seconds(pids), cpu_seconds(cache_pids or [])
        after = await playlist_requests(client, origin) if origin is not None else 0.0
    window = t1 - t0
    res["server_cpu_percent"] = round(100 * ((cpu1 - cpu0) + (cache1 - cache0)) / window, 1)
    if cache_pids is not None:
        res["cache_cpu_percent"] = round(100 * (cache1 - cache0) / window, 1)
        res["gateway_cpu_percent"] = round(100 * (cpu1 - cpu0) / window, 1)
        # wrk's own requests reached the gateway this often (the /metrics reads are 2 more).
        res["upstream_per_s"] = round((after - before) / window, 1)
    res["cadence"] = tracker.summary(t0, t1)
    return res


async def run_one(target_name: str, opts: Any, fixture: Path, workdir: Path) -> dict[str, Any]:
    res: dict[str, Any] = {"target": target_name}
    async with Procs() as procs, open_target(
        target_name, procs, workdir / target_name,
        target_duration=opts.target_duration, nginx_workers=opts.nginx_workers, cpus=opts.cpus,
    ) as target:  # fmt: skip
        pub, watcher, tracker = await publish.publish_one(
            procs, target, fixture, KEY, workdir / f"{target_name}-logs"
        )
        async with trio.open_nursery() as watching:
            watching.start_soon(publish.watch_forever, watcher, tracker)
            await trio.sleep(3 * opts.target_duration)  # a few segments listed
            if target_name == "nginx":
                url = target.playlist_url(KEY)
                res[RTMP] = {"ts": await measure(url, opts, target.pids(), tracker)}
            else:
                names = {"ts": target.ts_playlist, "cmaf": target.ll_playlist}
                playlists = {kind: name for kind, name in names.items() if name is not None}
                res[OURS] = {}
                for kind, name in playlists.items():
                    url = target.playlist_url(KEY, name)
                    res[OURS][kind] = await measure(url, opts, target.pids(), tracker)
                res[CACHED] = {}
                async with open_cache(procs, target, workdir / target_name, opts) as (port, ngx):
                    cache_pids = [ngx.pid, *descendants(ngx.pid)]
                    for kind, name in playlists.items():
                        url = f"http://127.0.0.1:{port}/live/{KEY}/{name}"
                        res[CACHED][kind] = await measure(
                            url, opts, target.pids(), tracker, target, cache_pids
                        )
            watching.cancel_scope.cancel()
        res["publisher_alive"] = pub.returncode is None
    return res


async def run(
    opts: Any, targets: list[str], fixture: Path, workdir: Path
) -> tuple[dict[str, Any], Table]:
    if not wrk.available():
        raise SystemExit("bench front needs wrk (Debian package wrk)")
    cache.nginx_exe()
    runs = await run_each(run_one, targets, opts, fixture, workdir)
    columns: dict[str, dict[str, Any]] = {}
    for r in runs:
        for label in (OURS, CACHED, RTMP):
            if label in r:
                columns[label] = r[label]
    table = Table(
        f"front: playlist requests/s, wrk -c{opts.viewers}, {opts.seconds:g} s each, "
        f"one {fixture.name} stream",
        list(columns),
    )

    def row(kind: str, metric: str, *path: str) -> None:
        values: dict[str, Any] = {}
        for label, by_kind in columns.items():
            v: Any = by_kind.get(kind)
            for p in path:
                v = v.get(p) if isinstance(v, dict) else None
            values[label] = v
        table.add(kind, metric, values)

    for kind in ("ts", "cmaf"):
        row(kind, "requests/s", "requests_per_s")
        row(kind, "p50 ms", "p50_ms")
        row(kind, "p99 ms", "p99_ms")
        row(kind, "non-2xx", "non_2xx")
        row(kind, "socket errors", "socket_errors")
        row(kind, "server CPU %", "server_cpu_percent")
        row(kind, "  gateway CPU %", "gateway_cpu_percent")
        row(kind, "  cache CPU %", "cache_cpu_percent")
        row(kind, "upstream req/s", "upstream_per_s")
        row(kind, "ingest late", "cadence", "late")
        row(kind, "ingest max interval s", "cadence", "max_interval_s")
    errors = {r["target"]: r["error"] for r in runs if "error" in r}
    params = {"connections": opts.viewers, "seconds": opts.seconds, "fixture": str(fixture),
              "targets": targets, "nginx_workers": opts.nginx_workers}  # fmt: skip
    return {"params": params, "runs": runs, "errors": errors}, table
