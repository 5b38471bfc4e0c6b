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

from bench import publish
from bench.hls import FileWatcher, PlaylistTracker, validate
from bench.procs import Procs, cpu_seconds, memory_kib
from bench.report import Table
from bench.targets import LABELS, open_target

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


def column(target_name: str, formats: str | None, env: str | None = None) -> str:
    """Table column of a run: ``ours[ts]`` for ours with --formats ts, ``ours{K=V}`` with
    --ours-env K=V, else the label."""
    label = LABELS[target_name]
    if formats is not None:
        label += f"[{formats}]"
    if env is not None:
        label += "{" + env.removeprefix("GATEWAY_") + "}"
    return label


def parse_env(text: str) -> dict[str, str]:
    """``K=V,K=V`` of --ours-env as a dict; every key must be a GATEWAY_* setting."""
    pairs = [item.partition("=") for item in text.split(",") if item.strip()]
    if not pairs or any(not k.startswith("GATEWAY_") or not eq for k, eq, _ in pairs):
        raise ValueError(f"--ours-env wants GATEWAY_KEY=VALUE[,...], got {text!r}")
    return {k.strip(): v.strip() for k, _, v in pairs}


async def run_one(
    target_name: str,
    n: int,
    opts: Any,
    fixture: Path,
    workdir: Path,
    formats: str | None = None,
    env: str | None = None,
) -> dict[str, Any]:
    col = column(target_name, formats, env)
    run: dict[str, Any] = {"target": target_name, "publishers": n, "column": col}
    if formats is not None:
        run["formats"] = formats
    if env is not None:
        run["env"] = env
    tag = f"{target_name}-{formats.replace(',', '+')}" if formats else target_name
    if env is not None:
        tag += "-" + "".join(c if c.isalnum() else "_" for c in env)
    logdir = workdir / f"{tag}-{n}-logs"
    async with Procs() as procs, open_target(
        target_name, procs, workdir / f"{tag}-{n}",
        target_duration=opts.target_duration, nginx_workers=opts.nginx_workers, cpus=opts.cpus,
        formats=formats, settings=parse_env(env) if env is not None else None,
    ) as target:  # fmt: skip
        run["playlist"] = target.media_playlist
        await trio.sleep(0.5)  # let the server finish start-up work before the baseline
        idle0, idle_t0 = cpu_seconds(target.pids()), trio.current_time()
        await trio.sleep(IDLE_SECONDS)
        idle = (cpu_seconds(target.pids()) - idle0) / (trio.current_time() - idle_t0)
        run["idle_cpu_percent"] = round(100 * idle, 2)
        base_rss, _ = memory_kib(target.pids())
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
        peak_rss = base_rss
        cpu0 = cpu_seconds(target.pids())
        t0 = trio.current_time()
        next_mem = t0
        while (now := trio.current_time()) < t0 + opts.seconds and ready and target.alive():
            _poll(keys, watchers, trackers)
            if now >= next_mem:
                peak_rss = max(peak_rss, memory_kib(target.pids())[0])
                next_mem = now + MEMORY_INTERVAL
            await trio.sleep(POLL_INTERVAL)
        t1 = trio.current_time()
        cpu1 = cpu_seconds(target.pids())
        end_rss, hwm = memory_kib(target.pids())
        peak_rss = max(peak_rss, end_rss)
        window = t1 - t0
        run.update(
            window_s=round(window, 2),
            cpu_s=round(cpu1 - cpu0, 3),
            cpu_percent=round(100 * (cpu1 - cpu0) / window, 1) if window > 0 else None,
            cpu_s_per_stream_min=(
                round((cpu1 - cpu0) / (n * window / 60), 4) if window > 0 else None
            ),
            rss_base_mb=round(base_rss / 1024, 1),
            rss_peak_mb=round(peak_rss / 1024, 1),
            hwm_mb=round(hwm / 1024, 1),
            rss_per_stream_mb=round((peak_rss - base_rss) / 1024 / n, 2),
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
    return run


def _stats(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"mean": round(statistics.fmean(values), 3), "max": round(max(values), 3)}


async def run(
    opts: Any, targets: list[str], fixture: Path, workdir: Path
) -> tuple[dict[str, Any], Table]:
    runs = []
    # (target, formats, env): ours once per --formats value (GATEWAY_HLS_FORMATS) and per
    # --ours-env value, nginx once.
    envs: list[str | None] = list(getattr(opts, "ours_env", None) or [None])
    for env in envs:
        if env is not None:
            parse_env(env)  # a typo stops the bench before any run
    configs: list[tuple[str, str | None, str | None]] = []
    for name in targets:
        if name == "ours":
            formats_list: list[str | None] = list(getattr(opts, "formats", None) or [None])
            configs += [(name, f, e) for f in formats_list for e in envs]
        else:
            configs.append((name, None, None))
    for n in opts.publishers:
        for name, formats, env in configs:
            try:
                runs.append(await run_one(name, n, opts, fixture, workdir, formats, env))
            except RuntimeError as exc:  # a target that cannot start is a result, not a crash
                runs.append(
                    {"target": name, "publishers": n, "column": column(name, formats, env),
                     "error": str(exc)}
                )  # fmt: skip
    table = Table(f"ingest: {fixture.name}, {opts.seconds:g} s window", [], "publishers")
    table.columns = [column(name, formats, env) for name, formats, env in configs]
    metrics = [
        ("cpu_s_per_stream_min", "CPU s / stream-minute"),
        ("cpu_percent", "CPU % of one core"),
        ("idle_cpu_percent", "idle CPU % (no streams)"),
        ("rss_peak_mb", "peak RSS MB"),
        ("rss_per_stream_mb", "RSS MB / stream"),
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
    return {"params": params, "runs": runs}, table
