"""Scenario 3, latency: closing keyframe arrival -> playlist lists the segment; publish start ->
first playable playlist; live-edge lag. Measured from the client side for every target.

One publisher goes through :mod:`bench.proxy`, which timestamps each video keyframe as it is written
to the server. The playlist is polled over HTTP every ``--poll-ms``. Segment k's closing keyframe is
the one whose timestamp is nearest to (start of k + its EXTINF); that keyframe then starts k+1, so
EXTINF rounding never accumulates. For ours, the ``hls_segments`` counter of /metrics is polled too:
its i-th increment is the i-th segment closing.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import httpx
import trio

from bench import publish
from bench.hls import PlaylistTracker
from bench.procs import Procs
from bench.proxy import Keyframe, KeyframeLog, serve_proxy
from bench.report import Table
from bench.targets import LABELS, open_target, run_each

# A segment whose EXTINF-predicted end is further than this from any keyframe is not matched.
MATCH_TOLERANCE_MS = 500
# Seconds allowed from publish to the first playlist listing a segment.
FIRST_PLAYLIST_TIMEOUT = 30.0
# Seconds a poll request may take.
POLL_TIMEOUT = 5.0


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))]


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


def _dist(values: list[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "p50_ms": _ms(percentile(values, 50)),
        "p90_ms": _ms(percentile(values, 90)),
        "p99_ms": _ms(percentile(values, 99)),
        "max_ms": _ms(max(values, default=None)),
        "mean_ms": _ms(statistics.fmean(values)) if values else None,
        # Every sample when there are few (one per segment): a lone outlier is p99 at n = 30.
        "samples_ms": [_ms(v) for v in sorted(values)] if len(values) <= 1000 else None,
    }


async def _poll_metric(
    client: httpx.AsyncClient, url: str, period: float, out: list[float]
) -> None:
    last = None
    while True:
        try:
            r = await client.get(url, timeout=POLL_TIMEOUT)
        except httpx.HTTPError:
            await trio.sleep(period)
            continue
        now = trio.current_time()
        for line in r.text.splitlines():
            if line.startswith("hls_segments_total "):
                value = int(float(line.split()[1]))
                if last is not None and value > last:
                    out.extend([now] * (value - last))
                last = value
        await trio.sleep(period)


async def run_one(target_name: str, opts: Any, fixture: Path, workdir: Path) -> dict[str, Any]:
    res: dict[str, Any] = {"target": target_name}
    period = opts.poll_ms / 1000
    kf = KeyframeLog()
    tracker = PlaylistTracker(opts.target_duration)
    lags: list[float] = []
    rtts: list[float] = []
    metric_ticks: list[float] = []
    async with Procs() as procs, open_target(
        target_name, procs, workdir / target_name,
        target_duration=opts.target_duration, nginx_workers=opts.nginx_workers, cpus=opts.cpus,
    ) as target, httpx.AsyncClient() as client, trio.open_nursery() as nursery:  # fmt: skip
        port = await nursery.start(serve_proxy, target.rtmp_port, kf)
        if target_name == "ours":
            nursery.start_soon(
                _poll_metric, client, f"{target.http_base()}/metrics", period, metric_ticks
            )
        url = target.playlist_url("lat")
        spawned = trio.current_time()
        pub = await procs.start(
            publish.publish_args(fixture, f"rtmp://127.0.0.1:{port}/live/lat"),
            log=workdir / f"{target_name}-pub.log",
        )
        deadline = None
        edge: float | None = None
        with trio.move_on_after(FIRST_PLAYLIST_TIMEOUT + opts.seconds + 5):
            while deadline is None or trio.current_time() < deadline:
                sent = trio.current_time()
                try:
                    r = await client.get(url, timeout=POLL_TIMEOUT)
                except httpx.HTTPError:
                    r = None
                now = trio.current_time()
                rtts.append(now - sent)
                if r is not None and r.status_code == 200:
                    if tracker.update(r.text, now):  # new segments: the edge moved
                        edge = _edge_ms(tracker, kf)
                    if tracker.first_at is not None and deadline is None:
                        deadline = now + opts.seconds
                    if edge is not None and kf.last_media_ms is not None:
                        lags.append((kf.last_media_ms - edge) / 1000)
                if pub.returncode is not None or not target.alive():
                    res["error"] = publish.first_error(workdir, f"{target_name}-pub") or (
                        target.log_tail()
                    )
                    break
                if deadline is None and now - spawned > FIRST_PLAYLIST_TIMEOUT:
                    res["error"] = "no playlist with a segment"
                    break
                await trio.sleep(max(0.0, period - (now - sent)))
        nursery.cancel_scope.cancel()
    latencies, unmatched = _match(tracker, kf)
    res["segment_latency"] = _dist(latencies)
    res["unmatched_segments"] = unmatched
    if metric_ticks:
        closes = _closing_arrivals(tracker, kf)
        res["metric_latency"] = _dist(
            [t - a for t, a in zip(metric_ticks, closes, strict=False) if a is not None]
        )
    if tracker.first_at is not None:
        res["first_playlist_from_spawn_ms"] = _ms(tracker.first_at - spawned)
        if kf.connected_at is not None:
            res["first_playlist_from_connect_ms"] = _ms(tracker.first_at - kf.connected_at)
    res["live_edge_lag"] = _dist(lags)
    res["poll_rtt"] = _dist(rtts)
    res["polls"] = len(rtts)
    res["keyframes"] = len(kf.keyframes)
    res["segments"] = len(tracker.segments)
    res["proxy_errors"] = kf.errors
    return res


def _segment_ends(tracker: PlaylistTracker, kf: KeyframeLog) -> list[tuple[int, Keyframe | None]]:
    """(seq, closing keyframe or None) for each segment in order, snapping to real keyframes."""
    if not kf.keyframes:
        return []
    out: list[tuple[int, Keyframe | None]] = []
    start = float(kf.keyframes[0].timestamp_ms)
    for seq in sorted(tracker.segments):
        seg = tracker.segments[seq]
        guess = start + seg.duration * 1000
        close = kf.nearest(guess)
        if close is None or abs(close.timestamp_ms - guess) > MATCH_TOLERANCE_MS:
            out.append((seq, None))
            start = guess
            continue
        out.append((seq, close))
        start = close.timestamp_ms
    return out


def _closing_arrivals(tracker: PlaylistTracker, kf: KeyframeLog) -> list[float | None]:
    return [None if k is None else k.arrived for _, k in _segment_ends(tracker, kf)]


def _match(tracker: PlaylistTracker, kf: KeyframeLog) -> tuple[list[float], int]:
    latencies, unmatched = [], 0
    for seq, close in _segment_ends(tracker, kf):
        if close is None:
            unmatched += 1
            continue
        latencies.append(tracker.segments[seq].at - close.arrived)
    return latencies, unmatched


def _edge_ms(tracker: PlaylistTracker, kf: KeyframeLog) -> float | None:
    """Media time (ms) at the end of the newest listed segment."""
    ends = _segment_ends(tracker, kf)
    last = ends[-1][1] if ends else None
    return None if last is None else float(last.timestamp_ms)


async def run(
    opts: Any, targets: list[str], fixture: Path, workdir: Path
) -> tuple[dict[str, Any], Table]:
    runs = await run_each(run_one, targets, opts, fixture, workdir)
    cols = [LABELS[t] for t in targets]
    table = Table(f"latency: {fixture.name}, {opts.seconds:g} s, poll {opts.poll_ms:g} ms", cols)
    by = {r["target"]: r for r in runs}

    def row(group: str, metric: str, get: Any) -> None:
        values = {}
        for t in targets:
            try:
                values[LABELS[t]] = get(by[t])
            except (KeyError, TypeError):
                values[LABELS[t]] = None
        table.add(group, metric, values)

    row("keyframe->playlist", "p50 ms", lambda r: r["segment_latency"]["p50_ms"])
    row("keyframe->playlist", "p90 ms", lambda r: r["segment_latency"]["p90_ms"])
    row("keyframe->playlist", "p99 ms", lambda r: r["segment_latency"]["p99_ms"])
    row("keyframe->playlist", "segments", lambda r: r["segment_latency"]["n"])
    row("keyframe->metric", "p50 ms", lambda r: r["metric_latency"]["p50_ms"])
    row("keyframe->metric", "p99 ms", lambda r: r["metric_latency"]["p99_ms"])
    row("first playlist", "from connect ms", lambda r: r["first_playlist_from_connect_ms"])
    row("first playlist", "from spawn ms", lambda r: r["first_playlist_from_spawn_ms"])
    row("live-edge lag", "p50 ms", lambda r: r["live_edge_lag"]["p50_ms"])
    row("live-edge lag", "max ms", lambda r: r["live_edge_lag"]["max_ms"])
    row("poll", "p50 rtt ms", lambda r: r["poll_rtt"]["p50_ms"])
    row("error", "", lambda r: r.get("error", "")[:60] or None)
    params = {
        "seconds": opts.seconds,
        "poll_ms": opts.poll_ms,
        "fixture": str(fixture),
        "target_duration": opts.target_duration,
        "targets": targets,
    }
    return {"params": params, "runs": runs}, table
