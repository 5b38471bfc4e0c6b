"""``python -m bench <scenario> [--target ours|nginx|both] [options]``; see bench/README.md."""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

import trio

from bench import cpus, fixtures, report

SCENARIOS = (
    "ingest", "hotpath", "latency", "viewers", "fanout", "firstframe", "glass", "llviewers",
    "auth", "ladder", "front", "s3", "capacity",
)  # fmt: skip


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("scenario", choices=SCENARIOS)
    p.add_argument("--target", choices=("ours", "nginx", "both"), default="both")
    p.add_argument("--fixture", default="720p30", help="fixture name or .flv path")
    p.add_argument("--seconds", type=float, default=30.0, help="measurement window per run")
    p.add_argument("--target-duration", type=float, default=2.0, help="HLS target, seconds")
    p.add_argument("--results-dir", type=Path, default=None, help="default bench/results/")
    p.add_argument("--workdir", type=Path, default=None, help="keep server files and logs here")
    p.add_argument("--nginx-workers", type=int, default=1)
    p.add_argument(
        "--server-cpus", default="auto",
        help="CPUs of the server under test; the bench and its clients get the others "
        "(auto: the first CPU; none: no pinning)",
    )  # fmt: skip
    p.add_argument("--publishers", type=_ints, default=[1, 10, 50, 100], help="ingest: list")
    p.add_argument("--sample", type=int, default=3, help="ingest: streams checked over HTTP")
    p.add_argument(
        "--viewers", type=int, default=None,
        help="viewers, llviewers: HTTP clients (default 200); front: wrk connections (default "
        "200); auth: HLS sessions (default 1000)",
    )  # fmt: skip
    p.add_argument("--players", type=_ints, default=[1, 10, 50], help="fanout: list")
    p.add_argument("--poll-ms", type=float, default=5.0, help="latency, s3: playlist poll period")
    p.add_argument("--capture", type=Path, default=None, help="hotpath: recorded RTMP bytes")
    p.add_argument("--repeat", type=int, default=5, help="hotpath: replays of the capture")
    p.add_argument("--trials", type=int, default=12, help="firstframe: joins per target")
    p.add_argument(
        "--formats", action="append", default=None, metavar="FORMATS",
        help="ingest, hotpath, ladder: HLS formats of ours (GATEWAY_HLS_FORMATS), e.g. ts, cmaf or "
        "ts,cmaf; repeat the option for one run per value (default: one run, the environment's "
        "or the gateway's default)",
    )  # fmt: skip
    p.add_argument(
        "--ours-env", action="append", default=None, metavar="KEY=VALUE[,KEY=VALUE]",
        help="ingest, capacity, viewers: GATEWAY_* settings of ours; repeat the option for one "
        "run per value, side by side (e.g. --ours-env GATEWAY_WORKERS=1 --ours-env "
        "GATEWAY_WORKERS=2); cpus=LIST gives that column its own --server-cpus (e.g. "
        "--ours-env GATEWAY_WORKERS=1,cpus=0 --ours-env GATEWAY_WORKERS=2,cpus=0-1)",
    )  # fmt: skip
    p.add_argument(
        "--step", type=int, default=10,
        help="capacity: publishers added at each level (the first level has this many)",
    )  # fmt: skip
    p.add_argument(
        "--max-publishers", type=int, default=300, help="capacity: the last level tried"
    )  # fmt: skip
    p.add_argument(
        "--max-late", type=float, default=0.01,
        help="capacity: fraction of late segments a level may have and still keep up",
    )  # fmt: skip
    p.add_argument(
        "--wrk-only", action="store_true",
        help="viewers: only the wrk playlist hammer (no Python viewers phase)",
    )  # fmt: skip
    p.add_argument(
        "--nodelay", action="store_true",
        help="ingest: publishers set TCP_NODELAY (as OBS does; FFmpeg's default is Nagle on)",
    )  # fmt: skip
    p.add_argument(
        "--ll-playlist", default=None,
        help="glass: what the LL-HLS player loads (default index.m3u8, the multivariant one)",
    )  # fmt: skip
    p.add_argument(
        "--ts-playlist", default=None,
        help="glass: ours' TS playlist (default ts.m3u8; index.m3u8 on a gateway without "
        "hls_formats)",
    )  # fmt: skip
    p.add_argument("--sample-interval", type=float, default=0.5, help="glass: seconds")
    p.add_argument(
        "--hls-config", default=None, metavar="JSON",
        help='glass: hls.js settings merged into every player\'s, e.g. '
        '\'{"maxLiveSyncPlaybackRate": 1.1}\' (what the gateway\'s player page sets)',
    )  # fmt: skip
    p.add_argument(
        "--playlist", default="cmaf.m3u8", help="llviewers: the LL-HLS media playlist"
    )  # fmt: skip
    p.add_argument(
        "--baseline", type=float, default=10.0,
        help="llviewers: seconds of ingest watched without viewers first",
    )  # fmt: skip
    p.add_argument("--setups", type=int, default=30, help="auth: publishes and plays per column")
    p.add_argument(
        "--hook-delay", type=float, default=0.0, help="auth: ms the bench hook waits to answer"
    )  # fmt: skip
    p.add_argument(
        "--viewer-mode", choices=("segments", "ll"), default="segments",
        help="auth: viewers reload the variant playlist every target duration and fetch whole "
        "segments (segments), or follow it with blocking reloads and parts (ll)",
    )  # fmt: skip
    p.add_argument("--ramp", type=float, default=5.0, help="auth: seconds over which viewers start")
    return p


async def _main(opts: Any) -> None:
    if opts.viewers is None:
        opts.viewers = 1000 if opts.scenario == "auth" else 200
    if opts.scenario in ("hotpath", "llviewers", "ladder", "s3"):
        targets = ["ours"]  # nginx-rtmp has no LL-HLS
    else:
        targets = ["ours", "nginx"] if opts.target == "both" else [opts.target]
    opts.allowed_cpus = frozenset(os.sched_getaffinity(0))  # before moving to the client CPUs
    try:
        opts.cpus = cpus.plan(opts.server_cpus, opts.allowed_cpus)
    except ValueError as exc:
        raise SystemExit(f"bench: {exc}") from None
    if opts.cpus.clients is not None:
        os.sched_setaffinity(0, opts.cpus.clients)  # FFmpeg, wrk and the rest inherit it
    # glass publishes the clock variant (frame numbers in the picture) of a named fixture.
    name = fixtures.clock_name(opts.fixture) if opts.scenario == "glass" else opts.fixture
    fixture = fixtures.ensure(name)
    module = importlib.import_module(f"bench.{opts.scenario}")
    own_workdir = opts.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="bench-")) if own_workdir else opts.workdir
    result = None
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_cancel_on_sigterm, nursery.cancel_scope)
            result, table = await module.run(opts, targets, fixture, workdir)
            nursery.cancel_scope.cancel()
    finally:
        if own_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    if result is None:
        raise SystemExit("terminated; every process started was stopped")
    result["cpus"] = opts.cpus.describe()
    report.emit(opts.scenario, result, table, opts.results_dir)


async def _cancel_on_sigterm(scope: trio.CancelScope) -> None:
    # SIGTERM (e.g. from CI or `kill`) unwinds like Ctrl-C: every Procs block stops its children.
    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        async for _ in signals:
            scope.cancel()
            return


def main(argv: list[str] | None = None) -> int:
    opts = build_parser().parse_args(argv)
    try:
        trio.run(_main, opts)
    except BaseException as exc:
        interrupted = isinstance(exc, KeyboardInterrupt) or (
            isinstance(exc, BaseExceptionGroup) and exc.subgroup(KeyboardInterrupt) is not None
        )
        if not interrupted:
            raise
        print("interrupted; every process started was stopped", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
