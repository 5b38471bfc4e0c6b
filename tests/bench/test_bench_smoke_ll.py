"""CI smoke test of the LL-HLS benchmark scenarios (glass, llviewers, ingest --formats): each runs
for a few seconds against ours on a tiny fixture, so they cannot rot. Figures are not judged,
only that they were measured and are sane."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.browser import CHROMIUM
from bench.fixtures import Fixture, generate, with_clock
from bench.report import JSON_MARKER

# 4 s of 320x240 at 15 fps, a keyframe every second (1 s segments, 5 parts each).
SMOKE = Fixture("smoke", "320x240", rate=15, video_kbps=300, audio_kbps=64,
                keyframe_seconds=1.0, seconds=4.0, noise=0)  # fmt: skip
# glass tells passes of the looped fixture apart only if one pass is longer than the latency.
CLOCK = with_clock(replace(SMOKE, seconds=20.0))
# Seconds one bench run may take (server start, publisher warm-up, window, stop).
RUN_TIMEOUT = 60.0


def bench(tmp_path: Path, scenario: str, *args: str) -> tuple[str, dict[str, Any]]:
    results = tmp_path / f"results-{scenario}"
    cmd = [
        sys.executable, "-m", "bench", scenario, "--target", "ours", "--target-duration", "1",
        "--results-dir", str(results), "--workdir", str(tmp_path / f"w-{scenario}"), *args,
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table, _, text = proc.stdout.partition(JSON_MARKER)
    doc = json.loads(text)
    (written,) = results.glob(f"{scenario}-*.json")
    assert json.loads(written.read_text()) == doc
    return table, doc


def test_glass_plays_ours_in_chromium_and_reads_the_clock(tmp_path: Path) -> None:
    # Never skipped: without Debian's Chromium this fails (deploy/system-packages.sh has it).
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: run deploy/system-packages.sh"
    fixture = generate(CLOCK, tmp_path)
    table, doc = bench(
        tmp_path, "glass", "--seconds", "2", "--sample-interval", "0.25", "--fixture", str(fixture)
    )
    assert table.startswith("glass:") and "glass latency" in table
    runs = doc["runs"]
    assert [r["column"] for r in runs] == ["ours LL-HLS", "ours TS"], runs
    for run in runs:
        assert "error" not in run, run["error"]
        assert run["started"] and run["samples"] >= 5, run
        assert run["misreads"] <= run["samples"] // 2, run  # the clock strip reads back
        glass = run["glass"]
        assert glass["n"] >= 5 and 0 < glass["p50_ms"] < 20_000, run
        assert run["pdt"] is not None and run["hls_latency"] is not None, run
    ll, ts = runs
    assert ll["glass"]["p50_ms"] < ts["glass"]["p50_ms"], runs  # what LL-HLS is for


def test_llviewers_follow_parts(tmp_path: Path) -> None:
    fixture = generate(SMOKE, tmp_path)
    table, doc = bench(
        tmp_path, "llviewers", "--viewers", "5", "--seconds", "3", "--baseline", "1",
        "--fixture", str(fixture),
    )  # fmt: skip
    assert table.startswith("llviewers:") and "late parts" in table
    (run,) = doc["runs"]
    assert "error" not in run, run["error"]
    assert run["can_block_reload"] and run["has_pdt"], run
    assert run["parts"] > 0 and run["parts_per_s"] > 0, run
    assert run["statuses"] == {} and run["errors"] == {}, run
    assert run["late_vs_listed"]["n"] == run["parts"] and run["late_fraction"] is not None
    assert run["server_alive"] and run["publisher_alive"]
    assert run["ingest_with_viewers"]["polls"] >= 2, run


def test_ingest_per_format(tmp_path: Path) -> None:
    fixture = generate(SMOKE, tmp_path)
    table, doc = bench(
        tmp_path, "ingest", "--publishers", "1", "--seconds", "3", "--sample", "1",
        "--formats", "ts", "--formats", "cmaf", "--fixture", str(fixture),
    )  # fmt: skip
    assert "ours[ts]" in table and "ours[cmaf]" in table
    runs = {r["column"]: r for r in doc["runs"]}
    assert runs.keys() == {"ours[ts]", "ours[cmaf]"}
    assert runs["ours[ts]"]["playlist"] == "ts.m3u8"
    assert runs["ours[cmaf]"]["playlist"] == "cmaf.m3u8"
    for run in runs.values():
        assert "error" not in run, run["error"]
        assert run["cpu_s_per_stream_min"] > 0 and run["segments"] >= 1, run
        assert run["valid"] == 1, run["validation"]  # TS and fMP4 (init + segment) demux
