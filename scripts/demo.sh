#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# demo.sh - something real to see: a real xpra 3.1.3 session for a
# throwaway user, behind our proxy (xpra-proxy on 127.0.0.1:14650, password
# auth with a random password it prints). One port carries xpra, TLS (a
# throwaway self-signed certificate), WebSocket and the HTML5 client. It
# queries the session through the proxy with the real xpra client over tcp,
# ssl and ws, lists the live connections, then prints the URLs and keeps
# running. Ctrl-C (or --once) stops it and removes what it started: the
# session, the proxy, the certificate, key and password.
#   DEMO_BIND=0.0.0.0  listen on every address instead of loopback only
# Interrupted at any point (Ctrl-C, SIGTERM, SIGHUP, an error), it removes
# what it started: no process, session file, key or password stays
# (e2e/TestDemo interrupts it at each stage and checks).
# What it adds to the machine for good (README.md lists it too): the Debian
# packages the demo needs (.ci/install-deps.sh --demo: xpra, Xvfb, xauth,
# x11-apps, openssl, curl, gcc, libc6-dev), a Go toolchain where Go 1.26 is
# missing (scripts/ensure-go.sh: golang-1.23-go from bookworm-backports, its
# apt source, and Go 1.26 in the module cache), the users xpra-demo (with a
# home), xpra-proxy and xpra-proxy-control, the built programs in bin/ and
# the log /tmp/xpra-proxy-demo.log.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH
ONCE=0; [ "${1:-}" = "--once" ] && ONCE=1
DEMO_USER=xpra-demo DISPLAY_NO=140 PORT=14650 BIND=${DEMO_BIND:-127.0.0.1}
PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -dc A-Za-z0-9)

as_user() {
  runuser -u "$DEMO_USER" -- env -i PATH="$PATH" HOME="$home" USER="$DEMO_USER" LOGNAME="$DEMO_USER" \
    LANG=C.UTF-8 XDG_RUNTIME_DIR="/run/user/$uid" XDG_CONFIG_DIRS="/etc/xdg:$overlay" "$@"
}
# stop runs on every exit (the end, an error, Ctrl-C, SIGTERM, SIGHUP),
# set before anything is started or written: no step may skip the next,
# whatever has already gone or was never made.
stop() {
  set +e
  trap - EXIT INT TERM HUP
  # Every background job (the install ticker, the attach, the proxy, the
  # final sleep), by the job table: a signal can come between starting one
  # and noting its pid.
  jobs=$(jobs -p)
  [ -n "$jobs" ] && kill $jobs 2>/dev/null
  if [ -n "${proxy_pid:-}" ]; then wait "$proxy_pid" 2>/dev/null; fi
  if [ -n "${uid:-}" ]; then
    as_user xpra stop ":$DISPLAY_NO" >/dev/null 2>&1
    # A session interrupted while starting does not answer xpra stop yet and
    # comes up later: the demo user is the demo's own, so end all it runs.
    pkill -TERM -u "$DEMO_USER" 2>/dev/null
    for _ in $(seq 50); do pgrep -u "$DEMO_USER" >/dev/null || break; sleep 0.1; done
    pkill -KILL -u "$DEMO_USER" 2>/dev/null
    # What a killed X server and xpra leave: the display's lock and socket,
    # the session's sockets and log.
    lock=/tmp/.X$DISPLAY_NO-lock
    if [ -f "$lock" ] && ! kill -0 "$(tr -dc 0-9 < "$lock")" 2>/dev/null; then rm -f "$lock" "/tmp/.X11-unix/X$DISPLAY_NO"; fi
    rm -rf "/run/user/$uid/xpra"
    [ "${made_rundir:-0}" = 1 ] && rm -rf "/run/user/$uid"
  fi
  rm -rf "${overlay:-}" "${certs:-}"
  echo "demo stopped: session :$DISPLAY_NO, proxy, certificate, key and password removed"
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

echo "installing what the demo needs (Debian packages: xpra, Xvfb, a C compiler, ...;"
echo "on a fresh Debian 12 the first run installs a few hundred packages, which takes"
echo "minutes: a line every 30 s says it is still at it; later runs take seconds)"
t0=$(date +%s)
( trap 'kill $(jobs -p) 2>/dev/null; exit 0' TERM
  while :; do sleep 30 & s=$!; wait $s; echo "  ... still installing ($(( $(date +%s) - t0 )) s)"; done ) &
ticker=$!
rc=0; bash .ci/install-deps.sh --demo || rc=$?
kill "$ticker" 2>/dev/null || true
ticker=
[ $rc = 0 ] || { echo "installing the demo's packages failed (rerun: bash .ci/install-deps.sh --demo)" >&2; exit 1; }
echo "building the programs into bin/ (a minute or two the first time)"
. scripts/ensure-go.sh
mkdir -p bin && chmod 755 bin && bash scripts/build-bin.sh bin
# the unprivileged user of the pre-auth stage, as the package creates it
for u in xpra-proxy xpra-proxy-control; do
  id "$u" >/dev/null 2>&1 || useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$u"
done

id "$DEMO_USER" >/dev/null 2>&1 || useradd -m -s /bin/bash "$DEMO_USER"
uid=$(id -u "$DEMO_USER"); home=$(getent passwd "$DEMO_USER" | cut -d: -f6)
made_rundir=0; [ -d "/run/user/$uid" ] || made_rundir=1
install -d -m 700 -o "$DEMO_USER" -g "$DEMO_USER" "/run/user/$uid"
overlay=$(mktemp -d /tmp/xpra-demo.XXXXXX); chmod 755 "$overlay"; mkdir -p "$overlay/xpra"
printf 'start = \n' > "$overlay/xpra/xpra.conf"   # drop Debian's "start = /etc/X11/Xsession true"

# What an earlier run cut short may have left: its session (a rerun must
# not report success against it), a proxy still on the port.
as_user xpra stop ":$DISPLAY_NO" >/dev/null 2>&1 || true
if ss -Hltn "sport = :$PORT" | grep -q .; then
  echo "port $PORT is in use (an earlier demo still running? ss -ltnp 'sport = :$PORT')" >&2; exit 1
fi

# A display lock left by an X server that was killed (an earlier run cut
# short) would make the new session's Xvfb refuse to start.
lock=/tmp/.X$DISPLAY_NO-lock
if [ -f "$lock" ] && ! kill -0 "$(tr -dc 0-9 < "$lock")" 2>/dev/null; then rm -f "$lock" "/tmp/.X11-unix/X$DISPLAY_NO"; fi
echo "starting a real xpra $(xpra --version 2>/dev/null | awk '{print $2}') session :$DISPLAY_NO for $DEMO_USER (unix socket only)"
as_user xpra start ":$DISPLAY_NO" --daemon=yes --start="xclock -update 1" \
  --mdns=no --pulseaudio=no --notifications=no --systemd-run=no --dbus-launch= --dbus-proxy=no \
  --dbus-control=no --printing=no --webcam=no --opengl=no --speaker=off --microphone=off --file-transfer=no
live=0
for _ in $(seq 120); do
  ls /run/user/$uid/xpra/*-$DISPLAY_NO >/dev/null 2>&1 && runuser -u "$DEMO_USER" -- bin/xpra-probe --timeout 2s version \
    "socket://$(ls /run/user/$uid/xpra/*-$DISPLAY_NO | head -n1)" >/dev/null 2>&1 && live=1 && break; sleep 0.5
done
if [ $live = 0 ]; then
  echo "the xpra session :$DISPLAY_NO did not start; its log:" >&2
  tail -n 20 "/run/user/$uid/xpra/:$DISPLAY_NO.log" >&2 || true
  exit 1
fi
certs=$(mktemp -d /tmp/xpra-demo-certs.XXXXXX)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 7 -subj "/CN=xpra-proxy demo" \
  -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" -keyout "$certs/key.pem" -out "$certs/cert.pem" 2>/dev/null
chmod 600 "$certs/key.pem"   # root only: the supervisor reads it and hands it to the TLS process
echo "starting xpra-proxy on $BIND:$PORT (root supervisor, unprivileged workers; xpra, TLS, WebSocket, HTML5 on one port)"
# the secret in a root-only file, not on the command line where ps shows it
(umask 077; printf '%s\n' "$PASSWORD" > "$certs/password")
bin/xpra-proxy --bind-tcp="$BIND:$PORT" --tcp-auth="password,value-file=$certs/password" \
  --ssl-cert="$certs/cert.pem" --ssl-key="$certs/key.pem" --control-socket="$certs/$(hostname)-proxy" \
  --run-dir="$certs/run" 2>/tmp/xpra-proxy-demo.log &
proxy_pid=$!
for _ in $(seq 50); do bin/xpra-probe --timeout 1s version "tcp://127.0.0.1:$PORT/" >/dev/null 2>&1 && break; sleep 0.1; done

run() { echo; echo "\$ $*"; "$@" || echo "(exit code $?)"; }
run xpra version "tcp://127.0.0.1:$PORT/"
run xpra info "tcp://$DEMO_USER:$PASSWORD@127.0.0.1:$PORT/"
echo; echo "\$ xpra info ssl://$DEMO_USER:$PASSWORD@127.0.0.1:$PORT/ --ssl-server-verify-mode=none | grep server.type"
xpra info "ssl://$DEMO_USER:$PASSWORD@127.0.0.1:$PORT/" --ssl-server-verify-mode=none 2>&1 | grep -E 'server.type|failed' || true
echo; echo "\$ xpra info ws://$DEMO_USER:$PASSWORD@127.0.0.1:$PORT/ | grep server.type"
xpra info "ws://$DEMO_USER:$PASSWORD@127.0.0.1:$PORT/" 2>&1 | grep -E 'server.type|failed' || true
echo; echo "\$ curl -sI http://127.0.0.1:$PORT/   (the HTML5 client, same port)"
curl -sI "http://127.0.0.1:$PORT/" | grep -iE '^(HTTP|content-type|content-security-policy)' || true
run bin/xpra-probe connect "tcp://$DEMO_USER:$PASSWORD@127.0.0.1:$PORT/$DISPLAY_NO" | grep -E '^(session_name|proxy[.a-z]*|version)=' || true
run bin/xpra-probe info "tcp://$DEMO_USER:wrong@127.0.0.1:$PORT/"
# one attached connection, to see it listed and stopped on its own
HOME=/root timeout 15 xvfb-run -a xpra attach "tcp://$DEMO_USER:$PASSWORD@127.0.0.1:$PORT/$DISPLAY_NO" \
  --mdns=no --pulseaudio=no --notifications=no --opengl=no --speaker=off --microphone=off --webcam=no \
  --printing=no --file-transfer=no --tray=no --system-tray=no --clipboard=no >/dev/null 2>&1 &
attach_pid=$!
for _ in $(seq 60); do bin/xpra-proxy list --run-dir="$certs/run" | grep "$DEMO_USER" | grep -q "socket:" && break; sleep 0.25; done
run bin/xpra-proxy list --run-dir="$certs/run"
echo
echo "proxy log (/tmp/xpra-proxy-demo.log):"; tail -n 6 /tmp/xpra-proxy-demo.log
echo
echo "the session is live behind the proxy: attach a real client with"
host=127.0.0.1
[ "$BIND" = 127.0.0.1 ] || host=$(hostname -I 2>/dev/null | awk '{print $1}')
echo "  xpra attach tcp://$DEMO_USER:$PASSWORD@$host:$PORT/$DISPLAY_NO"
echo "  xpra attach ssl://$DEMO_USER:$PASSWORD@$host:$PORT/$DISPLAY_NO --ssl-server-verify-mode=none"
echo "or open the HTML5 client in a browser: http://$host:$PORT/ (or https://, self-signed)"
echo "  user $DEMO_USER, password $PASSWORD"
echo "live connections: bin/xpra-proxy list --run-dir=$certs/run; stop one: xpra stop :proxy-PID"
[ $ONCE = 1 ] && exit 0
echo "Ctrl-C stops it."
# In the background, so that a signal to this shell alone (kill PID) runs
# its trap at once rather than after the sleep.
while :; do sleep 3600 & sleeper=$!; wait "$sleeper"; done
