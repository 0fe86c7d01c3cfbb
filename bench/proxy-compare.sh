#!/bin/bash
# proxy-compare.sh - measure our proxy against xpra 3.1.3's own `xpra proxy`
# in one run on this machine (as root, Debian 12, loopback only), for
# BENCHMARKS.md. Uses the lab tools in ../shared/lab/peers/tools:
#   connection setup (hello_rtt.py, interleaved), memory per held connection
#   (mem_tree.sh), CPU per MB and throughput of a synthetic draw flood
#   (proxy_bench.py) against a plain io.Copy relay.
# Usage: bash bench/proxy-compare.sh [ROUNDS]   (default 20; FLOOD_ONLY=1: only the flood)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH
ROUNDS=${1:-20}
LAB=$(cd ../shared/lab/peers && pwd); TOOLS=$LAB/tools
U=xprabench SRV=160 SRVPORT=14660 REF=161 REFPORT=14661 OURPORT=14662 COPYPORT=14663 FAKE=15300
PY=/usr/bin/python3
. scripts/ensure-go.sh >/dev/null 2>&1
mkdir -p bin && chmod 755 bin && go build -o bin/ ./cmd/xpra-proxy ./cmd/xpra-proxy-worker ./bench/iocopy
id xpra-proxy >/dev/null 2>&1 || useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin xpra-proxy
work=$(mktemp -d /tmp/proxy-compare.XXXXXX); chmod 755 "$work"
cleanup() {
  [ -n "${our_pid:-}" ] && kill "$our_pid" 2>/dev/null
  [ -n "${copy_pid:-}" ] && kill "$copy_pid" 2>/dev/null
  bash "$LAB/start-peers.sh" --stop "$REF" >/dev/null 2>&1 || true
  bash "$LAB/start-peers.sh" --stop --user "$U" "$SRV" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "== peers"
bash "$LAB/start-peers.sh" --user "$U" "$SRV" "$SRVPORT"
db=$work/users.sdb
helper=/usr/lib/python3/dist-packages/xpra/server/auth/sqlite_auth.py
$PY $helper "$db" create >/dev/null
$PY $helper "$db" add bench pw "$U" "$U" "tcp://127.0.0.1:$SRVPORT/" >/dev/null
$PY $helper "$db" add fake pw "$U" "$U" "tcp://127.0.0.1:$FAKE/" >/dev/null
chmod 644 "$db"
bash "$LAB/start-peers.sh" --proxy "$REF" "$REFPORT" -- "--tcp-auth=sqlite,filename=$db"
ref_pid=$(cat /tmp/xpra-peers/proxy-$REF.pid)
bin/xpra-proxy --bind-tcp=127.0.0.1:$OURPORT "--tcp-auth=sqlite,filename=$db" 2>"$work/ours.log" &
our_pid=$!
bin/iocopy -listen 127.0.0.1:$COPYPORT -to 127.0.0.1:$FAKE 2>/dev/null &
copy_pid=$!
sleep 1
echo "reference proxy pid $ref_pid, ours $our_pid, io.Copy relay $copy_pid"

echo "memory of ours before any connection:"; bash "$TOOLS/mem_tree.sh" "$our_pid"
if [ -z "${FLOOD_ONLY:-}" ]; then
echo; echo "== connection setup: connect until the first server packet, attach hello ($ROUNDS rounds, interleaved)"
$PY "$TOOLS/hello_rtt.py" -n "$ROUNDS" --mode attach direct="tcp://127.0.0.1:$SRVPORT/" \
  xpra-proxy="tcp://bench:pw@127.0.0.1:$REFPORT/" ours="tcp://bench:pw@127.0.0.1:$OURPORT/"

echo; echo "== memory with one attached connection held (kB)"
for who in ref ours; do
  port=$REFPORT; pid=$ref_pid; [ $who = ours ] && { port=$OURPORT; pid=$our_pid; }
  echo "-- $who idle"; bash "$TOOLS/mem_tree.sh" "$pid" | tail -n 1
  $PY "$TOOLS/hello_rtt.py" -n 1 --mode attach --hold 6 x="tcp://bench:pw@127.0.0.1:$port/" >/dev/null 2>&1 &
  held=$!
  sleep 4
  echo "-- $who with one connection"; bash "$TOOLS/mem_tree.sh" "$pid"
  wait $held || true   # hello_rtt exits non-zero when the held socket is closed under it
done

fi
echo; echo "== synthetic draw flood: 400 draws of 256 KiB through each relay, timed from the first draw (bench/flood.py)"
for round in $(seq "${FLOOD_ROUNDS:-2}"); do
  $PY bench/flood.py --fake-port $FAKE --direct || echo "(failed)"
  $PY bench/flood.py --fake-port $FAKE --via "tcp://127.0.0.1:$COPYPORT/" --proxy-pid "$copy_pid" || echo "(failed)"
  $PY bench/flood.py --fake-port $FAKE --via "tcp://fake:pw@127.0.0.1:$OURPORT/" --proxy-pid "$our_pid" || echo "(failed)"
  $PY bench/flood.py --fake-port $FAKE --via "tcp://fake:pw@127.0.0.1:$REFPORT/" --proxy-pid "$ref_pid" || echo "(failed)"
done
