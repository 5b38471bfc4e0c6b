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
