"""Configuration mistakes are named with the key, where it came from and, for a near miss of a
setting's name, the setting meant."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigError, load_settings


def test_a_misspelt_key_in_toml_gets_a_suggestion(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text("[hls]\nwindwo = 5\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(config_file=config, env={})
    assert str(caught.value) == (
        f"hls_windwo (from {config}): unknown setting (did you mean 'hls_window'?)"
    )


def test_a_misspelt_environment_variable_gets_a_suggestion() -> None:
    with pytest.raises(ConfigError, match=r"did you mean 'read_auth'\?"):
        load_settings(env={"GATEWAY_READ_AUHT": "true"})


def test_a_key_like_no_setting_gets_no_guess() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env={"GATEWAY_COLOUR": "blue"})
    assert "unknown setting" in str(caught.value) and "did you mean" not in str(caught.value)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GATEWAY_HLS_S3_URL": "https://bucket/x"}, "hls_s3_url: must start with s3://"),
        ({"GATEWAY_HLS_S3_URL": "s3://B"}, "hls_s3_url: invalid bucket name 'B'"),
        (
            {"GATEWAY_HLS_S3_URL": "s3://media", "GATEWAY_HLS_DIR": "{tmp}"},
            "hls_s3_url: not with hls_dir",
        ),
        ({"GATEWAY_S3_ENDPOINT_URL": "http://127.0.0.1:9000"}, "s3_endpoint_url: needs hls_s3_url"),
        ({"GATEWAY_HLS_PUBLIC_BASE_URL": "https://cdn.example"}, "hls_public_base_url: needs"),
        (
            {"GATEWAY_HLS_S3_URL": "s3://media", "GATEWAY_S3_ENDPOINT_URL": "minio:9000"},
            "s3_endpoint_url: must be an http:// or https:// URL, got 'minio:9000'",
        ),
        (
            {"GATEWAY_HLS_S3_URL": "s3://media", "GATEWAY_HLS_PUBLIC_BASE_URL": "https://c/?a=1"},
            "hls_public_base_url: no query, fragment",
        ),
        (
            {
                "GATEWAY_HLS_S3_URL": "s3://media",
                "GATEWAY_S3_RETRY_BASE_DELAY": "5",
                "GATEWAY_S3_RETRY_MAX_DELAY": "1",
            },
            "s3_retry_base_delay: must be <= s3_retry_max_delay",
        ),
        ({"GATEWAY_S3_QUEUE_BYTES": "1000"}, "s3_queue_bytes (from environment"),
    ],
)
def test_s3_settings_are_checked(tmp_path: Path, env: dict[str, str], message: str) -> None:
    env = {k: v.replace("{tmp}", str(tmp_path)) for k, v in env.items()}
    with pytest.raises(ConfigError) as caught:
        load_settings(env=env)
    assert message in str(caught.value)


def test_s3_settings_that_fit_together_load() -> None:
    settings = load_settings(
        env={
            "GATEWAY_HLS_S3_URL": "s3://media/hls/",
            "GATEWAY_S3_ENDPOINT_URL": "http://127.0.0.1:9000",
            "GATEWAY_HLS_PUBLIC_BASE_URL": "https://cdn.example.com/hls",
        }
    )
    assert settings.hls_s3_url == "s3://media/hls/"
