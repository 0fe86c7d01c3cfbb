#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# transport-compare.sh - what TLS and WebSocket cost our proxy per byte
# relayed, against plain xpra over TCP, in one run (BENCHMARKS.md, issue 4).
#
# Starts our proxy on one TCP port with a throwaway certificate and a
# sqlite database (made by xpra's own sqlite_auth.py) whose one entry sends
# user "fake" to the fake 3.1.3 server of bench/tlsflood, then floods draws
# server→client over tcp://, ssl://, ws:// and wss:// (and directly, as the
# harness's ceiling), interleaved, ROUNDS times. CPU is that of every
# process of the proxy that handled the connection: the supervisor, the
# pre-auth process (which, for TLS and WebSocket, stays and terminates the
# transport) and the relay worker. Then the in-package microbenchmark of
# TLS termination alone (transport.BenchmarkRelay).
#
# As root (the proxy runs its workers as other users), loopback only:
#   bash bench/transport-compare.sh [ROUNDS]     (default 5)
# Environment: DRAWS (1000), SIZE (262144 bytes per draw), TRANSPORTS
# (direct,tcp,ssl,ws,wss), MICRO=0 skips the microbenchmark (else run
# MICRO_COUNT=3 times), TRACES (../shared/xpra/traces) the 3.1.3 captures,
# PORT and FAKE (free loopback ports).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH
ROUNDS=${1:-5}
DRAWS=${DRAWS:-1000} SIZE=${SIZE:-262144}
TRACES=${TRACES:-$(cd ../shared/xpra/traces && pwd)}
PY=/usr/bin/python3 U=xprabench
# Free loopback ports unless given: other benchmarks may be running.
freeport() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PORT=${PORT:-$(freeport)} FAKE=${FAKE:-$(freeport)}
. scripts/ensure-go.sh >/dev/null 2>&1
[ "$(id -u)" = 0 ] || { echo "run as root: the proxy starts its workers as other users" >&2; exit 1; }
id xpra-proxy >/dev/null 2>&1 || useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin xpra-proxy
id "$U" >/dev/null 2>&1 || useradd --system --create-home --shell /usr/sbin/nologin "$U"

work=$(mktemp -d /tmp/transport-compare.XXXXXX); chmod 755 "$work"
cleanup() {
  [ -n "${our_pid:-}" ] && kill "$our_pid" 2>/dev/null || true   # may have exited already
  rm -rf "$work"
}
trap cleanup EXIT
# Our own build directory: the workers are found beside the supervisor.
bash scripts/build-bin.sh "$work/bin" ./bench/tlsflood
chmod 755 "$work/bin"

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
chmod 600 "$work/key.pem"
db=$work/users.sdb
helper=/usr/lib/python3/dist-packages/xpra/server/auth/sqlite_auth.py
$PY $helper "$db" create >/dev/null
$PY $helper "$db" add fake pw "$U" "$U" "tcp://127.0.0.1:$FAKE/" >/dev/null

"$work/bin/xpra-proxy" --bind-tcp=127.0.0.1:$PORT --control-socket=off \
  "--tcp-auth=sqlite,filename=$db" --ssl-cert="$work/cert.pem" --ssl-key="$work/key.pem" \
  2>"$work/proxy.log" &
our_pid=$!
# Wait until the port is ours (not another program's that got there first).
for _ in $(seq 100); do
  ss -ltnpH "sport = :$PORT" | grep -q "pid=$our_pid," && break
  kill -0 "$our_pid" 2>/dev/null || break
  sleep 0.1
done
ss -ltnpH "sport = :$PORT" | grep -q "pid=$our_pid," || { echo "the proxy did not start:"; cat "$work/proxy.log"; exit 1; }

echo "== machine"
echo "$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(free -g | awk '/Mem:/{print $2}') GiB," \
  "kernel $(uname -r), $(go version | cut -d' ' -f3), commit ${COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo "?")}"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "== draw flood through our proxy ($DRAWS draws of $SIZE bytes per connection, $ROUNDS rounds), supervisor pid $our_pid"
(cd "$work" && "$work/bin/tlsflood" -proxy 127.0.0.1:$PORT -fake 127.0.0.1:$FAKE -supervisor "$our_pid" \
  -rounds "$ROUNDS" -draws "$DRAWS" -size "$SIZE" -transports "${TRANSPORTS:-direct,tcp,ssl,ws,wss}" -trace "$TRACES/e1-attach-via-proxy.proxy-server.1.s2c.bin") \
  || { echo "-- proxy log:"; tail -n 30 "$work/proxy.log"; exit 1; }
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

if [ "${MICRO:-1}" != 0 ]; then
  echo; echo "== TLS termination alone: go test -run '^\$' -bench BenchmarkRelay -benchtime 2s ./preauth/transport/"
  go test -run '^$' -bench BenchmarkRelay -benchtime 2s -count "${MICRO_COUNT:-3}" ./preauth/transport/ | grep -E '^(Benchmark|ok|FAIL)'
fi
