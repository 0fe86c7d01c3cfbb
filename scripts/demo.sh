#!/bin/bash
# demo.sh - something real to see: a real xpra 3.1.3 session for a
# throwaway user, behind our proxy (xpra-proxy on 0.0.0.0:14650, password
# auth). It queries the session through the proxy with the real xpra client
# and our own xpra-probe, then prints the `xpra attach` URL and keeps
# running. Ctrl-C (or --once) stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH
ONCE=0; [ "${1:-}" = "--once" ] && ONCE=1
DEMO_USER=xpra-demo DISPLAY_NO=140 PORT=14650 PASSWORD=demo-secret

bash .ci/install-deps.sh
. scripts/ensure-go.sh
mkdir -p bin && chmod 755 bin && go build -o bin/ ./cmd/xpra-probe ./cmd/xpra-proxy ./cmd/xpra-proxy-worker
# the unprivileged user of the pre-auth stage, as the package creates it
id xpra-proxy >/dev/null 2>&1 || useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin xpra-proxy

id "$DEMO_USER" >/dev/null 2>&1 || useradd -m -s /bin/bash "$DEMO_USER"
uid=$(id -u "$DEMO_USER"); home=$(getent passwd "$DEMO_USER" | cut -d: -f6)
install -d -m 700 -o "$DEMO_USER" -g "$DEMO_USER" "/run/user/$uid"
overlay=$(mktemp -d /tmp/xpra-demo.XXXXXX); chmod 755 "$overlay"; mkdir -p "$overlay/xpra"
printf 'start = \n' > "$overlay/xpra/xpra.conf"   # drop Debian's "start = /etc/X11/Xsession true"
as_user() {
  runuser -u "$DEMO_USER" -- env -i PATH="$PATH" HOME="$home" USER="$DEMO_USER" LOGNAME="$DEMO_USER" \
    LANG=C.UTF-8 XDG_RUNTIME_DIR="/run/user/$uid" XDG_CONFIG_DIRS="/etc/xdg:$overlay" "$@"
}
stop() {
  [ -n "${proxy_pid:-}" ] && kill "$proxy_pid" 2>/dev/null
  as_user xpra stop ":$DISPLAY_NO" >/dev/null 2>&1 || true; rm -rf "$overlay"
}
trap stop EXIT

echo "starting a real xpra $(xpra --version 2>/dev/null | awk '{print $2}') session :$DISPLAY_NO for $DEMO_USER (unix socket only)"
as_user xpra start ":$DISPLAY_NO" --daemon=yes --start="xclock -update 1" \
  --mdns=no --pulseaudio=no --notifications=no --systemd-run=no --dbus-launch= --dbus-proxy=no \
  --dbus-control=no --printing=no --webcam=no --opengl=no --speaker=off --microphone=off --file-transfer=no
for _ in $(seq 120); do
  ls /run/user/$uid/xpra/*-$DISPLAY_NO >/dev/null 2>&1 && runuser -u "$DEMO_USER" -- bin/xpra-probe --timeout 2s version \
    "socket://$(ls /run/user/$uid/xpra/*-$DISPLAY_NO | head -n1)" >/dev/null 2>&1 && break; sleep 0.5
done
echo "starting xpra-proxy on 0.0.0.0:$PORT (root supervisor, unprivileged workers)"
bin/xpra-proxy --bind-tcp="0.0.0.0:$PORT" --tcp-auth="password,value=$PASSWORD" 2>/tmp/xpra-proxy-demo.log &
proxy_pid=$!
for _ in $(seq 50); do bin/xpra-probe --timeout 1s version "tcp://127.0.0.1:$PORT/" >/dev/null 2>&1 && break; sleep 0.1; done

run() { echo; echo "\$ $*"; "$@" || echo "(exit code $?)"; }
run xpra version "tcp://127.0.0.1:$PORT/"
run xpra info "tcp://$DEMO_USER:$PASSWORD@127.0.0.1:$PORT/"
run bin/xpra-probe connect "tcp://$DEMO_USER:$PASSWORD@127.0.0.1:$PORT/$DISPLAY_NO" | grep -E '^(session_name|proxy[.a-z]*|version)=' || true
run bin/xpra-probe info "tcp://$DEMO_USER:wrong@127.0.0.1:$PORT/"
echo
echo "proxy log (/tmp/xpra-proxy-demo.log):"; tail -n 6 /tmp/xpra-proxy-demo.log
echo
echo "the session is live behind the proxy: attach a real client with"
echo "  xpra attach tcp://$DEMO_USER:$PASSWORD@$(hostname -I 2>/dev/null | awk '{print $1}'):$PORT/$DISPLAY_NO"
[ $ONCE = 1 ] && exit 0
echo "Ctrl-C stops it."
while sleep 3600; do :; done
