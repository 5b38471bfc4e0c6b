"""Capacity: how many publishers a server layout keeps up with (issue 17: workers = 2 against 1).

One server per column; publishers (real FFmpeg, real time, as in ingest) are added ``--step`` at a
time up to ``--max-publishers``. At each level, once every new stream lists a segment and one
target duration has passed, a window of ``--seconds`` is judged. The server *keeps up* when, in
the window:

- every stream has a playlist, no publisher exited and the server is alive;
- segments are listed at real-time rate: the media seconds listed are at least REALTIME_MIN of
  the wall seconds, summed over the streams;
- at most ``--max-late`` of the segments are late (listed more than target + 1 s after the one
  before) and none is missing (a gap in media sequence numbers);
- the server's CPU (its whole process tree) is below CPU_LIMIT of the CPUs it may use;
- the server log has no line about dropped messages or media (a worker's link that was full).

A level that fails is judged once more over a second window (the machine is shared: one noisy
window should not end the ladder); two failed windows in a row end the column. *Sustained* is
the highest level that kept up.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import trio

from bench import configs, publish
from bench.configs import RunConfig
from bench.hls import FileWatcher, PlaylistTracker
from bench.procs import Procs, cpu_seconds, memory_kib, pss_kib
from bench.report import Table
from bench.targets import Target, open_target

# Seconds between playlist file polls (lateness resolution, as in ingest).
POLL_INTERVAL = 0.1
# Seconds the new streams of a level get to list a first segment (plus SETUP_PER_STREAM each).
SETUP_TIMEOUT = 30.0
SETUP_PER_STREAM = 0.2
# Media seconds listed per wall second (over every stream) a server that keeps up reaches.
REALTIME_MIN = 0.9
# Share of the server's CPUs above which it is saturated (its latency is then the scheduler's).
CPU_LIMIT = 0.95
# Server log lines that say something was dropped (gateway.cluster: a link's queue full).
DROPPED = re.compile(r"dropped|too slowly", re.IGNORECASE)


def _poll(
    keys: list[str], watchers: dict[str, FileWatcher], trackers: dict[str, PlaylistTracker]
) -> None:
    now = trio.current_time()
    for k in keys:
        text = watchers[k].read_if_changed()
        if text is not None:
            trackers[k].update(text, now)


def _log_size(target: Target) -> int:
    try:
        return target.log.stat().st_size
    except OSError:
        return 0


def _log_since(target: Target, offset: int) -> list[str]:
    try:
        with target.log.open("rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace").splitlines()
    except OSError:
        return []


async def _window(
    target: Target,
    keys: list[str],
    watchers: dict[str, FileWatcher],
    trackers: dict[str, PlaylistTracker],
    pubs: list[trio.Process],
    opts: Any,
    cores: int,
) -> dict[str, Any]:
    """Measure one window of the current level and judge it."""
    n = len(keys)
    log0 = _log_size(target)
    pub_pids = [p.pid for p in pubs]
    cpu0, pub_cpu0 = cpu_seconds(target.pids()), cpu_seconds(pub_pids)
    own0, top0 = cpu_seconds([os.getpid()]), cpu_seconds([target.proc.pid])
    t0 = trio.current_time()
    while trio.current_time() < t0 + opts.seconds and target.alive():
        _poll(keys, watchers, trackers)
        await trio.sleep(POLL_INTERVAL)
    t1 = trio.current_time()
    pids = target.pids()
    cpu1, pub_cpu1 = cpu_seconds(pids), cpu_seconds(pub_pids)
    own1, top1 = cpu_seconds([os.getpid()]), cpu_seconds([target.proc.pid])
    window = t1 - t0
    sums = [t.summary(t0, t1) for t in trackers.values()]
    media, elapsed = _progress(trackers.values(), t0, t1)
    segments = sum(s["segments"] for s in sums)
    late = sum(s["late"] for s in sums)
    cpu_percent = 100 * (cpu1 - cpu0) / window
    dropped = [line for line in _log_since(target, log0) if DROPPED.search(line)]
    res: dict[str, Any] = {
        "publishers": n,
        "window_s": round(window, 2),
        "cpu_percent": round(cpu_percent, 1),
        "cpu_percent_of_server": round(cpu_percent / cores, 1),
        "cpu_s_per_stream_min": round((cpu1 - cpu0) / (n * window / 60), 4),
        # The server's first process alone: ours' supervisor with workers > 1.
        "top_process_cpu_percent": round(100 * (top1 - top0) / window, 1),
        "publishers_cpu_percent": round(100 * (pub_cpu1 - pub_cpu0) / window, 1),
        "bench_cpu_percent": round(100 * (own1 - own0) / window, 1),
        "rss_mb": round(memory_kib(pids)[0] / 1024, 1),
        "pss_mb": round(pss_kib(pids) / 1024, 1),
        "server_processes": len(pids),
        "streams_with_playlist": sum(1 for t in trackers.values() if t.first_at is not None),
        "segments": segments,
        "realtime": round(media / elapsed, 3) if elapsed > 0 else 0.0,
        "late": late,
        "missing": sum(s["missing"] for s in sums),
        "max_segment_interval_s": max(
            (s["max_interval_s"] for s in sums if s["max_interval_s"] is not None), default=None
        ),
        "publishers_failed": publish.failed(pubs),
        "server_alive": target.alive(),
        "dropped_log_lines": len(dropped),
    }
    if dropped:
        res["dropped_sample"] = dropped[0][:300]
    res["failures"] = _judge(res, opts)
    res["keeps_up"] = not res["failures"]
    return res


def _progress(trackers: Iterable[PlaylistTracker], t0: float, t1: float) -> tuple[float, float]:
    """(media seconds, wall seconds) between the first and the last segment each stream listed
    in [t0, t1], summed over the streams: their ratio is the listing rate against real time,
    without the one-segment rounding of counting segments in a short window."""
    media = elapsed = 0.0
    for tracker in trackers:
        inside = sorted(
            (s for s in tracker.segments.values() if t0 <= s.at <= t1), key=lambda s: s.seq
        )
        if len(inside) >= 2:
            media += sum(s.duration for s in inside[1:])
            elapsed += inside[-1].at - inside[0].at
    return media, elapsed


def _judge(res: dict[str, Any], opts: Any) -> list[str]:
    """Why the server did not keep up in this window (empty: it did)."""
    why = []
    n = res["publishers"]
    if not res["server_alive"]:
        why.append("server died")
    if res["streams_with_playlist"] < n:
        why.append(f"{n - res['streams_with_playlist']} streams without playlist")
    if res["publishers_failed"]:
        why.append(f"{res['publishers_failed']} publishers exited")
    if res["realtime"] < REALTIME_MIN:
        why.append(f"media listed at {res['realtime']:.2f}x real time")
    if res["late"] > opts.max_late * max(1, res["segments"]):
        why.append(f"{res['late']} late segments")
    if res["missing"]:
        why.append(f"{res['missing']} missing segments")
    if res["cpu_percent_of_server"] >= 100 * CPU_LIMIT:
        why.append(f"CPU {res['cpu_percent_of_server']:.0f} % of its CPUs")
    if res["dropped_log_lines"]:
        why.append(f"{res['dropped_log_lines']} 'dropped' log lines")
    return why


async def run_one(config: RunConfig, opts: Any, fixture: Path, workdir: Path) -> dict[str, Any]:
    layout = configs.plan(opts, config)
    cores = layout.server_count(configs.allowed(opts))
    res: dict[str, Any] = {**config.describe(), "cpus": layout.describe(), "server_cpus": cores}
    levels: list[dict[str, Any]] = []
    res["levels"] = levels
    logdir = workdir / f"{config.tag}-logs"
    with configs.clients_on(opts, layout):
        async with Procs() as procs, open_target(
            config.target, procs, workdir / config.tag,
            target_duration=opts.target_duration, nginx_workers=opts.nginx_workers, cpus=layout,
            formats=config.formats, settings=config.settings,
        ) as target:  # fmt: skip
            res["playlist"] = target.media_playlist
            keys: list[str] = []
            watchers: dict[str, FileWatcher] = {}
            trackers: dict[str, PlaylistTracker] = {}
            pubs: list[trio.Process] = []
            nodelay = bool(getattr(opts, "nodelay", False))
            for n in range(opts.step, opts.max_publishers + 1, opts.step):
                new = [f"cap{i}" for i in range(len(keys), n)]
                for k in new:
                    watchers[k] = FileWatcher(target.playlist_path(k))
                    trackers[k] = PlaylistTracker(opts.target_duration)
                keys += new
                args = [publish.publish_args(fixture, target.rtmp_url(k), nodelay=nodelay)
                        for k in new]  # fmt: skip
                pubs += await publish.start_many(procs, args, logdir, f"pub{n}-")
                # Set-up of the new streams, then one target duration for their start burst
                # (FFmpeg's -re sends its first half second at once) to pass.
                with trio.move_on_after(SETUP_TIMEOUT + SETUP_PER_STREAM * len(new)):
                    while not all(trackers[k].first_at for k in new) and target.alive():
                        _poll(keys, watchers, trackers)
                        await trio.sleep(POLL_INTERVAL)
                with trio.move_on_after(opts.target_duration):
                    while True:
                        _poll(keys, watchers, trackers)
                        await trio.sleep(POLL_INTERVAL)
                level = await _window(target, keys, watchers, trackers, pubs, opts, cores)
                if not level["keeps_up"]:
                    # A second window: one noisy moment of a shared machine is not the limit.
                    level = {
                        **await _window(target, keys, watchers, trackers, pubs, opts, cores),
                        "first_window": level,
                    }
                levels.append(level)
                if not level["keeps_up"]:
                    res["server_log"] = target.log_tail()
                    res["publisher_error"] = publish.first_error(logdir, "pub")
                    break
    kept = [lv["publishers"] for lv in levels if lv["keeps_up"]]
    res["sustained"] = max(kept, default=0)
    res["limit"] = next((lv["failures"] for lv in levels if not lv["keeps_up"]), None)
    return res


async def run(
    opts: Any, targets: list[str], fixture: Path, workdir: Path
) -> tuple[dict[str, Any], Table]:
    if opts.step < 1 or opts.max_publishers < opts.step:
        raise SystemExit("bench: capacity wants 1 <= --step <= --max-publishers")
    columns = configs.configs(opts, targets)
    runs = []
    for config in columns:
        try:
            runs.append(await run_one(config, opts, fixture, workdir))
        except RuntimeError as exc:  # a target that cannot start is a result, not a crash
            runs.append({**config.describe(), "error": str(exc), "levels": [], "sustained": 0})
    table = Table(
        f"capacity: {fixture.name} publishers, +{opts.step} per level, {opts.seconds:g} s windows",
        [c.column for c in columns],
        "publishers",
    )
    by_col = {r["column"]: r for r in runs}
    first = runs[0]["sustained"] if runs else 0
    table.add("all", "streams sustained", {c: by_col[c]["sustained"] for c in table.columns})
    table.add(
        "all",
        "x first column",
        {c: round(by_col[c]["sustained"] / first, 2) if first else None for c in table.columns},
    )
    table.add("all", "server CPUs", {c: by_col[c].get("server_cpus") for c in table.columns})
    table.add(
        "all",
        "load shares them",
        {c: by_col[c].get("cpus", {}).get("shared") for c in table.columns},
    )
    table.add(
        "all",
        "limit",
        {c: "; ".join(by_col[c].get("limit") or ["-"])[:60] for c in table.columns},
    )
    metrics = [
        ("cpu_percent_of_server", "CPU % of server CPUs"),
        ("cpu_s_per_stream_min", "CPU s / stream-minute"),
        ("top_process_cpu_percent", "first process CPU % (supervisor)"),
        ("publishers_cpu_percent", "publishers CPU % of one core"),
        ("pss_mb", "server PSS MB"),
        ("realtime", "media listed / real time"),
        ("late", "late segments"),
        ("missing", "missing segments"),
        ("keeps_up", "keeps up"),
    ]
    counts = sorted({lv["publishers"] for r in runs for lv in r["levels"]})
    for n in counts:
        at: dict[str, dict[str, Any]] = {
            c: next((lv for lv in by_col[c]["levels"] if lv["publishers"] == n), {})
            for c in table.columns
        }
        for key, label in metrics:
            table.add(n, label, {c: at[c].get(key) for c in table.columns})
    for r in runs:
        if "error" in r:
            table.add("all", "error", {r["column"]: r["error"].splitlines()[0][:60]})
    params = {
        "step": opts.step,
        "max_publishers": opts.max_publishers,
        "seconds": opts.seconds,
        "fixture": str(fixture),
        "target_duration": opts.target_duration,
        "max_late": opts.max_late,
        "realtime_min": REALTIME_MIN,
        "cpu_limit": CPU_LIMIT,
        "targets": targets,
        "formats": getattr(opts, "formats", None),
        "ours_env": getattr(opts, "ours_env", None),
    }
    layouts = {c.column: configs.plan(opts, c).describe() for c in columns}
    return {"params": params, "runs": runs, "layouts": layouts}, table
