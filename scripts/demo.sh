#!/bin/bash
# demo.sh - something real to see: start a real xpra 3.1.3 session for a
# throwaway user (password auth on 127.0.0.1:14650), then ask it questions
# with our own protocol implementation (xpra-probe): version, info, a wrong
# password, and the same over a unix socket. Ctrl-C (or --once) stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH
ONCE=0; [ "${1:-}" = "--once" ] && ONCE=1
DEMO_USER=xpra-demo DISPLAY_NO=140 PORT=14650 PASSWORD=demo-secret

bash .ci/install-deps.sh
. scripts/ensure-go.sh
mkdir -p bin && go build -o bin/xpra-probe ./cmd/xpra-probe

id "$DEMO_USER" >/dev/null 2>&1 || useradd -m -s /bin/bash "$DEMO_USER"
uid=$(id -u "$DEMO_USER"); home=$(getent passwd "$DEMO_USER" | cut -d: -f6)
install -d -m 700 -o "$DEMO_USER" -g "$DEMO_USER" "/run/user/$uid"
overlay=$(mktemp -d /tmp/xpra-demo.XXXXXX); chmod 755 "$overlay"; mkdir -p "$overlay/xpra"
printf 'start = \n' > "$overlay/xpra/xpra.conf"   # drop Debian's "start = /etc/X11/Xsession true"
as_user() {
  runuser -u "$DEMO_USER" -- env -i PATH="$PATH" HOME="$home" USER="$DEMO_USER" LOGNAME="$DEMO_USER" \
    LANG=C.UTF-8 XDG_RUNTIME_DIR="/run/user/$uid" XDG_CONFIG_DIRS="/etc/xdg:$overlay" "$@"
}
stop() { as_user xpra stop ":$DISPLAY_NO" >/dev/null 2>&1 || true; rm -rf "$overlay"; }
trap stop EXIT

echo "starting a real xpra $(xpra --version 2>/dev/null | awk '{print $2}') session :$DISPLAY_NO for $DEMO_USER on 127.0.0.1:$PORT"
as_user xpra start ":$DISPLAY_NO" --daemon=yes --bind-tcp="127.0.0.1:$PORT" \
  --tcp-auth="password,value=$PASSWORD" --start="xclock -update 1" \
  --mdns=no --pulseaudio=no --notifications=no --systemd-run=no --dbus-launch= --dbus-proxy=no \
  --dbus-control=no --printing=no --webcam=no --opengl=no --speaker=off --microphone=off --file-transfer=no
for _ in $(seq 120); do
  bin/xpra-probe --timeout 2s version "tcp://127.0.0.1:$PORT/" >/dev/null 2>&1 && break; sleep 0.5
done

run() { echo; echo "\$ $*"; "$@" || echo "(exit code $?)"; }
run bin/xpra-probe version "tcp://127.0.0.1:$PORT/"
run bin/xpra-probe info "tcp://$DEMO_USER:$PASSWORD@127.0.0.1:$PORT/" | head -n 12 || true  # ~600 lines: show the first
run bin/xpra-probe info "tcp://$DEMO_USER:wrong@127.0.0.1:$PORT/"
sock=$(ls /run/user/$uid/xpra/*-$DISPLAY_NO 2>/dev/null | head -n1)
[ -n "$sock" ] && run runuser -u "$DEMO_USER" -- bin/xpra-probe id "socket://$sock"
echo
echo "the session is live: attach a real client with"
echo "  xpra attach tcp://$DEMO_USER:$PASSWORD@127.0.0.1:$PORT/"
[ $ONCE = 1 ] && exit 0
echo "Ctrl-C stops it."
while sleep 3600; do :; done
