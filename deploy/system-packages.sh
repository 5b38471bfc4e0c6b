#!/usr/bin/env bash
# Debian packages the test suite drives as real clients: FFmpeg 5.1 (second RTMP/HLS client),
# Chromium (player page test) and rtmpdump. Installs only what is missing.
set -euo pipefail
need=()
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
command -v ffprobe >/dev/null 2>&1 || need+=(ffmpeg)
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v rtmpdump >/dev/null 2>&1 || need+=(rtmpdump)
[ ${#need[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing system packages: ${need[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
