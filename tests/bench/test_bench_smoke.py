"""CI smoke test of the benchmark harness (issue 6): one publisher into ours for a few seconds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bench.fixtures import Fixture, generate
from bench.report import JSON_MARKER

# A tiny fixture: 4 s of 320x240 at 15 fps, a keyframe every second (so 1 s segments).
SMOKE = Fixture("smoke", "320x240", rate=15, video_kbps=300, audio_kbps=64,
                keyframe_seconds=1.0, seconds=4.0, noise=0)  # fmt: skip
# Seconds the whole bench run may take (start, set-up, 4 s window, validation, stop).
RUN_TIMEOUT = 25.0


def test_ingest_one_publisher_prints_table_and_json(tmp_path: Path) -> None:
    fixture = generate(SMOKE, tmp_path)
    results = tmp_path / "results"
    cmd = [
        sys.executable, "-m", "bench", "ingest", "--target", "ours", "--publishers", "1",
        "--seconds", "4", "--target-duration", "1", "--sample", "1",
        "--fixture", str(fixture), "--results-dir", str(results), "--workdir", str(tmp_path / "w"),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False)
    assert proc.returncode == 0, proc.stderr
    table, _, text = proc.stdout.partition(JSON_MARKER)
    assert table.startswith("ingest:") and "CPU s / stream-minute" in table and "ours" in table
    doc = json.loads(text)
    (written,) = results.glob("ingest-*.json")
    assert json.loads(written.read_text()) == doc
    assert doc["scenario"] == "ingest" and doc["params"]["targets"] == ["ours"]
    (run,) = doc["runs"]
    assert "error" not in run, run["error"]
    expected = {
        *("cpu_s", "cpu_s_per_stream_min", "rss_peak_mb", "rss_per_stream_mb", "late", "missing"),
        *("segments", "valid", "publishers_failed", "first_playlist_s"),
    }
    assert expected <= run.keys()
    assert run["publishers"] == 1 and run["publishers_failed"] == 0
    assert run["streams_with_playlist"] == 1, run  # a playlist was seen
    assert 0 < run["cpu_s"] < 4 * 2  # the server worked, and not on more than 2 cores
    assert run["cpu_s_per_stream_min"] > 0
    assert run["rss_base_mb"] > 0 and run["rss_peak_mb"] >= run["rss_base_mb"]
    assert run["segments"] >= 2 and run["missing"] == 0
    assert run["valid"] == 1, run["validation"]
    assert run["server_alive"] is True
    if len(os.sched_getaffinity(0)) >= 2:  # default --server-cpus auto: the server on its own
        allowed = sorted(os.sched_getaffinity(0))
        assert doc["cpus"] == {"server": allowed[:1], "clients": allowed[1:], "shared": False}
