#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# soak.sh - run xpra-proxy under churn: a steady stream of logins for a
# while, then check what is left behind (issue 19).
# As root, loopback only. Builds the binaries (scripts/build-bin.sh), starts
# REAL real xpra 3.1.3 servers as the test user for a sample of the logins,
# and runs bench/soak (the load, light fake servers for volume, and the
# table every 30 s: connections, success rate, supervisor RSS/threads/fds,
# live relays, pre-auth processes, stale control sockets; then a verdict).
#
# Usage: bash bench/soak.sh [DURATION] [RATE] [SOURCES]   (default 10m 4 49)
#   REAL=N          real xpra servers (default 2; 0 for none)
#   REAL_SHARE=F    share of logins to them (default 0.1)
#   LONG_SHARE=F    share held for LONG_MIN..LONG_MAX (default 0.3, 5s..30s)
#   BAD_SHARE=F     share with a wrong password (default 0.1; from sources of
#                   their own, 127.0.3.x, so their penalties spare the others)
#   IDLE=D          idle time after the load before the last figures (default
#                   15s; lines every 30 s meanwhile)
#   PORT=N          the proxy's port (default 14590); DISPLAY_BASE=N (default 620)
#   PROXY_ARGS=".." more xpra-proxy arguments
#   BIN=DIR         use binaries already built there
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH
DURATION=${1:-10m} RATE=${2:-4} SOURCES=${3:-49}
REAL=${REAL:-2} USER_NAME=${SOAK_USER:-xpra-proxy-test} BASE=${DISPLAY_BASE:-620}
[ "$(id -u)" = 0 ] || { echo "soak.sh runs as root" >&2; exit 1; }
work=$(mktemp -d /tmp/soak.XXXXXX)
chmod 755 "$work"
BIN=${BIN:-$work/bin}
[ -x "$BIN/xpra-proxy" ] || scripts/build-bin.sh "$BIN" >/dev/null
chmod -R a+rX "$BIN"
go build -o "$work/soak" ./bench/soak
id xpra-proxy >/dev/null 2>&1 || useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin xpra-proxy
id "$USER_NAME" >/dev/null 2>&1 || useradd -m -s /bin/bash "$USER_NAME"
uid=$(id -u "$USER_NAME") gid=$(id -g "$USER_NAME") home=$(getent passwd "$USER_NAME" | cut -d: -f6)
install -d -o "$uid" -g "$gid" -m 700 "/run/user/$uid"
mkdir -p "$work/xdg/xpra" && echo "start = " >"$work/xdg/xpra/xpra.conf" && chmod -R a+rX "$work/xdg"

xpra_as() {
	runuser -u "$USER_NAME" -- env -i PATH=/usr/bin:/bin HOME="$home" USER="$USER_NAME" LOGNAME="$USER_NAME" \
		LANG=C.UTF-8 XDG_RUNTIME_DIR="/run/user/$uid" XDG_CONFIG_DIRS="/etc/xdg:$work/xdg" xpra "$@"
}
displays=()
stop_all() {
	for d in "${displays[@]}"; do xpra_as stop "$d" >/dev/null 2>&1 || true; done
	rm -rf "$work"
}
trap stop_all EXIT
for i in $(seq 0 $((REAL - 1))); do
	d=":$((BASE + i))"
	xpra_as start "$d" --daemon=yes --mdns=no --pulseaudio=no --notifications=no --systemd-run=no --dbus-launch= \
		--dbus-proxy=no --dbus-control=no --printing=no --webcam=no --opengl=no --speaker=off --microphone=off \
		--file-transfer=no --html=off --start= --session-name="soak$i" >"$work/xpra$i.log" 2>&1
	displays+=("$d")
done
for d in "${displays[@]}"; do
	for _ in $(seq 1 100); do xpra_as version "$d" >/dev/null 2>&1 && break; sleep 0.5; done
done
real=$(IFS=,; echo "${displays[*]}")
echo "commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ':!bench/soak.sh' || echo +dirty), $(nproc) cores, $(uname -r), real servers: ${real:-none} ($(xpra --version 2>/dev/null))"
"$work/soak" --bin="$BIN" --user="$USER_NAME" --real="$real" --duration="$DURATION" --rate="$RATE" --sources="$SOURCES" \
	--real-share="${REAL_SHARE:-0.1}" --long-share="${LONG_SHARE:-0.3}" --bad-share="${BAD_SHARE:-0.1}" \
	--long-min="${LONG_MIN:-5s}" --long-max="${LONG_MAX:-30s}" --port="${PORT:-14590}" --idle="${IDLE:-15s}" \
	--proxy-log="${PROXY_LOG:-/tmp/soak-proxy.log}" --proxy-args="${PROXY_ARGS:-}"
