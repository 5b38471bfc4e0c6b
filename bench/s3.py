"""Scenario s3: "segment listed after its closing keyframe" with the S3-compatible store, against
the memory store on the same machine (ours only: nginx-rtmp has no object store).

Two runs of ours, one after the other: the memory store (no ``--hls-dir``), then ``hls_s3_url``
against moto's S3 server (``moto_server`` from ``moto[server]``, a subprocess on loopback, one
public-read bucket). As in :mod:`bench.latency`, the publisher goes through :mod:`bench.proxy`,
which timestamps each video keyframe as it is written to the gateway, and the closing keyframe of
segment k is matched by its EXTINF. Measured from that keyframe:

- *gateway playlist*: the gateway's media playlist (polled over HTTP) lists the segment;
- *object in bucket*: an anonymous GET of the segment's first byte in the bucket succeeds
  (polled from the moment the gateway lists it; bucket polls every ``BUCKET_POLL``, 20 ms);
- *bucket playlist*: the bucket's copy of the media playlist lists it (the store uploads a
  playlist only after every object it names, so the segment is in the bucket by then).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import trio

from bench import publish
from bench.hls import PlaylistTracker, Seen
from bench.latency import FIRST_PLAYLIST_TIMEOUT, POLL_TIMEOUT, _dist, _segment_ends
from bench.procs import Procs, free_port, wait_tcp
from bench.proxy import KeyframeLog, serve_proxy
from bench.report import Table
from bench.targets import APP, open_target

BUCKET = "bench-hls"
PREFIX = "hls"
KEY = "lat"
# moto accepts any credentials; botocore's chain in the gateway finds these in its environment.
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}
STORES = ("memory", "s3")
# Seconds a segment's object is looked for in the bucket before it counts as never seen.
OBJECT_TIMEOUT = 15.0
# Shortest period of the bucket polls (seconds): moto answers in Python on the bench's CPU, and
# polling it every 5 ms would take that CPU from the bench's own polls of the gateway.
BUCKET_POLL = 0.02


def moto_command(port: int) -> list[str]:
    """moto's S3 server, niced: it shares the bench's CPU, and its bursts of Python work on each
    segment's PUT (parsing, hashing and storing ~1 MB) must not delay the bench's own polls of
    the gateway (a real bucket is on other machines)."""
    script = Path(sys.executable).parent / "moto_server"
    return ["nice", "-n", "19", str(script), "-H", "127.0.0.1", "-p", str(port)]


async def _create_bucket(client: httpx.AsyncClient, endpoint: str) -> None:
    """The bucket and a public-read policy (what anonymous players and a CDN need on S3 too);
    moto takes unsigned requests, so plain HTTP does."""
    r = await client.put(f"{endpoint}/{BUCKET}")
    r.raise_for_status()
    r = await client.put(f"{endpoint}/{BUCKET}?policy", content=public_read_policy(BUCKET))
    r.raise_for_status()


def public_read_policy(bucket: str) -> str:
    """A bucket policy letting anyone GET its objects (JSON)."""
    statement = {
        "Effect": "Allow",
        "Principal": "*",
        "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{bucket}/*",
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


async def _watch(
    client: httpx.AsyncClient, url: str, tracker: PlaylistTracker, period: float, on_new: Any
) -> None:
    """Poll a playlist for good; new segments go to ``tracker`` (and ``on_new``)."""
    while True:
        sent = trio.current_time()
        try:
            r = await client.get(url, timeout=POLL_TIMEOUT)
        except httpx.HTTPError:
            r = None
        now = trio.current_time()
        if r is not None and r.status_code == 200:
            for seen in tracker.update(r.text, now):
                on_new(seen)
        await trio.sleep(max(0.0, period - (now - sent)))


async def _object_present(
    client: httpx.AsyncClient, url: str, period: float, out: dict[int, float], seq: int
) -> None:
    """Poll the object until it is there (an anonymous one-byte GET: moto checks HEAD against
    s3:HeadObject, which a public-read policy does not grant); give up after OBJECT_TIMEOUT."""
    with trio.move_on_after(OBJECT_TIMEOUT):
        while True:
            sent = trio.current_time()
            try:
                r = await client.get(url, headers={"Range": "bytes=0-0"}, timeout=POLL_TIMEOUT)
                if r.status_code in (200, 206):
                    out[seq] = trio.current_time()
                    return
            except httpx.HTTPError:
                pass
            await trio.sleep(max(0.0, period - (trio.current_time() - sent)))


def _latencies(tracker: PlaylistTracker, kf: KeyframeLog, seen_at: dict[int, float]) -> list[float]:
    """Seconds from each segment's closing keyframe (matched on ``tracker``'s EXTINFs) to
    ``seen_at[seq]``."""
    out = []
    for seq, close in _segment_ends(tracker, kf):
        if close is not None and seq in seen_at:
            out.append(seen_at[seq] - close.arrived)
    return out


async def run_one(store: str, opts: Any, fixture: Path, workdir: Path) -> dict[str, Any]:
    res: dict[str, Any] = {"store": store}
    period = opts.poll_ms / 1000
    bucket_period = max(period, BUCKET_POLL)
    kf = KeyframeLog()
    gateway = PlaylistTracker(opts.target_duration)
    bucket = PlaylistTracker(opts.target_duration)
    objects: dict[int, float] = {}
    async with Procs() as procs, httpx.AsyncClient() as client:
        settings: dict[str, str] = {}
        endpoint = ""
        if store == "s3":
            port = free_port()
            moto = await procs.start(moto_command(port), log=workdir / "moto.log")
            await wait_tcp(port, moto)
            endpoint = f"http://127.0.0.1:{port}"
            await _create_bucket(client, endpoint)
            settings = {
                **AWS_ENV,
                "GATEWAY_HLS_S3_URL": f"s3://{BUCKET}/{PREFIX}",
                "GATEWAY_S3_ENDPOINT_URL": endpoint,
            }
        async with open_target(
            "ours", procs, workdir / store, target_duration=opts.target_duration,
            cpus=opts.cpus, settings=settings, disk=False,
        ) as target, trio.open_nursery() as nursery:  # fmt: skip
            proxy = await nursery.start(serve_proxy, target.rtmp_port, kf)
            playlist = target.media_playlist
            objects_base = f"{endpoint}/{BUCKET}/{PREFIX}/{APP}/{KEY}"

            def listed(seen: Seen) -> None:
                if store == "s3":
                    url = f"{objects_base}/{seen.uri}"
                    nursery.start_soon(
                        _object_present, client, url, bucket_period, objects, seen.seq
                    )

            nursery.start_soon(_watch, client, target.playlist_url(KEY), gateway, period, listed)
            if store == "s3":
                url = f"{objects_base}/{playlist}"
                nursery.start_soon(_watch, client, url, bucket, bucket_period, lambda _: None)
            pub = await procs.start(
                publish.publish_args(fixture, f"rtmp://127.0.0.1:{proxy}/{APP}/{KEY}"),
                log=workdir / f"{store}-pub.log",
            )
            with trio.move_on_after(FIRST_PLAYLIST_TIMEOUT):
                while gateway.first_at is None:
                    await trio.sleep(0.1)
            if gateway.first_at is None:
                res["error"] = "no playlist with a segment"
            else:
                with trio.move_on_after(opts.seconds):
                    while pub.returncode is None and target.alive():
                        await trio.sleep(0.1)
                if pub.returncode is not None or not target.alive():
                    res["error"] = publish.first_error(workdir, f"{store}-pub") or (
                        target.log_tail()
                    )
            nursery.cancel_scope.cancel()
    res["playlist"] = playlist
    res["segments"] = len(gateway.segments)
    res["keyframes"] = len(kf.keyframes)
    res["gateway_playlist"] = _dist(_latencies(gateway, kf, _seen(gateway)))
    if store == "s3":
        res["object_in_bucket"] = _dist(_latencies(gateway, kf, objects))
        res["bucket_playlist"] = _dist(_latencies(gateway, kf, _seen(bucket)))
    return res


def _seen(tracker: PlaylistTracker) -> dict[int, float]:
    return {seq: s.at for seq, s in tracker.segments.items()}


async def run(
    opts: Any, targets: list[str], fixture: Path, workdir: Path
) -> tuple[dict[str, Any], Table]:
    runs = []
    for store in STORES:
        try:
            runs.append(await run_one(store, opts, fixture, workdir))
        except RuntimeError as exc:
            runs.append({"store": store, "error": str(exc)})
    by = {r["store"]: r for r in runs}
    title = f"s3: keyframe -> segment listed, {fixture.name}, {opts.seconds:g} s, "
    polls = f"poll {opts.poll_ms:g} ms (bucket {max(opts.poll_ms, BUCKET_POLL * 1000):g} ms)"
    table = Table(title + polls, [f"{s} store" for s in STORES])

    def row(group: str, metric: str, get: Any) -> None:
        values = {}
        for store in STORES:
            try:
                values[f"{store} store"] = get(by[store])
            except (KeyError, TypeError):
                values[f"{store} store"] = None
        table.add(group, metric, values)

    for group, field in (
        ("gateway playlist", "gateway_playlist"),
        ("object in bucket", "object_in_bucket"),
        ("bucket playlist", "bucket_playlist"),
    ):
        for q in ("p50", "p90", "p99", "max"):
            row(group, f"{q} ms", lambda r, f=field, q=q: r[f][f"{q}_ms"])
    row("segments", "", lambda r: r["gateway_playlist"]["n"])
    row("error", "", lambda r: r.get("error", "")[:60] or None)
    params = {
        "seconds": opts.seconds,
        "poll_ms": opts.poll_ms,
        "fixture": str(fixture),
        "target_duration": opts.target_duration,
        "stores": list(STORES),
    }
    return {"params": params, "runs": runs}, table
