"""Scenario 1, ingest: N concurrent publishers for a fixed window; server CPU, memory, HLS health.

Segments are watched through the HLS files the server writes (stat + read when changed), so the
measurement does not load the server's HTTP side; a sample of streams is then checked over HTTP
like a player would (m3u8 parse, segment download, PyAV open).
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import httpx
import trio

from bench import configs, publish
from bench.configs import RunConfig
from bench.hls import FileWatcher, PlaylistTracker, validate
from bench.procs import Procs, cpu_seconds, memory_kib, pss_kib
from bench.report import Table
from bench.targets import Target, open_target

# Seconds between playlist file polls: the lateness resolution.
POLL_INTERVAL = 0.1
# Seconds between memory samples.
MEMORY_INTERVAL = 1.0
# Seconds allowed for all publishers to get a first segment listed (plus SETUP_PER_STREAM each).
SETUP_TIMEOUT = 30.0
SETUP_PER_STREAM = 0.1
# Seconds the idle server is measured before publishers start (its fixed cost: timers, polls).
IDLE_SECONDS = 2.0


def _poll(
    keys: list[str], watchers: dict[str, FileWatcher], trackers: dict[str, PlaylistTracker]
) -> None:
    now = trio.current_time()
    for k in keys:
        text = watchers[k].read_if_changed()
        if text is not None:
            trackers[k].update(text, now)


async def run_one(
    config: RunConfig, n: int, opts: Any, fixture: Path, workdir: Path
) -> dict[str, Any]:
    layout = configs.plan(opts, config)
    run: dict[str, Any] = {**config.describe(), "publishers": n, "cpus": layout.describe()}
    logdir = workdir / f"{config.tag}-{n}-logs"
    with configs.clients_on(opts, layout):
        async with Procs() as procs, open_target(
            config.target, procs, workdir / f"{config.tag}-{n}",
            target_duration=opts.target_duration, nginx_workers=opts.nginx_workers, cpus=layout,
            formats=config.formats, settings=config.settings,
        ) as target:  # fmt: skip
            cores = layout.server_count(configs.allowed(opts))
            await _measure(run, target, procs, n, opts, fixture, logdir, cores)
    return run


async def _measure(
    run: dict[str, Any], target: Target, procs: Procs, n: int, opts: Any, fixture: Path,
    logdir: Path, cores: int,
) -> None:  # fmt: skip
    """The ingest run itself; ``cores``: CPUs the server may use (for CPU % of its CPUs)."""
    run["playlist"] = target.media_playlist
    await trio.sleep(0.5)  # let the server finish start-up work before the baseline
    idle0, idle_t0 = cpu_seconds(target.pids()), trio.current_time()
    await trio.sleep(IDLE_SECONDS)
    idle = (cpu_seconds(target.pids()) - idle0) / (trio.current_time() - idle_t0)
    run["idle_cpu_percent"] = round(100 * idle, 2)
    base_rss, _ = memory_kib(target.pids())
    base_pss = pss_kib(target.pids())
    keys = [f"bench{i}" for i in range(n)]
    watchers = {k: FileWatcher(target.playlist_path(k)) for k in keys}
    trackers = {k: PlaylistTracker(opts.target_duration) for k in keys}
    spawned_at = trio.current_time()
    nodelay = bool(getattr(opts, "nodelay", False))
    pubs = await publish.start_many(
        procs,
        [publish.publish_args(fixture, target.rtmp_url(k), nodelay=nodelay) for k in keys],
        logdir,
        "pub",
    )
    # Set-up: until every stream lists a segment (or the deadline).
    with trio.move_on_after(SETUP_TIMEOUT + SETUP_PER_STREAM * n):
        while not all(t.first_at for t in trackers.values()):
            _poll(keys, watchers, trackers)
            if publish.failed(pubs) == n or not target.alive():
                break
            await trio.sleep(POLL_INTERVAL)
    ready = [t.first_at - spawned_at for t in trackers.values() if t.first_at is not None]
    run["streams_with_playlist"] = len(ready)
    run["first_playlist_s"] = _stats(ready)
    peak_rss, peak_pss = base_rss, base_pss
    pub_pids = [p.pid for p in pubs]
    cpu0, pub_cpu0 = cpu_seconds(target.pids()), cpu_seconds(pub_pids)
    top0 = cpu_seconds([target.proc.pid])
    t0 = trio.current_time()
    next_mem = t0
    while (now := trio.current_time()) < t0 + opts.seconds and ready and target.alive():
        _poll(keys, watchers, trackers)
        if now >= next_mem:
            pids = target.pids()
            peak_rss = max(peak_rss, memory_kib(pids)[0])
            peak_pss = max(peak_pss, pss_kib(pids))
            next_mem = now + MEMORY_INTERVAL
        await trio.sleep(POLL_INTERVAL)
    t1 = trio.current_time()
    pids = target.pids()
    cpu1, pub_cpu1 = cpu_seconds(pids), cpu_seconds(pub_pids)
    top1 = cpu_seconds([target.proc.pid])
    end_rss, hwm = memory_kib(pids)
    peak_rss, peak_pss = max(peak_rss, end_rss), max(peak_pss, pss_kib(pids))
    window = t1 - t0
    cpu_percent = 100 * (cpu1 - cpu0) / window if window > 0 else None
    run.update(
        window_s=round(window, 2),
        cpu_s=round(cpu1 - cpu0, 3),
        cpu_percent=round(cpu_percent, 1) if cpu_percent is not None else None,
        # Of the CPUs the server may use: 100 = all of them busy (the saturation point).
        cpu_percent_of_server=round(cpu_percent / cores, 1) if cpu_percent is not None else None,
        server_cpus=cores,
        server_processes=len(pids),
        # The first process alone: ours' supervisor with workers > 1, nginx's master.
        top_process_cpu_percent=round(100 * (top1 - top0) / window, 1) if window else None,
        cpu_s_per_stream_min=(round((cpu1 - cpu0) / (n * window / 60), 4) if window > 0 else None),
        publishers_cpu_percent=round(100 * (pub_cpu1 - pub_cpu0) / window, 1) if window else None,
        rss_base_mb=round(base_rss / 1024, 1),
        rss_peak_mb=round(peak_rss / 1024, 1),
        hwm_mb=round(hwm / 1024, 1),
        rss_per_stream_mb=round((peak_rss - base_rss) / 1024 / n, 2),
        pss_base_mb=round(base_pss / 1024, 1),
        pss_peak_mb=round(peak_pss / 1024, 1),
        pss_per_stream_mb=round((peak_pss - base_pss) / 1024 / n, 2),
    )
    sums = [t.summary(t0, t1) for t in trackers.values()]
    run["segments"] = sum(s["segments"] for s in sums)
    run["segments_expected"] = int(n * window / opts.target_duration)
    for key in ("late", "missing", "discontinuities", "parse_errors"):
        run[key] = sum(s[key] for s in sums)
    intervals = [s["max_interval_s"] for s in sums if s["max_interval_s"] is not None]
    run["max_segment_interval_s"] = max(intervals, default=None)
    async with httpx.AsyncClient() as client:
        checks = [await validate(client, target.playlist_url(k)) for k in keys[: opts.sample]]
    run["valid"] = sum(1 for c in checks if c["ok"])
    run["validated"] = len(checks)
    run["validation"] = checks
    run["publishers_failed"] = publish.failed(pubs)
    run["server_alive"] = target.alive()
    if run["publishers_failed"] or not ready:
        run["publisher_error"] = publish.first_error(logdir, "pub")
        run["server_log"] = target.log_tail()


def _stats(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"mean": round(statistics.fmean(values), 3), "max": round(max(values), 3)}


async def run(
    opts: Any, targets: list[str], fixture: Path, workdir: Path
) -> tuple[dict[str, Any], Table]:
    runs = []
    # Ours once per --formats value (GATEWAY_HLS_FORMATS) and per --ours-env value, nginx once.
    columns = configs.configs(opts, targets)
    for n in opts.publishers:
        for config in columns:
            try:
                runs.append(await run_one(config, n, opts, fixture, workdir))
            except RuntimeError as exc:  # a target that cannot start is a result, not a crash
                runs.append({**config.describe(), "publishers": n, "error": str(exc)})
    table = Table(f"ingest: {fixture.name}, {opts.seconds:g} s window", [], "publishers")
    table.columns = [c.column for c in columns]
    metrics = [
        ("cpu_s_per_stream_min", "CPU s / stream-minute"),
        ("cpu_percent", "CPU % of one core"),
        ("cpu_percent_of_server", "CPU % of server CPUs"),
        ("server_processes", "server processes"),
        ("top_process_cpu_percent", "first process CPU % (supervisor)"),
        ("publishers_cpu_percent", "publishers CPU % of one core"),
        ("idle_cpu_percent", "idle CPU % (no streams)"),
        ("rss_peak_mb", "peak RSS MB"),
        ("rss_per_stream_mb", "RSS MB / stream"),
        ("pss_peak_mb", "peak PSS MB"),
        ("streams_with_playlist", "streams with playlist"),
        ("segments", "segments in window"),
        ("late", "late segments"),
        ("missing", "missing segments"),
        ("publishers_failed", "publishers failed"),
        ("valid", "valid sampled streams"),
    ]
    for n in opts.publishers:
        by_col = {r["column"]: r for r in runs if r["publishers"] == n}
        for key, label in metrics:
            table.add(n, label, {c: by_col.get(c, {}).get(key) for c in table.columns})
        for c in table.columns:
            if "error" in by_col.get(c, {}):
                table.add(n, "error", {c: by_col[c]["error"].splitlines()[0][:60]})
    params = {
        "publishers": opts.publishers,
        "seconds": opts.seconds,
        "fixture": str(fixture),
        "target_duration": opts.target_duration,
        "sample": opts.sample,
        "targets": targets,
        "formats": getattr(opts, "formats", None),
        "ours_env": getattr(opts, "ours_env", None),
        "nodelay": bool(getattr(opts, "nodelay", False)),
    }
    layouts = {c.column: configs.plan(opts, c).describe() for c in columns}
    return {"params": params, "runs": runs, "layouts": layouts}, table
