"""A real S3 API on loopback for tests and the bench: moto's server (``moto[server]`` from PyPI).

:class:`MotoS3` serves moto's S3 in a thread of this process on a free port, as moto's own
``ThreadedMotoServer`` does, with one addition: a WSGI layer that writes down every request's
start and end in order (method, key, status; a playlist's body too), so a test can check the
order in which the bucket saw objects. ``stop()`` closes the listening socket (a real outage:
connections are refused) and ``start()`` serves again on the same port with the same buckets
(moto's state lives in the process, not in the server).

Nothing skips: without moto installed the import fails and so does the test.
"""

from __future__ import annotations

import io
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import BaseWSGIServer, make_server

from bench.s3 import public_read_policy

REGION = "us-east-1"
# Credentials moto accepts (it checks none); set in the environment, where botocore's chain finds
# them, by :func:`aws_environment`.
ACCESS_KEY = "testing-access-key"
SECRET_KEY = "testing-secret-key"


def aws_environment() -> dict[str, str]:
    """The environment botocore's chain should see in tests: the keys above, a region, and no
    shared files or instance metadata to stumble on."""
    return {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }


@dataclass(frozen=True)
class Event:
    """One request seen by the server: ``phase`` "start" or "end" (then ``status``)."""

    at: float  # time.monotonic()
    phase: str
    method: str
    bucket: str
    key: str
    status: int = 0
    body: bytes = b""  # a PUT playlist's text (end events only)


class Recorder:
    """WSGI middleware: notes each request to a bucket object before and after moto answers."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.events: list[Event] = []
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        method = environ["REQUEST_METHOD"]
        bucket, _, key = environ.get("PATH_INFO", "/").lstrip("/").partition("/")
        body = b""
        if method == "PUT" and key.endswith(".m3u8"):
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length)
            environ["wsgi.input"] = io.BytesIO(body)
        self._note(Event(time.monotonic(), "start", method, bucket, key, body=body))
        status = [0]

        def starting(code: str, headers: Any, exc_info: Any = None) -> Any:
            status[0] = int(code.split()[0])
            return start_response(code, headers, exc_info)

        result = list(self.app(environ, starting))
        self._note(Event(time.monotonic(), "end", method, bucket, key, status[0], body))
        return result

    def _note(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)

    def snapshot(self) -> list[Event]:
        with self._lock:
            return list(self.events)


class QuietHandler(MotoRequestHandler):
    """No access log line per request on stderr (the recorder has them all)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class MotoS3:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.recorder = Recorder(DomainDispatcherApplication(create_backend_app))
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        assert self._server is None, "already serving"
        server = make_server(
            "127.0.0.1", self.port, self.recorder, threaded=True, request_handler=QuietHandler
        )
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="moto-s3", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop answering: the port is closed (clients get 'connection refused')."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(10)

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def create_bucket(self, bucket: str, *, public_read: bool = False) -> None:
        s3 = self.client()
        s3.create_bucket(Bucket=bucket)
        if public_read:
            # What a CDN origin or anonymous players need on real S3 too.
            s3.put_bucket_policy(Bucket=bucket, Policy=public_read_policy(bucket))

    def keys(self, bucket: str, prefix: str = "") -> set[str]:
        s3 = self.client()
        keys: set[str] = set()
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys |= {item["Key"] for item in page.get("Contents", [])}
        return keys

    def get(self, bucket: str, key: str) -> Any:
        return self.client().get_object(Bucket=bucket, Key=key)


def serving(port: int | None = None) -> Iterator[MotoS3]:
    """A started server, stopped afterwards (a fixture's body)."""
    server = MotoS3(port)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def playlist_uris(text: str) -> list[str]:
    """Every URI a media playlist names: segment lines and URI="..." attributes."""
    uris = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if not line.startswith("#"):
            uris.append(line)
        elif 'URI="' in line:
            uris += [part.split('"', 1)[0] for part in line.split('URI="')[1:]]
    return uris


def out_of_order(events: list[Event], bucket: str, base: str = "") -> list[str]:
    """Problems with the order the bucket saw: a playlist PUT that started before an object it
    names (segment, init segment, playlist) had been PUT and answered 2xx, or after it was
    deleted. ``base``: the public URL of the bucket's root, stripped from absolute URIs.
    Empty when all is well."""
    present: set[str] = set()
    problems = []
    for event in events:
        if event.bucket != bucket:
            continue
        if event.phase == "start":
            if event.method == "PUT" and event.key.endswith(".m3u8"):
                directory = event.key.rpartition("/")[0]
                for uri in playlist_uris(event.body.decode()):
                    absolute = uri.startswith(("http://", "https://"))
                    if absolute and not (base and uri.startswith(base)):
                        problems.append(f"{event.key} names {uri}, outside {base!r}")
                        continue
                    key = uri[len(base) :].lstrip("/") if absolute else f"{directory}/{uri}"
                    if key not in present:
                        problems.append(f"{event.key} named {key} before it was in the bucket")
            continue
        if event.status >= 300:
            continue
        if event.method == "PUT":
            present.add(event.key)
        elif event.method == "DELETE":
            present.discard(event.key)
    return problems
