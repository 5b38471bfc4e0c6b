"""Errors of the gateway layer that several of its modules raise."""

from __future__ import annotations


class ConfigError(Exception):
    """A setting is unknown or invalid; the message names the key and where it came from."""
