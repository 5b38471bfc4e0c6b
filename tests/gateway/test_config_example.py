"""deploy/gateway.example.toml stays a complete, correct picture of the defaults."""

from __future__ import annotations

import tomllib
from pathlib import Path

from gateway.config import Settings, load_settings

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "gateway.example.toml"


def _keys(data: dict[str, object], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for key, value in data.items():
        if isinstance(value, dict):
            keys |= _keys(value, f"{prefix}{key}_")
        else:
            keys.add(f"{prefix}{key}")
    return keys


def test_example_config_loads_and_equals_the_defaults() -> None:
    loaded = load_settings(config_file=EXAMPLE, env={})
    assert loaded == Settings()


def test_example_config_names_every_setting() -> None:
    named = _keys(tomllib.loads(EXAMPLE.read_text(encoding="utf-8")))
    assert sorted(f.name for f in Settings.fields() if f.name not in named) == []
