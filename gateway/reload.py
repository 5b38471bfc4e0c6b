"""What a configuration reload (SIGHUP) may change, decided without I/O.

A reload reads the same sources as the start (the TOML file, ``GATEWAY_*`` environment and the
original command-line flags) into a new :class:`Settings`; a file that does not load is refused
before anything here runs. :func:`plan_reload` then keeps the running value of every setting
that only a restart can change (a listening port, the store, the TLS certificate...), and names
what changed either way, so the gateway can apply the rest and log both lists.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TypeVar

from gateway.config import Settings

# Settings bound at start: sockets, the store, thread pools, TLS contexts, the web app's
# configuration and secrets whose change would void what was signed with them.
RESTART_ONLY: frozenset[str] = frozenset(
    {
        "host",
        "rtmp_port",
        "rtmps_port",
        "http_port",
        "log_format",
        "tls_cert",
        "tls_key",
        "tls_ca_file",
        "rtmp_read_interval",
        "auth_jwks",
        "auth_jwks_refresh",
        "auth_hook_concurrency",
        "playback_secret",
        "hls_dir",
        "hls_memory_max_bytes",
        "hls_write_queue_bytes",
        "hls_s3_url",
        "s3_endpoint_url",
        "hls_public_base_url",
        "s3_queue_bytes",
        "s3_max_in_flight",
        "s3_request_timeout",
        "s3_retry_base_delay",
        "s3_retry_max_delay",
        "cors_origins",
        "http_read_timeout",
        "http_send_timeout",
        "http_keep_alive_timeout",
        "http_max_requests_per_ip",
        "http_backlog",
        "shutdown_timeout",
        # Worker processes are laid out at start (gateway.supervisor).
        "workers",
        "worker_restart_delay",
        "worker_link_bytes",
        "worker_heartbeat_timeout",
        "worker_request_timeout",
    }
)

# Settings a reload applies (gateway.app.Gateway.reconfigure): RTMP limits to connections
# accepted afterwards, HLS settings to streams started afterwards, access settings to the next
# request, relays by entry. A setting in neither set is kept until a restart, as the safe side.
RELOADABLE: frozenset[str] = frozenset(
    {
        "log_level",
        "max_connections",
        "max_connections_per_ip",
        "setup_timeout",
        "idle_timeout",
        "send_timeout",
        "rtmp_publish_lowat",
        "publish_takeover_after",
        "max_message_size",
        "track_headers_bytes",
        "play_wait_timeout",
        "gop_cache_bytes",
        "rtmp_play_write_interval",
        "player_queue",
        "player_max_lag",
        "reconnect_request_wait",
        "auth_hook_url",
        "auth_hook_timeout",
        "auth_cache_seconds",
        "auth_jwt_secret",
        "auth_max_token_bytes",
        "read_auth",
        "read_token_ttl",
        "api_token",
        "hls_target_duration",
        "hls_max_segment_duration",
        "hls_formats",
        "hls_part_duration",
        "hls_window",
        "hls_end_grace",
        "hls_retention",
        "hls_max_renditions",
        "transcode",
        "transcode_max_rungs",
        "transcode_queue",
        "transcode_preset",
        "hls_viewer_window",
        "hls_write_stall_warn",
        "hls_write_stall_timeout",
        "pull",
        "push",
        "metrics_per_stream",
    }
)

T = TypeVar("T")


@dataclass(frozen=True)
class ReloadPlan:
    settings: Settings  # what to run with: the new values, restart-only ones kept as they were
    applied: tuple[str, ...]  # settings whose new value takes effect now
    needs_restart: tuple[str, ...]  # settings changed in the sources, kept until a restart


def plan_reload(running: Settings, loaded: Settings) -> ReloadPlan:
    """Split the differences between the running and the freshly loaded settings."""
    changed = [
        f.name for f in Settings.fields() if getattr(running, f.name) != getattr(loaded, f.name)
    ]
    restart = tuple(name for name in changed if name not in RELOADABLE)
    applied = tuple(name for name in changed if name in RELOADABLE)
    kept = {name: getattr(running, name) for name in restart}
    return ReloadPlan(dataclasses.replace(loaded, **kept), applied, restart)


def split_changes(running: list[T], wanted: list[T]) -> tuple[list[T], list[T]]:
    """(to stop, to start) to go from ``running`` to ``wanted``; an item in both keeps running."""
    return [r for r in running if r not in wanted], [w for w in wanted if w not in running]
