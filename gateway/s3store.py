"""The S3-compatible segment store: a memory copy served by this process, uploaded to a bucket.

Every put lands in a :class:`MemoryStore` at once (the gateway's own HTTP serves playlists,
and segments to whoever still asks the origin, from there) and is queued for the bucket in the
order the segmenter made it; :class:`segmenter.s3.UploadQueue` decides what may go up when (a
segment before any playlist naming it, expired objects skipped, retries). One trio task,
:meth:`S3Store.run`, owned by the gateway's root nursery, carries the operations out.

Why httpx and botocore's signer rather than boto3 in worker threads: httpx.AsyncClient runs
on trio (through anyio) and is the gateway's HTTP client already, so an upload costs no thread
while it waits on the network, timeouts are trio's, and a connection pool is shared by every
upload; boto3 would hold one worker thread per request in flight for the whole round trip.
botocore still resolves credentials and region (its standard chain: environment, shared files,
container and instance metadata) and signs (SigV4), so nothing of AWS's protocol is ours. The
signature hashes the body (SHA-256, ~1 ms per 600 kB segment): that runs in a worker thread,
where hashlib releases the GIL, so the event loop never waits for it.

A full queue (``s3_queue_bytes``) pauses the publishers (gateway.backpressure), as a slow disk
does with ``hls_dir``: nothing already segmented is dropped, the encoders meet TCP
back-pressure. A bucket that does not answer makes /healthz fail (StoreHealth) until a segment
goes up again.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import botocore.session
import httpx
import trio
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import BotoCoreError

from gateway.metrics import Metrics
from segmenter.s3 import PLAYLIST, SEGMENT, Operation, S3Location, UploadQueue, backoff_delay
from segmenter.store import Data, MemoryStore, StoreFull, StoreHealth, joined, validate_name

log = logging.getLogger("gateway.store")

DEFAULT_REGION = "us-east-1"  # botocore's own fallback for S3 when no region is configured
# Worker threads that sign (hash) request bodies at once: hashing is quick, this only bounds
# the threads an upload burst (every stream cutting on the same keyframe) can take.
SIGNING_THREADS = 4


class S3Error(OSError):
    """A request the bucket did not carry out, or no credentials to sign with; the message says
    why (status and S3 code, or the network error). An OSError: at start, the command line
    reports it as it reports a port in use."""


@dataclass(frozen=True)
class S3Config:
    location: S3Location
    endpoint_url: str  # "" = AWS S3 in the region
    request_timeout: float
    max_in_flight: int
    max_pending_bytes: int
    retry_base_delay: float
    retry_max_delay: float


def resolve_credentials() -> tuple[Credentials, str]:
    """botocore's credential chain and configured region (blocking: files, maybe instance
    metadata; call it in a thread). Raises S3Error when no credentials are found."""
    session = botocore.session.get_session()
    credentials = session.get_credentials()
    if credentials is None:
        raise S3Error(
            "no AWS credentials found (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
            "AWS_PROFILE, ~/.aws/credentials, or a container/instance role)"
        )
    region = session.get_config_variable("region") or DEFAULT_REGION
    return credentials, str(region)


class S3Client:
    """PUT and DELETE of objects, signed with SigV4, over a shared httpx.AsyncClient."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        location: S3Location,
        endpoint_url: str,
        credentials: Credentials,
        region: str,
    ) -> None:
        self._http = http
        self._location = location
        self._credentials = credentials
        self._region = region
        self._signing = trio.CapacityLimiter(SIGNING_THREADS)
        bucket = location.bucket
        if endpoint_url:
            # MinIO, moto, Ceph...: path-style addressing works everywhere.
            self._base = f"{endpoint_url.rstrip('/')}/{bucket}"
        elif "." in bucket:  # a dotted name breaks the *.s3 certificate: path-style
            self._base = f"https://s3.{region}.amazonaws.com/{bucket}"
        else:
            self._base = f"https://{bucket}.s3.{region}.amazonaws.com"

    def url(self, name: str) -> str:
        return f"{self._base}/{self._location.key(name)}"

    async def put(self, name: str, data: Data, headers: dict[str, str]) -> None:
        await self._send("PUT", name, data, headers)

    async def delete(self, name: str) -> None:
        await self._send("DELETE", name, None, {})

    async def _send(
        self, method: str, name: str, data: Data | None, headers: dict[str, str]
    ) -> None:
        url = self.url(name)
        try:
            body, signed = await trio.to_thread.run_sync(
                self._sign, method, url, data, headers, limiter=self._signing
            )
            response = await self._http.request(method, url, content=body, headers=signed)
        except (httpx.HTTPError, OSError, BotoCoreError) as exc:
            raise S3Error(f"{type(exc).__name__}: {exc or 'no answer'}") from None
        if response.status_code >= 300 and not (method == "DELETE" and response.status_code == 404):
            raise S3Error(f"HTTP {response.status_code} {_s3_code(response.text)}".rstrip())

    def _sign(
        self, method: str, url: str, data: Data | None, headers: dict[str, str]
    ) -> tuple[bytes, dict[str, str]]:
        """In a worker thread: join the body, refresh credentials if they expire (may do I/O),
        hash and sign."""
        body = joined(data) if data is not None else b""
        frozen = self._credentials.get_frozen_credentials()
        request = AWSRequest(method=method, url=url, data=body, headers=headers)
        S3SigV4Auth(frozen, "s3", self._region).add_auth(request)
        return body, dict(request.headers.items())


def _s3_code(text: str) -> str:
    """The <Code> of an S3 error body (AccessDenied, NoSuchBucket, SlowDown...), if any."""
    start = text.find("<Code>")
    end = text.find("</Code>", start)
    return text[start + 6 : end][:64] if start >= 0 and end > start else ""


class S3Store:
    """A Store (segmenter.store) whose objects also go to an S3-compatible bucket, and a
    WriteQueue (gateway.backpressure) that holds the publishers back while too much waits.

    ``memory`` must not record into ``health`` itself: its every new segment would report a
    success and clear the bucket's failure while the bucket is down. Health is the bucket's
    (a failed request fails it, an uploaded segment clears it) and the memory cap's (recorded
    here)."""

    def __init__(
        self,
        config: S3Config,
        memory: MemoryStore,
        health: StoreHealth,
        *,
        headers: Callable[[str], dict[str, str]],
        metrics: Metrics | None = None,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.config = config
        self.memory = memory
        self.health = health
        self._headers = headers  # Content-Type and Cache-Control of a store name
        self._metrics: Metrics | None = None
        self._rng = rng
        self.queue = UploadQueue()
        self._wakeup = trio.Event()  # something was queued or finished: look at the queue
        self._empty = trio.Event()  # set while nothing waits
        self._empty.set()
        self._drained: list[Callable[[], None]] = []  # when_writable callbacks
        self.client: S3Client | None = None
        # Called with the store name of each segment or init segment once it is in the bucket
        # (the playlists then point there, with hls_public_base_url).
        self.on_uploaded: Callable[[str], None] | None = None
        if metrics is not None:
            self.observe_with(metrics)

    def observe_with(self, metrics: Metrics) -> None:
        """Count requests, failures, latency and the queue in ``metrics`` (/metrics)."""
        self._metrics = metrics
        metrics.s3_queue_items.set_function(lambda: len(self.queue))
        metrics.s3_queue_bytes.set_function(lambda: self.queue.pending_bytes)
        metrics.s3_in_flight.set_function(lambda: self.queue.running)

    # --- Store ---------------------------------------------------------------------------------
    def put(self, name: str, data: Data, *, fresh: bool = False) -> None:
        validate_name(name)
        try:
            self.memory.put(name, data, fresh=fresh)
        except StoreFull as exc:  # the memory cap: this object is lost, nothing is sent
            self.health.failed(f"store: {exc}")
            raise
        self.queue.put(name, data)
        self._changed()

    def delete(self, name: str) -> None:
        validate_name(name)
        self.memory.delete(name)
        skipped = self.queue.skipped
        self.queue.delete(name)
        if self.queue.skipped > skipped and self._metrics is not None:
            self._metrics.s3_skipped.inc()  # expired before it went up: never sent
        self._changed()  # a delete queued, or a cancelled upload that may leave it empty
        self._check_writable()  # a cancelled upload frees its bytes

    def get(self, name: str) -> bytes | None:
        return self.memory.get(name)

    def uploaded(self, name: str) -> bool:
        """The bucket holds ``name`` (uploaded by this process and not deleted since)."""
        return self.queue.stored(name)

    def names(self, prefix: str = "") -> list[str]:
        return self.memory.names(prefix)

    @property
    def total_bytes(self) -> int:
        return self.memory.total_bytes

    # --- WriteQueue ----------------------------------------------------------------------------
    @property
    def pending_bytes(self) -> int:
        return self.queue.pending_bytes

    @property
    def pending_items(self) -> int:
        return len(self.queue)

    @property
    def max_pending_bytes(self) -> int:
        return self.config.max_pending_bytes

    @property
    def congested(self) -> bool:
        return self.queue.pending_bytes >= self.config.max_pending_bytes

    def when_writable(self, callback: Callable[[], None]) -> bool:
        if not self.congested:
            return False
        self._drained.append(callback)
        return True

    def _check_writable(self) -> None:
        if self._drained and not self.congested:
            callbacks, self._drained = self._drained, []
            for callback in callbacks:
                callback()

    def _changed(self) -> None:
        self._wakeup.set()
        if len(self.queue):
            if self._empty.is_set():
                self._empty = trio.Event()
        else:
            self._empty.set()

    # --- the uploader --------------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Resolve credentials, then carry out the queue until cancelled (the gateway's root
        nursery owns this task; its shutdown calls :meth:`drain` first)."""
        credentials, region = await trio.to_thread.run_sync(resolve_credentials)
        timeout = httpx.Timeout(self.config.request_timeout)
        limits = httpx.Limits(
            max_connections=self.config.max_in_flight,
            max_keepalive_connections=self.config.max_in_flight,
        )
        async with httpx.AsyncClient(timeout=timeout, limits=limits) as http:
            self.client = S3Client(
                http, self.config.location, self.config.endpoint_url, credentials, region
            )
            log.info(
                "store: S3 bucket %s (prefix %r, region %s, endpoint %s)",
                self.config.location.bucket,
                self.config.location.prefix,
                region,
                self.config.endpoint_url or "AWS",
            )
            async with trio.open_nursery() as uploads:
                task_status.started()
                while True:
                    self._wakeup = trio.Event()
                    for op in self.queue.ready(trio.current_time(), self.config.max_in_flight):
                        uploads.start_soon(self._carry_out, self.client, op)
                    retry = self.queue.next_retry()
                    with trio.move_on_at(retry if retry is not None else math.inf):
                        await self._wakeup.wait()

    async def drain(self) -> None:
        """Return once nothing waits for the bucket (the caller sets the deadline)."""
        while len(self.queue):
            await self._empty.wait()

    async def _carry_out(self, client: S3Client, op: Operation) -> None:
        started = trio.current_time()
        method = "DELETE" if op.is_delete else "PUT"
        try:
            if op.data is None:
                await client.delete(op.name)
            else:
                await client.put(op.name, op.data, self._headers(op.name))
        except S3Error as exc:
            retry_in = backoff_delay(
                op.attempts + 1,
                self.config.retry_base_delay,
                self.config.retry_max_delay,
                self._rng,
            )
            self.queue.failed(op, trio.current_time() + retry_in)
            reason = f"store: S3 {method} {op.name} failed: {exc}"
            log.debug("%s (retry in %.2f s)", reason, retry_in)
            self.health.failed(reason)
            self._observe(method, op, started, ok=False)
        else:
            self.queue.done(op)
            if op.kind == SEGMENT and not op.is_delete:
                self.health.succeeded()
            self._observe(method, op, started, ok=True)
            if op.kind != PLAYLIST and not op.is_delete and self.on_uploaded is not None:
                try:
                    self.on_uploaded(op.name)
                except Exception:  # a listener's bug must not stop the uploads
                    log.exception("store: after uploading %s", op.name)
        finally:
            self._changed()
            self._check_writable()

    def _observe(self, method: str, op: Operation, started: float, *, ok: bool) -> None:
        metrics = self._metrics
        if metrics is None:
            return
        labels: dict[str, Any] = {"method": method, "kind": op.kind}
        metrics.s3_request_seconds.labels(method).observe(trio.current_time() - started)
        if ok:
            metrics.s3_requests.labels(**labels).inc()
            if not op.is_delete:
                metrics.s3_bytes_uploaded.inc(op.size)
        else:
            metrics.s3_failures.labels(**labels).inc()
