"""JSON log lines carry the facts passed with ``extra=`` as fields (gateway.logs)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from gateway.logs import JsonFormatter


def record(**extra: object) -> logging.LogRecord:
    logger = logging.getLogger("gateway.rtmp")
    return logger.makeRecord(
        "gateway.rtmp", logging.INFO, __file__, 1, "publish stop %s", ("live/a",), None,
        extra=extra,
    )  # fmt: skip


def test_extra_fields_become_json_fields_beside_the_standard_ones() -> None:
    line = JsonFormatter().format(
        record(event="publish_stop", app="live", key="a", duration=12.5, bytes=1000)
    )
    entry = json.loads(line)
    assert entry.pop("time").endswith("+00:00")
    assert entry == {
        "level": "info",
        "logger": "gateway.rtmp",
        "message": "publish stop live/a",
        "event": "publish_stop",
        "app": "live",
        "key": "a",
        "duration": 12.5,
        "bytes": 1000,
    }


def test_a_line_without_extras_has_only_the_standard_fields() -> None:
    entry = json.loads(JsonFormatter().format(record()))
    assert set(entry) == {"time", "level", "logger", "message"}


def test_a_field_json_cannot_hold_is_written_as_text_and_exceptions_are_kept() -> None:
    try:
        raise OSError(28, "No space left on device")
    except OSError as exc:
        rec = record(event="segment_failed", cause=exc, path=Path("/srv/hls"))
        rec.exc_info = (type(exc), exc, exc.__traceback__)
    entry = json.loads(JsonFormatter().format(rec))
    assert entry["cause"] == "[Errno 28] No space left on device"
    assert entry["path"] == "/srv/hls"
    assert "OSError" in entry["exception"]
