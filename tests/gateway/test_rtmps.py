"""RTMPS pieces without FFmpeg: the listeners serve_rtmp reports, one max_connections for both,
sessions that know their transport, TLS failures named."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

import pytest
import trio
import trustme

from gateway.config import Settings
from gateway.hub import Hub
from gateway.metrics import Metrics
from gateway.server import Listening, Session, serve_rtmp
from gateway.tls import describe_tls_error


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def write_pem(ca: trustme.CA, directory: Path, *hosts: str) -> tuple[str, str]:
    cert = ca.issue_cert(*hosts)
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    return str(cert_file), str(key_file)


def tls_settings(directory: Path, ca: trustme.CA, **more: object) -> Settings:
    cert, key = write_pem(ca, directory, "127.0.0.1")
    values: dict[str, object] = {"host": "127.0.0.1", "rtmp_port": 0, "rtmps_port": 0}
    values.update(tls_cert=cert, tls_key=key, **more)
    return Settings(**values)  # type: ignore[arg-type]


async def wait_active(metrics: Metrics, n: int) -> None:
    with trio.fail_after(10):
        while metrics.connections_active._value.get() != n:
            await trio.sleep(0.01)


async def closed_at_once(port: int) -> None:
    sock = await trio.open_tcp_stream("127.0.0.1", port)
    try:
        with trio.fail_after(10):
            assert await sock.receive_some(10) == b""
    except trio.BrokenResourceError:
        pass  # reset
    finally:
        await sock.aclose()


async def test_both_listeners_are_reported_and_share_max_connections(
    nursery: trio.Nursery, ca: trustme.CA, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = tls_settings(tmp_path, ca, max_connections=2, setup_timeout=1e6)
    metrics = Metrics()
    bound = await nursery.start(serve_rtmp, settings, Hub(), metrics)
    assert [(a.host, a.protocol) for a in bound] == [("127.0.0.1", "rtmp"), ("127.0.0.1", "rtmps")]
    assert all(isinstance(a, Listening) for a in bound) and bound[0].port != bound[1].port
    plain, tls = bound[0][1], bound[1][1]  # callers index (host, port) as before
    held = [await trio.open_tcp_stream("127.0.0.1", p) for p in (plain, tls)]
    await wait_active(metrics, 2)
    with caplog.at_level(logging.WARNING, logger="gateway.rtmp"):
        await closed_at_once(tls)
        await closed_at_once(plain)
    lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert lines[0].startswith("rtmps connection from 127.0.0.1:"), lines
    assert "max_connections (2) reached" in lines[0]
    assert metrics.connections_refused._value.get() == 2
    for sock in held:
        await sock.aclose()


async def test_rtmp_port_minus_one_listens_for_rtmps_only(
    nursery: trio.Nursery, ca: trustme.CA, tmp_path: Path
) -> None:
    settings = tls_settings(tmp_path, ca, rtmp_port=-1)
    bound = await nursery.start(serve_rtmp, settings, Hub(), Metrics())
    assert [a.protocol for a in bound] == ["rtmps"]


async def test_without_tls_only_plain_rtmp_listens(nursery: trio.Nursery) -> None:
    settings = Settings(host="127.0.0.1", rtmp_port=0, rtmps_port=0)
    bound = await nursery.start(serve_rtmp, settings, Hub(), Metrics())
    assert [a.protocol for a in bound] == ["rtmp"]


async def test_an_rtmps_session_reads_on_its_own_and_says_rtmps(
    nursery: trio.Nursery,
    ca: trustme.CA,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The shared reader polls raw sockets: a TLS session must not be given to it."""
    settings = tls_settings(tmp_path, ca, setup_timeout=1e6)
    sessions: list[Session] = []
    original = Session.run

    async def spy(self: Session) -> None:
        sessions.append(self)
        await original(self)

    monkeypatch.setattr(Session, "run", spy)
    bound = await nursery.start(serve_rtmp, settings, Hub(), Metrics())
    client = ssl.create_default_context()
    ca.configure_trust(client)
    with caplog.at_level(logging.INFO, logger="gateway.rtmp"):
        tcp = await trio.open_tcp_stream("127.0.0.1", bound[1].port)
        stream = trio.SSLStream(tcp, client, server_hostname="127.0.0.1")
        with trio.fail_after(10):
            await stream.do_handshake()
            await stream.send_all(b"\x03" + bytes(1536))  # C0 + C1
            assert len(await stream.receive_some(4096)) > 0  # S0 + S1 (+ S2), over TLS
        await stream.aclose()
        with trio.fail_after(10):
            while not any("closed" in r.getMessage() for r in caplog.records):
                await trio.sleep(0.01)
    (session,) = sessions
    assert session.protocol == "rtmps" and session.mux is None
    assert isinstance(session.sock, trio.SSLStream)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == f"rtmps connection #{session.id} from {session.peer}"
    assert lines[-1].startswith(f"rtmps connection #{session.id} from {session.peer} closed")


def test_describe_tls_error_is_none_for_other_failures() -> None:
    assert describe_tls_error(ConnectionResetError(104, "reset")) is None
    wrapped = trio.BrokenResourceError()
    wrapped.__cause__ = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")
    assert describe_tls_error(wrapped) == (
        "TLS error: [SSL: WRONG_VERSION_NUMBER] wrong version number"
    )
