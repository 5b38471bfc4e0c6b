"""Settings of RTMPS: rtmps_port, rtmp_port -1 (RTMPS only) and tls_ca_file, from every source."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme

from gateway.cli import build_parser
from gateway.config import ConfigError, Settings, load_settings


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls(ca: trustme.CA, tmp_path: Path) -> dict[str, str]:
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    return {"tls_cert": str(cert_file), "tls_key": str(key_file)}


def test_defaults() -> None:
    settings = load_settings(env={})
    assert (settings.rtmp_port, settings.rtmps_port, settings.tls_ca_file) == (1935, 1936, "")


def test_rtmps_port_from_toml_env_and_flag(tmp_path: Path, tls: dict[str, str]) -> None:
    toml = tmp_path / "gateway.toml"
    toml.write_text("rtmps_port = 2001\n")
    assert load_settings(config_file=toml, env={}, overrides=tls).rtmps_port == 2001
    env = {"GATEWAY_RTMPS_PORT": "2002"}
    assert load_settings(config_file=toml, env=env, overrides=tls).rtmps_port == 2002
    flags = vars(build_parser().parse_args(["run", "--rtmps-port", "2003"]))
    overrides = {f.name: flags[f.name] for f in Settings.fields()} | tls
    assert load_settings(config_file=toml, env=env, overrides=overrides).rtmps_port == 2003
    assert load_settings(env={}, overrides={**tls, "rtmps_port": 0}).rtmps_port == 0  # any port


def test_help_lists_the_new_settings(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--help"])
    text = capsys.readouterr().out
    assert "--rtmps-port" in text and "--tls-ca-file" in text


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("rtmps_port", -1, "rtmps_port (from --rtmps-port): -1 is below the minimum 0"),
        ("rtmps_port", 65536, "rtmps_port (from --rtmps-port): 65536 is above the maximum 65535"),
        ("rtmp_port", -2, "rtmp_port (from --rtmp-port): -2 is below the minimum -1"),
        ("rtmps_port", "tls", "rtmps_port (from --rtmps-port): expected int, got 'tls'"),
    ],
)
def test_port_bounds(tls: dict[str, str], key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env={}, overrides={**tls, key: value})
    assert str(caught.value) == message


def test_rtmp_port_minus_one_needs_tls(tls: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env={"GATEWAY_RTMP_PORT": "-1"})
    assert str(caught.value) == (
        "rtmp_port: -1 (no plain RTMP) needs tls_cert and tls_key for RTMPS"
    )
    settings = load_settings(env={"GATEWAY_RTMP_PORT": "-1"}, overrides=tls)
    assert (settings.rtmp_port, settings.rtmps_port) == (-1, 1936)


def test_rtmp_and_rtmps_need_different_ports(tls: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="rtmps_port: 1935 is rtmp_port too"):
        load_settings(env={}, overrides={**tls, "rtmps_port": 1935})
    # Port 0 on both picks two free ports; without TLS rtmps_port is unused.
    assert load_settings(env={}, overrides={**tls, "rtmp_port": 0, "rtmps_port": 0})
    assert load_settings(env={}, overrides={"rtmps_port": 1935}).rtmps_port == 1935


def test_tls_ca_file_must_load(ca: trustme.CA, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"tls_ca_file: '/nonexistent\.pem' is not a readable"):
        load_settings(env={}, overrides={"tls_ca_file": "/nonexistent.pem"})
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="tls_ca_file: cannot load the certificates"):
        load_settings(env={"GATEWAY_TLS_CA_FILE": str(garbage)})
    good = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(good))
    # No tls_cert needed: the CA file is for outgoing connections.
    assert load_settings(env={"GATEWAY_TLS_CA_FILE": str(good)}).tls_ca_file == str(good)
