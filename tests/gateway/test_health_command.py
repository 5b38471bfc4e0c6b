"""`gateway health`: the container health check asks the port the settings give, as `gateway run`
reads them (file < environment), and fails on anything but a 200 from /healthz."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import trio
import trustme

from gateway import cli
from gateway.app import Gateway
from tests.conftest import start_gateway, test_settings


def _port(gw: Gateway) -> int:
    assert gw.bound is not None
    return int(gw.bound.http_url.rsplit(":", 1)[1].split("/")[0])


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _health(*args: str) -> int:
    # In a thread: the check blocks on its socket while this trio run serves the answer.
    return await trio.to_thread.run_sync(cli.main, ["health", *args])


async def test_healthy_on_the_port_of_the_config_file(
    gateway: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GATEWAY_HTTP_PORT", raising=False)
    config = tmp_path / "gateway.toml"
    config.write_text(f'host = "0.0.0.0"\nhttp_port = {_port(gateway)}\n')
    assert await _health("--config", str(config)) == 0


async def test_environment_wins_over_the_file_as_for_run(
    gateway: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(f"http_port = {_closed_port()}\n")
    monkeypatch.setenv("GATEWAY_HTTP_PORT", str(_port(gateway)))
    assert await _health("--config", str(config)) == 0


async def test_nothing_listening_is_unhealthy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    port = _closed_port()
    monkeypatch.setenv("GATEWAY_HTTP_PORT", str(port))
    assert await _health() == 1
    err = capsys.readouterr().err
    assert f"gateway health: cannot reach http://127.0.0.1:{port}/healthz" in err


async def test_failing_store_is_unhealthy_with_the_reason(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GATEWAY_HTTP_PORT", str(_port(gateway)))
    gateway.health.failed("store: cannot write live/cam/seg-1.ts: [Errno 28] No space left")
    assert await _health() == 1
    err = capsys.readouterr().err
    assert "answered 503" in err and "No space left" in err
    gateway.health.succeeded()
    assert await _health() == 0


async def test_https_when_tls_is_set(
    nursery: trio.Nursery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("gateway.example")  # a name the check does not ask for
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    tls = {"tls_cert": str(cert_file), "tls_key": str(key_file)}
    gw, stop = await start_gateway(nursery, test_settings(**tls))
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'http_port = {_port(gw)}\ntls_cert = "{cert_file}"\ntls_key = "{key_file}"\n'
    )
    monkeypatch.delenv("GATEWAY_HTTP_PORT", raising=False)
    assert await _health("--config", str(config)) == 0
    stop.set()


async def test_bad_configuration_is_unhealthy_not_reserved_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await _health("--config", str(tmp_path / "missing.toml")) == 1
    assert "gateway health: configuration error: config file" in capsys.readouterr().err
