"""CI smoke test of the access control benchmark (issue 14): ours with and without the hook for a
few seconds on a tiny fixture, so the scenario cannot rot. Figures are not judged beyond what
the issue promises: one hook call per publish and play, at most one per HLS session."""

from __future__ import annotations

from pathlib import Path

import httpx
import trio

from bench.auth import BenchHook, hook_action
from bench.fixtures import generate
from tests.bench.test_bench_smoke_ll import SMOKE, bench


def test_auth_setup_and_viewers(tmp_path: Path) -> None:
    fixture = generate(SMOKE, tmp_path)
    table, doc = bench(
        tmp_path, "auth", "--viewers", "5", "--seconds", "3", "--setups", "3", "--ramp", "0.5",
        "--fixture", str(fixture),
    )  # fmt: skip
    assert table.startswith("auth:") and "hook calls per session" in table
    runs = {r["column"]: r for r in doc["runs"]}
    assert runs.keys() == {"ours", "ours+hook"}
    for run in runs.values():
        assert "error" not in run, run["error"]
        assert run["server_alive"], run
        for what in ("publish", "play"):
            assert run[what]["setups"] == 3 and run[what]["failed"] == 0, run[what]
            assert 0 < run[what]["total"]["p50_ms"] < 5000, run[what]
        viewers = run["viewers"]
        assert viewers["sessions"] >= 5 and viewers["requests_per_s"] > 0, viewers
        assert viewers["statuses"] == {} and viewers["errors"] == {}, viewers
        assert viewers["server_cpu_percent"] > 0, viewers
    hooked = runs["ours+hook"]
    assert hooked["publish"]["hook_calls_per_setup"] == 1, hooked["publish"]
    assert hooked["play"]["hook_calls_per_setup"] == 1, hooked["play"]
    assert 0 < hooked["viewers"]["hook_calls_per_session"] <= 1, hooked["viewers"]
    assert hooked["gateway_hook_mean_ms"] > 0 and hooked["hook_service"]["n"] == 6, hooked
    assert runs["ours"]["viewers"]["hook_read_calls"] == 0
    assert doc["hook_round_trip"]["n"] == 3


def test_hook_counts_ours_and_nginx_requests() -> None:
    async def main() -> BenchHook:
        hook = BenchHook(delay=0.001)
        async with hook.running(), httpx.AsyncClient() as client:
            await client.post(hook.url("a"), content=b'{"action": "read", "app": "live"}')
            await client.post(hook.url("a"), content=b'{"action": "publish"}')
            # nginx-rtmp: a form, HTTP/1.0 without keep-alive
            await client.post(hook.url("b"), content=b"call=play&name=x&app=live")
            await client.post(hook.url("b"), content=b"call=publish&name=x")
        return hook

    hook = trio.run(main)
    assert hook.snapshot()[0] == {("a", "read"): 1, ("a", "publish"): 1, ("b", "read"): 1,
                                  ("b", "publish"): 1}  # fmt: skip
    assert all(seconds >= 0.001 for _, _, seconds in hook.served)


def test_hook_action() -> None:
    assert hook_action(b'{"action": "api"}') == "api"
    assert hook_action(b"call=play&addr=127.0.0.1") == "read"
    assert hook_action(b"call=publish") == "publish"
    assert hook_action(b"") == "?"
