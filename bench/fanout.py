"""Scenario 5, fanout: N RTMP players (FFmpeg, stream copy to null) on one published stream.

Server CPU is measured over a window with only the publisher, then with N players; CPU per player
is the difference per player-minute. A target that refuses play (every player exits early, e.g.
NetStream.Play.Failed) is reported as "not supported" rather than failing the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from bench import publish
from bench.procs import Procs, cpu_seconds, memory_kib
from bench.report import Table
from bench.targets import LABELS, Target, open_target, run_each

# Seconds players get to connect and start receiving before the window opens.
PLAYER_SETTLE = 3.0


async def _cpu_window(target: Target, seconds: float) -> float:
    """Server CPU seconds per wall second over ``seconds``."""
    c0, t0 = cpu_seconds(target.pids()), trio.current_time()
    await trio.sleep(seconds)
    return (cpu_seconds(target.pids()) - c0) / (trio.current_time() - t0)


async def run_one(target_name: str, opts: Any, fixture: Path, workdir: Path) -> dict[str, Any]:
    res: dict[str, Any] = {"target": target_name, "steps": []}
    logdir = workdir / f"{target_name}-logs"
    async with Procs() as procs, open_target(
        target_name, procs, workdir / target_name,
        target_duration=opts.target_duration, nginx_workers=opts.nginx_workers, cpus=opts.cpus,
    ) as target:  # fmt: skip
        pub, watcher, tracker = await publish.publish_one(procs, target, fixture, "fan", logdir)
        async with trio.open_nursery() as watching:
            watching.start_soon(publish.watch_forever, watcher, tracker)
            base = await _cpu_window(target, opts.seconds)
            res["cpu_percent_publisher_only"] = round(100 * base, 1)
            for n in opts.players:
                step: dict[str, Any] = {"players": n}
                args = [publish.play_args(target.rtmp_url("fan"))] * n
                players = await publish.start_many(procs, args, logdir, f"play{n}-")
                await trio.sleep(PLAYER_SETTLE)
                if publish.failed(players) == n:
                    step["supported"] = False
                    step["error"] = publish.first_error(logdir, f"play{n}-")
                    res["steps"].append(step)
                    res["supported"] = False
                    break
                t0 = trio.current_time()
                rate = await _cpu_window(target, opts.seconds)
                t1 = trio.current_time()
                step.update(
                    supported=True,
                    players_failed=publish.failed(players),
                    cpu_percent=round(100 * rate, 1),
                    cpu_s_per_player_min=round((rate - base) * 60 / n, 4),
                    rss_mb=round(memory_kib(target.pids())[0] / 1024, 1),
                    ingest=tracker.summary(t0, t1),
                )
                res["steps"].append(step)
                for p in players:
                    await procs.stop(p)
            watching.cancel_scope.cancel()
        res.setdefault("supported", True)
        res["publisher_alive"] = pub.returncode is None
    return res


async def run(
    opts: Any, targets: list[str], fixture: Path, workdir: Path
) -> tuple[dict[str, Any], Table]:
    runs = await run_each(run_one, targets, opts, fixture, workdir)
    cols = [LABELS[t] for t in targets]
    table = Table(f"fanout: RTMP players on one {fixture.name} stream", cols, "players")
    by = {r["target"]: r for r in runs}
    table.add(0, "CPU % (publisher only)",
              {LABELS[t]: by[t].get("cpu_percent_publisher_only") for t in targets})  # fmt: skip
    for n in opts.players:
        steps: dict[str, dict[str, Any]] = {
            t: next((s for s in by[t].get("steps", []) if s["players"] == n), {}) for t in targets
        }
        for key, label in (("cpu_percent", "CPU %"), ("cpu_s_per_player_min", "CPU s / player-min"),
                           ("players_failed", "players failed"), ("rss_mb", "RSS MB")):  # fmt: skip
            values = {}
            for t in targets:
                s = steps[t]
                values[LABELS[t]] = "not supported" if s.get("supported") is False else s.get(key)
            table.add(n, label, values)
    params = {"players": opts.players, "seconds": opts.seconds, "fixture": str(fixture),
              "targets": targets}  # fmt: skip
    return {"params": params, "runs": runs}, table
