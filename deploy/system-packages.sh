#!/usr/bin/env bash
# Debian packages the test suite drives as real clients: FFmpeg 5.1 (second RTMP/HLS client),
# Chromium (player page test), rtmpdump and GStreamer (RTMP players, a third publisher);
# systemd-analyze checks deploy/gateway.service; nginx runs deploy/nginx/gateway-cache.conf in front of
# the gateway (tests/e2e/test_front.py, tests/deploy/test_nginx.py); wrk hammers playlists
# (tests/bench/test_bench_smoke_front.py, bench viewers).
# Installs only what is missing.
set -euo pipefail
need=()
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
command -v ffprobe >/dev/null 2>&1 || need+=(ffmpeg)
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v rtmpdump >/dev/null 2>&1 || need+=(rtmpdump)
# GStreamer: rtmp2src (plugins-bad) plays, rtmp2sink + x264enc (ugly) + avenc_aac (libav) publish.
command -v gst-launch-1.0 >/dev/null 2>&1 || need+=(gstreamer1.0-tools)
gst-inspect-1.0 rtmp2src >/dev/null 2>&1 || need+=(gstreamer1.0-plugins-bad)
gst-inspect-1.0 x264enc >/dev/null 2>&1 || need+=(gstreamer1.0-plugins-ugly)
gst-inspect-1.0 avenc_aac >/dev/null 2>&1 || need+=(gstreamer1.0-libav)
gst-inspect-1.0 flvmux >/dev/null 2>&1 || need+=(gstreamer1.0-plugins-good)
gst-inspect-1.0 audiotestsrc >/dev/null 2>&1 || need+=(gstreamer1.0-plugins-base)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
[ -x /usr/sbin/nginx ] || need+=(nginx)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
[ ${#need[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing system packages: ${need[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
