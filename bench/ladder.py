"""Scenario ladder (ours only): server CPU of one multitrack publish of three H.264 renditions
against the same three renditions published as three single-track streams.

The fixture (``--fixture``, 720p30 by default) is decoded once and encoded into three renditions
with the same keyframes (1280x720, 960x540, 640x360; fixed GOP, no scene cuts) in one FLV, which
FFmpeg 9 writes as Enhanced RTMP v2 multitrack (track 0 as plain tags, tracks 1 and 2 as
Multitrack OneTrack, as OBS's Enhanced Broadcasting sends them), with the fixture's AAC as the one
audio track. The three single-track FLVs are the same streams copied out (``-c copy``). Each
layout is published (stream copy, ``-re``, looped) to a fresh gateway; after every stream (every
rendition's playlist) lists a segment, the server's CPU is measured for ``--seconds``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import trio

from bench import publish
from bench.fixtures import ENCODE_TIMEOUT, FIXTURE_DIR, ffmpeg_exe
from bench.hls import FileWatcher, PlaylistTracker
from bench.procs import Procs, cpu_seconds
from bench.report import Table
from bench.targets import open_target

RENDITIONS = ((1280, 720, 2500), (960, 540, 1200), (640, 360, 600))  # width, height, kbps
MEDIA_SECONDS = 20  # of the fixture per rendition file (looped by the publisher)
GOP_SECONDS = 2
SETUP_TIMEOUT = 60.0
POLL_INTERVAL = 0.1
# The playlist of each rendition of the multitrack stream (track 0 keeps cmaf.m3u8).
LADDER_PLAYLISTS = ("cmaf.m3u8", "cmaf-v1.m3u8", "cmaf-v2.m3u8")


def make_fixtures(source: Path, directory: Path = FIXTURE_DIR) -> tuple[Path, list[Path]]:
    """The multitrack FLV and the three single-track FLVs (made once, kept in ``directory``)."""
    directory.mkdir(parents=True, exist_ok=True)
    ladder = directory / f"ladder-{source.stem}.flv"
    singles = [directory / f"ladder-{source.stem}-v{i}.flv" for i in range(len(RENDITIONS))]
    base = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
    if not ladder.exists():
        scaled = ";".join(f"[v{i}]scale={w}:{h}[s{i}]" for i, (w, h, _) in enumerate(RENDITIONS))
        split = "".join(f"[v{i}]" for i in range(len(RENDITIONS)))
        gop = str(30 * GOP_SECONDS)
        args = [*base, "-t", str(MEDIA_SECONDS), "-i", str(source)]
        args += ["-filter_complex", f"[0:v]split={len(RENDITIONS)}{split};{scaled}"]
        args += [a for i in range(len(RENDITIONS)) for a in ("-map", f"[s{i}]")]
        args += ["-map", "0:a", "-c:a", "copy", "-c:v", "libx264", "-preset", "veryfast"]
        args += ["-pix_fmt", "yuv420p", "-g", gop, "-keyint_min", gop, "-sc_threshold", "0"]
        for i, (_, _, kbps) in enumerate(RENDITIONS):
            args += [f"-b:v:{i}", f"{kbps}k", f"-maxrate:v:{i}", f"{kbps}k"]
            args += [f"-bufsize:v:{i}", f"{2 * kbps}k"]
        tmp = ladder.with_suffix(".tmp.flv")
        subprocess.run([*args, "-f", "flv", str(tmp)], check=True, timeout=ENCODE_TIMEOUT)
        tmp.replace(ladder)
    for i, single in enumerate(singles):
        if not single.exists():
            args = [*base, "-i", str(ladder), "-map", f"0:v:{i}", "-map", "0:a", "-c", "copy"]
            subprocess.run([*args, "-f", "flv", str(single)], check=True, timeout=ENCODE_TIMEOUT)
    return ladder, singles


def every_stream(args: list[str]) -> list[str]:
    """FFmpeg publisher arguments that copy every stream of the input (FFmpeg picks one video
    and one audio stream otherwise, and the multitrack file would go out single-track)."""
    at = args.index("-c")
    return [*args[:at], "-map", "0", *args[at:]]


async def run_layout(
    name: str,
    files: list[Path],
    playlists: list[tuple[int, str]],
    opts: Any,
    workdir: Path,
    formats: str | None = None,
) -> dict[str, Any]:
    """Publish ``files`` (one stream each, keys ``l0``...) and measure the server's CPU once
    every (stream index, playlist) of ``playlists`` lists a segment."""
    run: dict[str, Any] = {"layout": name, "publishers": len(files), "formats": formats}
    logdir = workdir / f"{name}-logs"
    async with Procs() as procs, open_target(
        "ours", procs, workdir / name, target_duration=opts.target_duration, cpus=opts.cpus,
        formats=formats,
    ) as target:  # fmt: skip
        keys = [f"l{i}" for i in range(len(files))]
        pubs = await publish.start_many(
            procs,
            [
                every_stream(publish.publish_args(f, target.rtmp_url(k)))
                for f, k in zip(files, keys, strict=True)
            ],
            logdir,
            "pub",
        )
        watched = [
            (
                FileWatcher(target.playlist_path(keys[i], file)),
                PlaylistTracker(opts.target_duration),
            )
            for i, file in playlists
        ]
        with trio.move_on_after(SETUP_TIMEOUT):
            while not all(t.first_at for _, t in watched) and target.alive():
                for watcher, tracker in watched:
                    publish.watch(watcher, tracker)
                await trio.sleep(POLL_INTERVAL)
        run["playlists_ready"] = sum(1 for _, t in watched if t.first_at)
        run["playlists"] = len(watched)
        cpu0, t0 = cpu_seconds(target.pids()), trio.current_time()
        while trio.current_time() < t0 + opts.seconds and target.alive():
            for watcher, tracker in watched:
                publish.watch(watcher, tracker)
            await trio.sleep(POLL_INTERVAL)
        cpu1, t1 = cpu_seconds(target.pids()), trio.current_time()
        window = t1 - t0
        sums = [t.summary(t0, t1) for _, t in watched]
        run.update(
            window_s=round(window, 2),
            cpu_s=round(cpu1 - cpu0, 3),
            cpu_percent=round(100 * (cpu1 - cpu0) / window, 1),
            cpu_s_per_min=round((cpu1 - cpu0) / (window / 60), 4),
            cpu_s_per_rendition_min=round((cpu1 - cpu0) / (len(RENDITIONS) * window / 60), 4),
            segments=sum(s["segments"] for s in sums),
            late=sum(s["late"] for s in sums),
            missing=sum(s["missing"] for s in sums),
            publishers_failed=publish.failed(pubs),
            server_alive=target.alive(),
        )
        if run["publishers_failed"]:
            run["publisher_error"] = publish.first_error(logdir, "pub")
    return run


async def run(
    opts: Any, targets: list[str], fixture: Path, workdir: Path
) -> tuple[dict[str, Any], Table]:
    ladder, singles = await trio.to_thread.run_sync(make_fixtures, fixture)
    layouts = [
        ("multitrack", [ladder], [(0, p) for p in LADDER_PLAYLISTS]),
        ("single", singles, [(i, "cmaf.m3u8") for i in range(len(singles))]),
    ]
    # One pair of runs per --formats value (GATEWAY_HLS_FORMATS; default: the gateway's): the
    # single-track publishes each write ts.m3u8 too, the multitrack one only for track 0.
    runs = []
    for formats in getattr(opts, "formats", None) or [None]:
        for name, files, lists in layouts:
            column = f"{name}[{formats}]" if formats else name
            run = await run_layout(column, files, lists, opts, workdir, formats)
            runs.append(run)
    table = Table(
        f"ladder: {fixture.name} as 3 renditions, {opts.seconds:g} s window",
        [r["layout"] for r in runs],
        "",
    )
    for key, label in (
        ("cpu_s_per_min", "CPU s / minute (all 3 renditions)"),
        ("cpu_s_per_rendition_min", "CPU s / rendition-minute"),
        ("cpu_percent", "CPU % of one core"),
        ("playlists_ready", "rendition playlists with segments"),
        ("segments", "segments in window"),
        ("late", "late segments"),
        ("missing", "missing segments"),
        ("publishers_failed", "publishers failed"),
    ):
        table.add("", label, {r["layout"]: r.get(key) for r in runs})
    params = {
        "seconds": opts.seconds,
        "fixture": str(fixture),
        "renditions": [f"{w}x{h}@{k}k" for w, h, k in RENDITIONS],
        "target_duration": opts.target_duration,
    }
    return {"params": params, "runs": runs}, table
