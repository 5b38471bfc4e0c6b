"""deploy/nginx/gateway-cache.conf run for real: rendered into a directory of its own with free
ports, under a minimal nginx.conf, for the e2e tests and the ``front`` bench.

The deployed file is used as it is; only three addresses in it are rewritten (the upstream, the
listen port, the cache directory), each of which must appear exactly once, so the tests run what
an operator installs. nginx runs in the foreground (``daemon off``) with its own prefix, pid
file, error log and temp paths, so it needs nothing of /etc/nginx or /var and runs as root or not.
"""

from __future__ import annotations

import os
from pathlib import Path

NGINX = "/usr/sbin/nginx"
DEPLOY_CONF = Path(__file__).resolve().parent.parent / "deploy" / "nginx" / "gateway-cache.conf"
# The addresses of the deployed file that a run replaces.
UPSTREAM = "server 127.0.0.1:8080;"
LISTEN = "listen 80;"
CACHE_DIR = "/var/cache/nginx/gateway"

MAIN = """\
daemon off;
master_process on;
worker_processes {workers};
{user}pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    # With the cache status and where the request went (the blocking location's $uri).
    log_format cache '$request_uri $status $upstream_cache_status $uri $request_time';
    access_log {access_log};
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    include {dir}/gateway-cache.conf;
}}
"""


def nginx_exe() -> str:
    """Debian's nginx; a failure (never a skip) names the install step when it is missing."""
    if not Path(NGINX).is_file():
        raise AssertionError(f"{NGINX} is missing: run deploy/system-packages.sh")
    return NGINX


def render(text: str, *, upstream_port: int, listen_port: int, cache_dir: Path) -> str:
    """The deployed configuration with its three addresses replaced."""
    for needle in (UPSTREAM, LISTEN):
        if (count := text.count(needle)) != 1:
            raise ValueError(f"{DEPLOY_CONF.name}: expected {needle!r} once, found {count}")
    if CACHE_DIR not in text:  # the two zones' directories live under it
        raise ValueError(f"{DEPLOY_CONF.name}: no cache path under {CACHE_DIR}")
    return (
        text.replace(UPSTREAM, f"server 127.0.0.1:{upstream_port};")
        .replace(LISTEN, f"listen 127.0.0.1:{listen_port};")
        .replace(CACHE_DIR, str(cache_dir))
    )


def write_conf(
    directory: Path,
    *,
    upstream_port: int,
    listen_port: int,
    workers: int = 1,
    access_log: bool = False,
) -> Path:
    """nginx.conf in ``directory`` including the rendered gateway-cache.conf; returns its path.
    ``access_log``: log requests to ``directory``/access.log (with the cache status)."""
    for sub in ("tmp", "cache"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    rendered = render(
        DEPLOY_CONF.read_text(),
        upstream_port=upstream_port,
        listen_port=listen_port,
        cache_dir=directory / "cache",
    )
    (directory / "gateway-cache.conf").write_text(rendered)
    conf = directory / "nginx.conf"
    # `user` only makes sense for a root master (workers would otherwise run as nobody, who
    # cannot write the temp dirs made here); nginx ignores it with a warning otherwise.
    user = "user root;\n" if os.geteuid() == 0 else ""
    log = f"{directory}/access.log cache" if access_log else "off"
    conf.write_text(MAIN.format(dir=directory, workers=workers, user=user, access_log=log))
    return conf


def command(directory: Path, conf: Path) -> list[str]:
    # -p: the prefix for relative paths; -e: the error log before the config is read.
    return [nginx_exe(), "-p", str(directory), "-e", str(directory / "error.log"), "-c", str(conf)]


def check_command(directory: Path, conf: Path) -> list[str]:
    """``nginx -t``: parse and check the configuration, then exit."""
    return [*command(directory, conf), "-t"]
