"""CI smoke test of the worker-process benchmarks (issue 17): capacity and the wrk playlist
hammer with ``workers`` = 1 and 2 side by side, a few seconds each on a tiny fixture. Figures are
not judged (no timing), only that both layouts ran and the whole process tree was measured."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.fixtures import Fixture, generate
from bench.report import JSON_MARKER

# 4 s of 320x240 at 15 fps, a keyframe every second (1 s segments).
SMOKE = Fixture("smoke", "320x240", rate=15, video_kbps=300, audio_kbps=64,
                keyframe_seconds=1.0, seconds=4.0, noise=0)  # fmt: skip
# Seconds one bench run may take (two servers started and stopped, windows, set-up).
RUN_TIMEOUT = 90.0
# Every CPU this process may use, as --server-cpus takes it: the shared layout of two workers.
ALL_CPUS = "+".join(map(str, sorted(os.sched_getaffinity(0))))
ENVS = ("--ours-env", "GATEWAY_WORKERS=1", "--ours-env", f"GATEWAY_WORKERS=2,cpus={ALL_CPUS}")
COLUMNS = ["ours{WORKERS=1}", f"ours{{WORKERS=2,cpus={ALL_CPUS}}}"]


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


def test_capacity_runs_one_and_two_workers_and_counts_every_process(tmp_path: Path) -> None:
    fixture = generate(SMOKE, tmp_path)
    table, doc = bench(
        tmp_path, "capacity", "--step", "1", "--max-publishers", "2", "--seconds", "2",
        "--fixture", str(fixture), *ENVS,
    )  # fmt: skip
    assert table.startswith("capacity:") and "streams sustained" in table
    assert [r["column"] for r in doc["runs"]] == COLUMNS
    assert doc["layouts"][COLUMNS[1]]["shared"] is True  # the load shares every CPU
    for run, processes in zip(doc["runs"], (1, 3), strict=True):
        assert "error" not in run, run["error"]
        assert run["levels"] and run["levels"][0]["publishers"] == 1, run
        assert 0 <= run["sustained"] <= 2
        for level in run["levels"]:
            # workers=2: the supervisor and both workers are measured, not the supervisor alone.
            assert level["server_processes"] == processes, level
            assert level["streams_with_playlist"] == level["publishers"], level
            assert level["cpu_s_per_stream_min"] > 0 and level["pss_mb"] > 0, level
            assert isinstance(level["keeps_up"], bool) and "failures" in level
    two = doc["runs"][1]["levels"][0]
    # The workers do the work: the supervisor alone is a small part of the tree's CPU.
    assert two["top_process_cpu_percent"] <= two["cpu_percent"], two


def test_viewers_wrk_only_hammers_both_layouts(tmp_path: Path) -> None:
    # Never skipped: wrk is a Debian package (deploy/system-packages.sh installs it).
    assert shutil.which("wrk"), "wrk is missing: run deploy/system-packages.sh"
    fixture = generate(SMOKE, tmp_path)
    table, doc = bench(
        tmp_path, "viewers", "--viewers", "4", "--seconds", "1", "--wrk-only",
        "--fixture", str(fixture), *ENVS,
    )  # fmt: skip
    assert "wrk playlist" in table
    assert [r["column"] for r in doc["runs"]] == COLUMNS
    for run in doc["runs"]:
        assert "error" not in run, run["error"]
        assert "requests_per_s" not in run  # --wrk-only: no Python viewers phase
        hammer = run["wrk_playlist"]
        assert hammer["returncode"] == 0 and hammer["requests_per_s"] > 0, hammer
        assert hammer["non_2xx"] == 0 and hammer["server_cpu_percent"] > 0, hammer
        assert run["publisher_alive"] is True
