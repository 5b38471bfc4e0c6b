"""CI smoke test of the ``front`` scenario (issue 17): wrk on ours' playlists alone and through
deploy/nginx/gateway-cache.conf, for a couple of seconds each on a tiny fixture, so the scenario
cannot rot. Figures are not judged, beyond that the cache answered most requests itself."""

from __future__ import annotations

from pathlib import Path

from bench.cache import nginx_exe
from bench.fixtures import generate
from bench.wrk import WRK, available
from tests.bench.test_bench_smoke_ll import SMOKE, bench


def test_front_measures_playlists_alone_and_through_the_cache(tmp_path: Path) -> None:
    nginx_exe()  # fails (never skips) where nginx is missing
    assert available(), f"{WRK} is missing: run deploy/system-packages.sh"
    fixture = generate(SMOKE, tmp_path)
    table, doc = bench(
        tmp_path, "front", "--seconds", "2", "--viewers", "4", "--fixture", str(fixture)
    )
    assert table.startswith("front:") and "ours+cache" in table, table
    assert doc["errors"] == {} and doc["params"]["targets"] == ["ours"]
    (run,) = doc["runs"]
    assert run["publisher_alive"] is True
    for column in ("ours", "ours+cache"):
        for kind in ("ts", "cmaf"):
            figures = run[column][kind]
            assert figures["returncode"] == 0 and figures["requests_per_s"] > 0, figures
            assert figures["non_2xx"] == 0 and figures["socket_errors"] == 0, figures
    for kind in ("ts", "cmaf"):
        cached = run["ours+cache"][kind]
        # Behind the cache the gateway saw a small share of the requests (one per 100 ms key).
        assert 0 < cached["upstream_per_s"] * 5 < cached["requests_per_s"], cached
        assert cached["cache_cpu_percent"] > 0
