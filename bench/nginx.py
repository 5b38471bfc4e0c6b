"""nginx with the RTMP module as the reference target: installed from Debian, configured like ours.

The configuration matches ``gateway run`` defaults: 2 s fragments cut at keyframes, a 12 s playlist
(6 x 2 s), HLS files under a temp dir served by nginx's own http server, loopback only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

NGINX = "/usr/sbin/nginx"
RTMP_MODULE = "/usr/lib/nginx/modules/ngx_rtmp_module.so"
PACKAGES = ("nginx", "libnginx-mod-rtmp")
# Seconds apt-get may take (update + install of two small packages).
APT_TIMEOUT = 600.0
# nginx-rtmp serves a stream only from the worker that received the publish; one worker keeps
# the comparison one core against one core (ours is a single trio thread).
DEFAULT_WORKERS = 1

CONF = """\
daemon off;
master_process on;
worker_processes {workers};
user root;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
load_module {module};
events {{ worker_connections 8192; }}
rtmp {{
    server {{
        listen 127.0.0.1:{rtmp_port};
        chunk_size 4096;
        application live {{
            live on;
            hls on;
            hls_path {dir}/hls/live;
            hls_nested on;
            hls_fragment {fragment}s;
            hls_playlist_length {playlist}s;
{directives}        }}
    }}
}}
http {{
    access_log off;
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    sendfile on;
    types {{
        application/vnd.apple.mpegurl m3u8;
        video/mp2t ts;
    }}
    server {{
        listen 127.0.0.1:{http_port};
        root {dir}/hls;
        location / {{ add_header Cache-Control no-cache; }}
    }}
}}
"""


def ensure_installed() -> None:
    """Install nginx + libnginx-mod-rtmp with apt-get when missing (the bench runs as root)."""
    if Path(NGINX).exists() and Path(RTMP_MODULE).exists():
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise SystemExit(f"nginx-rtmp missing: apt-get install {' '.join(PACKAGES)} (as root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, timeout=APT_TIMEOUT, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-q", *PACKAGES], check=True, timeout=APT_TIMEOUT, env=env
    )


def write_conf(
    directory: Path,
    *,
    rtmp_port: int,
    http_port: int,
    fragment: float = 2.0,
    playlist: float = 12.0,
    workers: int = DEFAULT_WORKERS,
    directives: str = "",
) -> Path:
    """``directives``: more lines for ``application live`` (e.g. on_publish URL;)."""
    for sub in ("hls/live", "tmp"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    conf = directory / "nginx.conf"
    conf.write_text(
        CONF.format(
            dir=directory,
            module=RTMP_MODULE,
            rtmp_port=rtmp_port,
            http_port=http_port,
            fragment=f"{fragment:g}",
            playlist=f"{playlist:g}",
            workers=workers,
            directives="".join(f"            {line}\n" for line in directives.splitlines()),
        )
    )
    return conf


def command(directory: Path, conf: Path) -> list[str]:
    # -e: the error log before the config is read; -p: the prefix for relative paths.
    return [NGINX, "-p", str(directory), "-e", str(directory / "error.log"), "-c", str(conf)]
