#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# proxy-compare.sh - measure our proxy against xpra 3.1.3's own `xpra proxy`
# in one run on this machine (as root, Debian 12, loopback only), for
# BENCHMARKS.md. Uses the lab tools in ../shared/lab/peers/tools ($LAB):
#   connection setup (hello_rtt.py, interleaved), memory per held connection
#   (mem_tree.sh), and CPU per MB and throughput of a synthetic draw flood
#   (bench/flood.py) through each relay: a plain io.Copy relay, ours, ours
#   built from OLD_REV (if set) and the reference.
# Usage: bash bench/proxy-compare.sh [ROUNDS]   (default 20)
#   FLOOD_ONLY=1       only the flood
#   SETUP_ONLY=1       only connection setup, direct and ours (and OLD_BIN's
#                      proxy if set; no reference proxy, memory or flood):
#                      for quick iteration
#   FLOOD_ROUNDS=N     flood rounds (default 3); each round runs every size
#                      through every relay in turn
#   FLOOD_SIZES="SIZE:DRAWS ..."  (default "65536:8000 262144:2000 4194304:125",
#                      about 525 MB each)
#   OUR_BIN=DIR        "ours" is the proxy already built in DIR (xpra-proxy and
#                      its workers), not one built from this checkout
#   OLD_REV=REV        also flood through the proxy built from git revision REV
#                      (a worktree in the run's temporary directory)
#   KEEP_LOG=FILE      keep our supervisor's log there; with XPRA_PROXY_DEBUG=1
#                      it holds each connection's "setup timeline" line and its
#                      relay's "relay setup timeline" (same origin: the accept)
#   XPRA_PROXY_DEBUG=1 our supervisor logs at debug: after the setup rounds,
#                      where its setup time goes, stage by stage (bench/timeline.py)
#   OLD_BIN=DIR        instead: the proxy already built in DIR (xpra-proxy and
#                      its workers), e.g. a copy of bin/ from before a change
#   FLOOD_OUT=FILE     keep the flood's JSON lines (bench/flood.py --summary FILE)
#   MEM_ONLY=1         only the memory with one attached connection held
#   MEM_ROUNDS=N       with MEM_ONLY: hold a connection N times (default 1)
#   MEM_DUMP=DIR       with MEM_ONLY: keep /proc/PID/smaps of each child of
#                      the proxy while the connection is held
#   MEM_WHO="ours"     with MEM_ONLY: whose memory (default "ref ours"; "old"
#                      is the OLD_REV or OLD_BIN proxy)
#   IDLE_GAP=S         setup: each connection after S seconds idle (issue 17
#                      asks for 10: the first connection after an idle period),
#                      instead of back-to-back (0.3 s apart); 20 rounds with
#                      IDLE_GAP=10 take about 3.5 minutes per target
#   BENCH_USER=NAME    the session's throwaway user (default xprabench; it
#                      needs a home: start-peers.sh creates it with one)
#   OUR_ARGS="..."     more arguments for our proxy (e.g. --warm-relays=0)
#   BASE_4M=RATIO      "no worse than today" at 4 MiB: ours/io.Copy's CPU per
#                      MB recorded in issue 17 (default 0.94)
# At its end it prints issue 17's goals with their figures and met / not met
# (bench/goals.py), with the setup's mode and the load average.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH
ROUNDS=${1:-20}
LAB=${LAB:-$(cd ../shared/lab/peers && pwd)}; TOOLS=$LAB/tools; export LAB
# Displays and ports: BENCH_DISPLAY=N moves them all (default 160: displays 160-161, ports 14660-14665, 15300).
B=${BENCH_DISPLAY:-160} O=$(( ${BENCH_DISPLAY:-160} - 160 ))
U=${BENCH_USER:-xprabench} SRV=$B SRVPORT=$((14660 + O)) REF=$((B + 1)) REFPORT=$((14661 + O)) OURPORT=$((14662 + O)) COPYPORT=$((14663 + O)) OLDPORT=$((14665 + O)) FAKE=$((15300 + O))
PY=/usr/bin/python3
PAUSE=${IDLE_GAP:-0.3}
if [ -n "${IDLE_GAP:-}" ]; then setup_mode="after ${IDLE_GAP} s idle"; else setup_mode="back-to-back, 0.3 s apart"; fi
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
. scripts/ensure-go.sh >/dev/null 2>&1
mkdir -p bin && chmod 755 bin
if [ -n "${OUR_BIN:-}" ]; then
  go build -o bin/ ./bench/iocopy
  our_bin=$(cd "$OUR_BIN" && pwd)
else
  bash scripts/build-bin.sh bin ./bench/iocopy
  our_bin=bin
fi
id xpra-proxy >/dev/null 2>&1 || useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin xpra-proxy
work=$(mktemp -d /tmp/proxy-compare.XXXXXX); chmod 755 "$work"
cleanup() {
  [ -n "${our_pid:-}" ] && kill "$our_pid" 2>/dev/null
  [ -n "${copy_pid:-}" ] && kill "$copy_pid" 2>/dev/null
  [ -n "${old_pid:-}" ] && kill "$old_pid" 2>/dev/null
  [ -d "$work/old" ] && git worktree remove --force "$work/old" 2>/dev/null
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
chmod 600 "$db"   # our auth modules refuse a password file others can read
if [ -n "${SETUP_ONLY:-}" ]; then
  "$our_bin/xpra-proxy" --bind-tcp=127.0.0.1:$OURPORT "--tcp-auth=sqlite,filename=$db" ${OUR_ARGS:-} 2>"$work/ours.log" &
  our_pid=$!
  old_target=()
  if [ -n "${OLD_BIN:-}" ]; then  # a before/after comparison in one run
    "$OLD_BIN/xpra-proxy" --bind-tcp=127.0.0.1:$OLDPORT "--tcp-auth=sqlite,filename=$db" 2>"$work/old.log" &
    old_pid=$!
    old_target=(old="tcp://bench:pw@127.0.0.1:$OLDPORT/")
  fi
  sleep 1
  echo; echo "== connection setup: connect until the first server packet, attach hello ($ROUNDS rounds, interleaved, $setup_mode)"
  $PY "$TOOLS/hello_rtt.py" -n "$ROUNDS" --pause "$PAUSE" --csv "$work/setup.csv" --mode attach direct="tcp://127.0.0.1:$SRVPORT/" ours="tcp://bench:pw@127.0.0.1:$OURPORT/" "${old_target[@]}"
  [ -n "${KEEP_LOG:-}" ] && cp "$work/ours.log" "$KEEP_LOG"
  if [ -n "${XPRA_PROXY_DEBUG:-}" ]; then echo; echo "== where ours' setup time goes"; $PY bench/timeline.py "$work/ours.log"; fi
  echo; echo "== issue 17's goals (load average at the start: $load_start; at the end: $(cut -d' ' -f1-3 /proc/loadavg))"
  $PY bench/goals.py --setup-csv "$work/setup.csv" --setup-mode "$setup_mode" --base-4m "${BASE_4M:-0.94}"
  exit 0
fi
bash "$LAB/start-peers.sh" --proxy "$REF" "$REFPORT" -- "--tcp-auth=sqlite,filename=$db"
ref_pid=$(cat /tmp/xpra-peers/proxy-$REF.pid)
"$our_bin/xpra-proxy" --bind-tcp=127.0.0.1:$OURPORT "--tcp-auth=sqlite,filename=$db" ${OUR_ARGS:-} 2>"$work/ours.log" &
our_pid=$!
bin/iocopy -listen 127.0.0.1:$COPYPORT -to 127.0.0.1:$FAKE 2>/dev/null &
copy_pid=$!
if [ -n "${OLD_REV:-}" ]; then
  git worktree add --detach "$work/old" "$OLD_REV" >/dev/null
  (cd "$work/old" && mkdir -p bin && go build -o bin/ ./cmd/xpra-proxy ./cmd/xpra-proxy-worker $(ls -d ./cmd/xpra-proxy-preauth 2>/dev/null))
  chmod -R a+rX "$work/old/bin"
  old_bin=$work/old/bin
elif [ -n "${OLD_BIN:-}" ]; then
  old_bin=$(cd "$OLD_BIN" && pwd) OLD_REV=$OLD_BIN
fi
if [ -n "${old_bin:-}" ]; then
  "$old_bin/xpra-proxy" --bind-tcp=127.0.0.1:$OLDPORT "--tcp-auth=sqlite,filename=$db" 2>"$work/old.log" &
  old_pid=$!
fi
sleep 1
echo "reference proxy pid $ref_pid, ours $our_pid, io.Copy relay $copy_pid${old_pid:+, ours at $OLD_REV $old_pid}"

echo "memory of ours before any connection:"; bash "$TOOLS/mem_tree.sh" "$our_pid"
if [ -z "${FLOOD_ONLY:-}" ]; then
if [ -z "${MEM_ONLY:-}" ]; then
echo; echo "== connection setup: connect until the first server packet, attach hello ($ROUNDS rounds, interleaved, $setup_mode)"
$PY "$TOOLS/hello_rtt.py" -n "$ROUNDS" --pause "$PAUSE" --csv "$work/setup.csv" --mode attach direct="tcp://127.0.0.1:$SRVPORT/" \
  xpra-proxy="tcp://bench:pw@127.0.0.1:$REFPORT/" ours="tcp://bench:pw@127.0.0.1:$OURPORT/"
if [ -n "${XPRA_PROXY_DEBUG:-}" ]; then echo; echo "== where ours' setup time goes"; $PY bench/timeline.py "$work/ours.log"; fi
fi

echo; echo "== memory with one attached connection held (kB)"
for who in $(for i in $(seq "${MEM_ROUNDS:-1}"); do echo ${MEM_WHO:-ref ours}; done); do
  port=$REFPORT; pid=$ref_pid; [ $who = ours ] && { port=$OURPORT; pid=$our_pid; }
  [ $who = old ] && { port=$OLDPORT; pid=$old_pid; }
  echo "-- $who idle"; bash "$TOOLS/mem_tree.sh" "$pid" | tail -n 1
  $PY "$TOOLS/hello_rtt.py" -n 1 --mode attach --hold 6 x="tcp://bench:pw@127.0.0.1:$port/" >/dev/null 2>&1 &
  held=$!
  sleep 4
  echo "-- $who with one connection"; bash "$TOOLS/mem_tree.sh" "$pid"
  if [ -n "${MEM_DUMP:-}" ]; then
    mkdir -p "$MEM_DUMP"
    for w in $(pgrep -P "$pid"); do cp "/proc/$w/smaps" "$MEM_DUMP/$who-$w.smaps" 2>/dev/null || true; done
  fi
  wait $held || true   # hello_rtt exits non-zero when the held socket is closed under it
done

[ -n "${MEM_ONLY:-}" ] && exit 0
fi
echo; echo "== synthetic draw flood through each relay, timed from the first draw (bench/flood.py)"
out=${FLOOD_OUT:-$work/flood.jsonl}
: >"$out"
for round in $(seq "${FLOOD_ROUNDS:-3}"); do
  for spec in ${FLOOD_SIZES:-65536:8000 262144:2000 4194304:125}; do
    size=${spec%:*} n=${spec#*:}
    f() { $PY bench/flood.py --fake-port $FAKE --size "$size" --packets "$n" --round "$round" --out "$out" "$@" || echo "(failed)"; }
    f --direct --label "none (direct)"
    f --via "tcp://127.0.0.1:$COPYPORT/" --relay-pid "$copy_pid" --label "io.Copy"
    [ -n "${old_pid:-}" ] && f --via "tcp://fake:pw@127.0.0.1:$OLDPORT/" --relay-pid "$old_pid" --label "ours at $OLD_REV"
    f --via "tcp://fake:pw@127.0.0.1:$OURPORT/" --relay-pid "$our_pid" --label "ours"
    f --via "tcp://fake:pw@127.0.0.1:$REFPORT/" --relay-pid "$ref_pid" --label "xpra 3.1.3 proxy"
  done
done
echo; $PY bench/flood.py --summary "$out"
[ -n "${KEEP_LOG:-}" ] && cp "$work/ours.log" "$KEEP_LOG"
echo; echo "== issue 17's goals (load average at the start: $load_start; at the end: $(cut -d' ' -f1-3 /proc/loadavg))"
setup_args=()
[ -s "$work/setup.csv" ] && setup_args=(--setup-csv "$work/setup.csv" --setup-mode "$setup_mode")
$PY bench/goals.py "${setup_args[@]}" --flood "$out" --base-4m "${BASE_4M:-0.94}"
