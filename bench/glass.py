"""Scenario glass: how far behind the publisher a browser plays, for each HLS flavour.

One publisher sends the fixture's clock variant (bench/fixtures.py: a strip of blocks along the
top of every frame gives its frame number) through :mod:`bench.proxy`, which records when each
video keyframe reached the server. Headless Chromium plays one playlist with hls.js
(bench/browser.py) and, every ``--sample-interval`` s, reads the frame number off the picture
the <video> shows together with ``Date.now()``. The frame's reference time is the arrival of its
GOP's keyframe at the server plus its offset in the GOP (the publisher sends in real time, -re),
so

    glass latency = Date.now() - (keyframe arrival + frame offset in its GOP)

is the delay from the media reaching the server to it being on screen, measured the same way on
every target, whatever its playlists say. Reported beside it: ``Date.now() - hls.playingDate``
(PROGRAM-DATE-TIME based, where the playlist carries it; the difference to the glass figure is
how far the server's PDT is off) and ``hls.latency`` (hls.js's estimate of its distance to the
live edge of the playlist, which does not include the time the server takes to list media).
"""

from __future__ import annotations

import json
import statistics
import time
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import trio

from bench import browser, fixtures, publish
from bench.latency import percentile
from bench.procs import Procs
from bench.proxy import KeyframeLog, serve_proxy
from bench.report import Table
from bench.targets import LABELS, Target, open_target

KEY = "glass"
# Seconds the publisher gets until the playlists to be played list WARM_SEGMENTS segments.
READY_TIMEOUT = 60.0
# Segments every playlist lists before a player joins: a viewer joins a running stream, where
# hls.js starts 3 target durations (or HOLD-BACK) behind the live edge. Joining a playlist of
# one segment starts at its head, closer to the edge than hls.js would ever go by itself.
WARM_SEGMENTS = 5
# Seconds hls.js gets from page load to the first frame on screen.
START_TIMEOUT = 30.0
# hls.js settings per flavour: LL-HLS with lowLatencyMode, the TS playlists with the defaults.
LL_CONFIG: dict[str, Any] = {"lowLatencyMode": True}
TS_CONFIG: dict[str, Any] = {}
# Seconds a playlist poll may take while waiting for the stream.
POLL_TIMEOUT = 5.0


def variants(target: Target, opts: Any) -> list[tuple[str, str, dict[str, Any]]]:
    """(column, playlist file, hls.js config) of each flavour ``target`` serves; ``--hls-config``
    is merged into every config."""
    extra = json.loads(opts.hls_config) if getattr(opts, "hls_config", None) else {}
    if target.name == "nginx":
        return [("nginx-rtmp TS", "index.m3u8", {**TS_CONFIG, **extra})]
    out = []
    if target.ll_playlist is not None:
        out.append(("ours LL-HLS", opts.ll_playlist or "index.m3u8", {**LL_CONFIG, **extra}))
    ts = opts.ts_playlist or target.ts_playlist
    if ts is not None:
        out.append(("ours TS", ts, {**TS_CONFIG, **extra}))
    return out


def frame_reference(
    frame: int, keyframes: list[float], gop: int, per_loop: int, rate: float, now: float
) -> float | None:
    """Wall-clock time fixture frame ``frame`` reached the server: the arrival of the keyframe
    of its GOP in the newest pass of the fixture (it loops every ``per_loop`` keyframes) whose
    frame had arrived by ``now``, plus the frame's offset in the GOP. None if none had. A
    latency longer than one pass of the fixture would be read as a pass too late."""
    g, offset = divmod(frame, gop)
    best = None
    for i in range(g, len(keyframes), per_loop):
        ref = keyframes[i] + offset / rate
        if ref > now:
            break
        best = ref
    return best


def _ms_dist(values: list[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "p50_ms": _ms(percentile(values, 50)),
        "p90_ms": _ms(percentile(values, 90)),
        "max_ms": _ms(max(values, default=None)),
        "min_ms": _ms(min(values, default=None)),
        "mean_ms": _ms(statistics.fmean(values)) if values else None,
    }


def _ms(v: float | None) -> float | None:
    return None if v is None else round(v * 1000, 1)


def summarize(
    session: browser.Session, keyframes: list[float], clock: fixtures.ClockInfo
) -> dict[str, Any]:
    gop, per_loop = clock.gop, clock.keyframes_per_loop
    glass: list[float] = []
    pdt: list[float] = []
    pdt_minus_glass: list[float] = []
    hls_latency: list[float] = []
    misreads = 0
    series = []  # (seconds into the window, glass ms, pdt ms): drift and jumps at a glance
    t0 = session.samples[0]["now"] / 1000 if session.samples else 0.0
    for s in session.samples:
        now = s["now"] / 1000
        g = None
        frame = fixtures.clock_frame(s["code"]) if s["code"] is not None else None
        if frame is None:
            misreads += 1
        else:
            ref = frame_reference(frame, keyframes, gop, per_loop, clock.rate, now)
            if ref is not None:
                g = now - ref
                glass.append(g)
        p = None
        if s["playingDate"] is not None:
            p = now - s["playingDate"] / 1000
            pdt.append(p)
            if g is not None:
                pdt_minus_glass.append(p - g)
        series.append((round(now - t0, 2), _ms(g), _ms(p)))
        if s["latency"] is not None:
            hls_latency.append(s["latency"])
    first, last = (session.samples[0], session.samples[-1]) if session.samples else ({}, {})
    wall = (last.get("now", 0) - first.get("now", 0)) / 1000
    advanced = last.get("currentTime", 0) - first.get("currentTime", 0)
    targets = [s["targetLatency"] for s in session.samples if s["targetLatency"] is not None]
    return {
        "url": session.url,
        "hls_config": session.config,
        "started": session.started,
        "start_s": session.start_s,
        "samples": len(session.samples),
        "glass": _ms_dist(glass),
        "misreads": misreads,
        "pdt": _ms_dist(pdt) if pdt else None,
        "pdt_minus_glass": _ms_dist(pdt_minus_glass) if pdt_minus_glass else None,
        "hls_latency": _ms_dist(hls_latency) if hls_latency else None,
        "hls_target_latency_ms": _ms(statistics.median(targets)) if targets else None,
        "stalls": last.get("waiting", 0) - first.get("waiting", 0),
        "fatal_errors": last.get("fatal", 0),
        "playback_speed": round(advanced / wall, 3) if wall > 0 else None,
        "hls_errors": session.errors[:10],
        "series": series,
        "page_errors": session.page_errors[:5],
    }


async def _wait_playable(client: httpx.AsyncClient, target: Target, pub: trio.Process) -> None:
    """Until the media playlists list WARM_SEGMENTS segments (over HTTP, as the player asks)."""
    files = [f for f in (target.ll_playlist, target.ts_playlist) if f] or [target.media_playlist]
    with trio.move_on_after(READY_TIMEOUT):
        for f in files:
            while True:
                if pub.returncode is not None or not target.alive():
                    raise RuntimeError(f"{target.label}: publisher or server exited")
                try:
                    r = await client.get(target.playlist_url(KEY, f), timeout=POLL_TIMEOUT)
                    if r.status_code == 200 and r.text.count("#EXTINF") >= WARM_SEGMENTS:
                        break
                except httpx.HTTPError:
                    pass
                await trio.sleep(0.1)
        return
    raise RuntimeError(
        f"{target.label}: not {WARM_SEGMENTS} segments listed within {READY_TIMEOUT:g} s"
    )


async def run_one(
    target_name: str, opts: Any, clock: fixtures.ClockInfo, fixture: Path, workdir: Path
) -> list[dict[str, Any]]:
    kf = KeyframeLog()
    out: list[dict[str, Any]] = []
    async with Procs() as procs, open_target(
        target_name, procs, workdir / target_name,
        target_duration=opts.target_duration, nginx_workers=opts.nginx_workers, cpus=opts.cpus,
    ) as target, httpx.AsyncClient() as client, trio.open_nursery() as nursery:  # fmt: skip
        port = await nursery.start(serve_proxy, target.rtmp_port, kf)
        to_wall = time.time() - trio.current_time()
        pub = await procs.start(
            publish.publish_args(fixture, f"rtmp://127.0.0.1:{port}/live/{KEY}"),
            log=workdir / f"{target_name}-pub.log",
        )
        await _wait_playable(client, target, pub)
        for column, file, config in variants(target, opts):
            url = target.playlist_url(KEY, file)
            session = await trio.to_thread.run_sync(
                partial(
                    browser.play_and_sample, url, config,
                    seconds=opts.seconds, interval=opts.sample_interval,
                    start_timeout=START_TIMEOUT, blocks=fixtures.CLOCK_BLOCKS,
                    strip=fixtures.CLOCK_HEIGHT_DIV,
                )
            )  # fmt: skip
            keyframes = [k.arrived + to_wall for k in kf.keyframes]
            out.append({"column": column, "target": target_name, "playlist": file,
                        **summarize(session, keyframes, clock)})  # fmt: skip
            if pub.returncode is not None:
                out[-1]["error"] = "publisher exited: " + str(
                    publish.first_error(workdir, f"{target_name}-pub")
                )
        nursery.cancel_scope.cancel()
    return out


async def run(
    opts: Any, targets: list[str], fixture: Path, workdir: Path
) -> tuple[dict[str, Any], Table]:
    # __main__ resolved a fixture name to its clock variant (fixtures.clock_name).
    try:
        clock = await trio.to_thread.run_sync(fixtures.probe_clock, fixture)
    except ValueError as exc:
        raise SystemExit(f"glass needs a fixture with the clock strip: {exc}") from None
    runs: list[dict[str, Any]] = []
    for name in targets:
        try:
            runs += await run_one(name, opts, clock, fixture, workdir)
        except* RuntimeError as eg:  # raised inside run_one's nursery: a group
            error = "; ".join(str(e) for e in eg.exceptions)
            runs.append({"column": LABELS[name], "target": name, "error": error})
    cols = [r["column"] for r in runs]
    table = Table(
        f"glass: {fixture.name}, {opts.seconds:g} s, a sample every {opts.sample_interval:g} s",
        cols,
    )
    by = {r["column"]: r for r in runs}

    def row(group: str, metric: str, *path: str) -> None:
        values: dict[str, Any] = {}
        for c in cols:
            v: Any = by[c]
            for p in path:
                v = v.get(p) if isinstance(v, dict) else None
            values[c] = v
        table.add(group, metric, values)

    for key, group in (("glass", "glass latency"), ("pdt", "now - playingDate"),
                       ("hls_latency", "hls.latency")):  # fmt: skip
        row(group, "p50 ms", key, "p50_ms")
        row(group, "p90 ms", key, "p90_ms")
        row(group, "max ms", key, "max_ms")
    row("glass latency", "samples", "glass", "n")
    row("pdt - glass", "p50 ms", "pdt_minus_glass", "p50_ms")
    row("player", "start s", "start_s")
    row("player", "stalls", "stalls")
    row("player", "fatal errors", "fatal_errors")
    row("player", "speed", "playback_speed")
    row("player", "misread frames", "misreads")
    for c in cols:
        if by[c].get("error"):
            table.add("error", "", {c: by[c]["error"].splitlines()[0][:60]})
    params = {
        "seconds": opts.seconds,
        "sample_interval": opts.sample_interval,
        "fixture": str(fixture),
        "target_duration": opts.target_duration,
        "targets": targets,
        "hls_js": browser.HLS_JS.name,
        "hls_config": getattr(opts, "hls_config", None),
    }
    return {"params": params, "runs": runs}, table
