"""gateway.s3store against a real S3 API (moto's server on loopback): order, headers, deletes,
an outage (the server's port closed) and recovery, back-pressure, credentials."""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Iterator

import prometheus_client
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import make_s3_store, object_headers
from gateway.metrics import Metrics
from gateway.s3store import S3Config, S3Error, S3Store
from segmenter.s3 import S3Location
from segmenter.store import MemoryStore, StoreFull, StoreHealth
from tests.conftest import test_settings
from tests.s3server import MotoS3, aws_environment, out_of_order, serving

DEADLINE = 30.0  # generous: every wait below normally takes milliseconds


@pytest.fixture
def moto(monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoS3]:
    for name, value in aws_environment().items():
        monkeypatch.setenv(name, value)
    yield from serving()


def make(
    moto: MotoS3,
    *,
    queue_bytes: int = 1 << 20,
    metrics: Metrics | None = None,
    memory_bytes: int = 0,
) -> S3Store:
    bucket = f"gateway-{secrets.token_hex(4)}"  # moto's buckets outlive a server: one per test
    moto.create_bucket(bucket)
    config = S3Config(
        location=S3Location(bucket, "hls"),
        endpoint_url=moto.endpoint,
        request_timeout=5.0,
        max_in_flight=4,
        max_pending_bytes=queue_bytes,
        retry_base_delay=0.05,
        retry_max_delay=0.3,
    )
    health = StoreHealth(logging.getLogger("test.s3"))
    memory = MemoryStore(memory_bytes)
    return S3Store(config, memory, health, headers=object_headers, metrics=metrics)


async def drained(store: S3Store) -> None:
    with trio.fail_after(DEADLINE):
        await store.drain()


def playlist(*uris: str) -> bytes:
    lines = ["#EXTM3U", "#EXT-X-TARGETDURATION:2"]
    for uri in uris:
        lines += ["#EXTINF:2.000,", uri]
    return ("\n".join(lines) + "\n").encode()


async def test_objects_go_up_in_order_with_their_headers(
    nursery: trio.Nursery, moto: MotoS3
) -> None:
    store = make(moto)
    bucket = store.config.location.bucket
    await nursery.start(store.run)
    store.put("live/a/init-1.mp4", b"init")
    store.put("live/a/s-0.m4s", (b"moof", b"mdat"), fresh=True)  # chunks, as CMAF writes them
    store.put("live/a/cmaf.m3u8", playlist("s-0.m4s"))
    store.put("live/a/s-0.ts", b"\x47" * 188, fresh=True)
    store.put("live/a/ts.m3u8", playlist("s-0.ts"))
    await drained(store)
    assert moto.keys(bucket) == {
        f"hls/live/a/{n}" for n in ("init-1.mp4", "s-0.m4s", "cmaf.m3u8", "s-0.ts", "ts.m3u8")
    }
    segment = moto.get(bucket, "hls/live/a/s-0.m4s")
    assert segment["Body"].read() == b"moofmdat"
    assert segment["ContentType"] == "video/iso.segment"
    assert segment["CacheControl"] == "public, max-age=86400, immutable"
    assert moto.get(bucket, "hls/live/a/s-0.ts")["ContentType"] == "video/mp2t"
    assert moto.get(bucket, "hls/live/a/init-1.mp4")["ContentType"] == "video/mp4"
    listing = moto.get(bucket, "hls/live/a/ts.m3u8")
    assert listing["ContentType"] == "application/vnd.apple.mpegurl"
    assert listing["CacheControl"] == "public, max-age=1"
    assert out_of_order(moto.recorder.snapshot(), bucket) == []
    # The gateway's own copy answers at once, before and after the upload.
    assert store.get("live/a/s-0.m4s") == b"moofmdat"
    store.put("live/a/ts.m3u8", playlist())
    store.delete("live/a/s-0.ts")
    await drained(store)
    assert "hls/live/a/s-0.ts" not in moto.keys(bucket)
    assert store.get("live/a/s-0.ts") is None
    assert out_of_order(moto.recorder.snapshot(), bucket) == []


async def test_an_outage_fails_health_and_loses_nothing_still_listed(
    nursery: trio.Nursery, moto: MotoS3
) -> None:
    metrics = Metrics(prometheus_client.CollectorRegistry())
    store = make(moto, metrics=metrics)
    bucket = store.config.location.bucket
    await nursery.start(store.run)
    store.put("live/a/s-0.ts", b"zero", fresh=True)
    store.put("live/a/ts.m3u8", playlist("s-0.ts"))
    await drained(store)

    moto.stop()  # the port is closed: every request is refused
    store.put("live/a/s-1.ts", b"one", fresh=True)
    store.put("live/a/ts.m3u8", playlist("s-0.ts", "s-1.ts"))
    store.put("live/a/s-2.ts", b"two", fresh=True)
    store.put("live/a/ts.m3u8", playlist("s-1.ts", "s-2.ts"))
    with trio.fail_after(DEADLINE):
        while store.health.failure is None:
            await trio.sleep(0.01)
    failure = store.health.failure
    # Uploads run side by side: either segment may fail first.
    assert re.match(r"store: S3 PUT live/a/s-[12]\.ts failed: ConnectError", failure.reason)
    store.put("live/a/s-3.ts", b"three", fresh=True)
    store.put("live/a/ts.m3u8", playlist("s-2.ts", "s-3.ts"))
    store.delete("live/a/s-0.ts")  # left the window before the store came back
    store.delete("live/a/s-1.ts")  # expired before it ever went up: never sent
    with trio.fail_after(DEADLINE):  # retries go on, backing off
        while metric(metrics, "hls_s3_request_failures_total") < 6:
            await trio.sleep(0.01)
    assert store.health.failure is not None

    moto.start()
    await drained(store)
    assert store.health.failure is None
    assert moto.keys(bucket) == {"hls/live/a/s-2.ts", "hls/live/a/s-3.ts", "hls/live/a/ts.m3u8"}
    assert moto.get(bucket, "hls/live/a/ts.m3u8")["Body"].read() == playlist("s-2.ts", "s-3.ts")
    events = moto.recorder.snapshot()
    assert out_of_order(events, bucket) == []
    sent = [e.key for e in events if e.phase == "end" and e.method == "PUT"]
    assert "hls/live/a/s-1.ts" not in sent  # skipped: expired during the outage
    assert sent.count("hls/live/a/ts.m3u8") == 2  # the first, and the newest after the outage
    assert metric(metrics, "hls_s3_skipped_uploads_total") == 1
    assert metric(metrics, "hls_s3_queue_items") == 0


async def test_a_full_queue_asks_writers_to_wait_until_it_drains(
    nursery: trio.Nursery, moto: MotoS3
) -> None:
    store = make(moto, queue_bytes=1000)
    await nursery.start(store.run)
    moto.stop()
    store.put("live/a/s-0.ts", b"x" * 600, fresh=True)
    assert not store.congested
    store.put("live/a/s-1.ts", b"x" * 600, fresh=True)
    assert store.congested
    woken = trio.Event()
    assert store.when_writable(woken.set)
    with trio.move_on_after(0.5):  # down: nothing drains (a bound, not a timing assertion)
        await woken.wait()
    assert not woken.is_set()
    moto.start()
    with trio.fail_after(DEADLINE):
        await woken.wait()
    await drained(store)
    assert not store.congested and store.pending_bytes == 0


async def test_without_credentials_the_store_does_not_start(
    nursery: trio.Nursery, moto: MotoS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    store = make(moto)
    with pytest.raises(S3Error, match="no AWS credentials found"):
        await store.run()


async def test_make_s3_store_follows_the_settings(moto: MotoS3) -> None:
    settings = test_settings(
        hls_s3_url="s3://media/edge/", s3_endpoint_url=moto.endpoint, s3_max_in_flight=3
    )
    store = make_s3_store(settings, StoreHealth())
    assert store.config.location == S3Location("media", "edge")
    assert store.config.max_in_flight == 3
    assert store.memory.max_bytes == settings.hls_memory_max_bytes
    assert store.memory.health is None  # only the store records (see S3Store)


async def test_outage_health_stays_failing_while_new_segments_arrive(
    nursery: trio.Nursery, moto: MotoS3
) -> None:
    store = make(moto)
    await nursery.start(store.run)
    moto.stop()
    store.put("live/a/s-0.ts", b"x", fresh=True)
    with trio.fail_after(DEADLINE):
        while store.health.failure is None:
            await trio.sleep(0.01)
    first = store.health.failure
    for n in (1, 2):  # new segments land in the memory copy: not a sign the bucket is back
        store.put(f"live/a/s-{n}.ts", b"x", fresh=True)
    with trio.fail_after(DEADLINE):
        while (failure := store.health.failure) is not None and failure.failures < 3:
            await trio.sleep(0.01)
    # One outage all along (a cleared failure would have started again at 1 with a new since).
    assert failure is not None and failure.since == first.since
    moto.start()
    await drained(store)
    assert store.health.failure is None


async def test_the_memory_cap_fails_health_and_sends_nothing(
    nursery: trio.Nursery, moto: MotoS3
) -> None:
    store = make(moto, memory_bytes=10)
    await nursery.start(store.run)
    with pytest.raises(StoreFull):
        store.put("live/a/s-0.ts", b"x" * 11, fresh=True)
    failure = store.health.failure
    assert failure is not None and "memory store full" in failure.reason
    assert len(store.queue) == 0


def metric(metrics: Metrics, name: str) -> float:
    text = prometheus_client.generate_latest(metrics.registry).decode()
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                total += sample.value
    return total


async def test_drain_returns_when_a_delete_cancels_the_last_waiting_upload(
    nursery: trio.Nursery, moto: MotoS3
) -> None:
    store = make(moto)
    await nursery.start(store.run)
    moto.stop()
    store.put("live/a/s-0.ts", b"x", fresh=True)
    with trio.fail_after(DEADLINE):  # the first attempt failed: it waits for its retry
        while not any(op.attempts for op in store.queue):
            await trio.sleep(0.01)
    store.delete("live/a/s-0.ts")
    await drained(store)
    assert len(store.queue) == 0
