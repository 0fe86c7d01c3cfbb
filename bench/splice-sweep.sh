#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# splice-sweep.sh - the relay core alone (bench/framerelay: worker.Relay
# between two TCP ports, no hellos, pings or authentication) at several
# cut-through thresholds, against a plain io.Copy relay, with the draw
# flood of bench/flood.py: how DefaultSpliceMin was chosen (BENCHMARKS.md).
# No root needed; uses the lab's tools ($LAB, default ../shared/lab/peers).
# Usage: bash bench/splice-sweep.sh [ROUNDS]
#   SIZES="65536 262144"   draw sizes (each flood is 512 MiB)
#   MINS="0 16384 65536"   -splice-min values (0: never cut through)
#   GOMAXPROCS1=1          also run the default threshold with GOMAXPROCS=1
set -euo pipefail
cd "$(dirname "$0")/.."
LAB=${LAB:-$(cd ../shared/lab/peers && pwd)}; export LAB
PY=/usr/bin/python3 FAKE=15300
. scripts/ensure-go.sh >/dev/null 2>&1
mkdir -p bin && go build -o bin/ ./bench/iocopy ./bench/framerelay
out=$(mktemp /tmp/splice-sweep.XXXXXX.jsonl)
pids=() labels=() ports=() port=14700
start() { # label, then the relay's command (it is given -listen and -to)
  local label=$1; shift
  "$@" -listen 127.0.0.1:$port -to 127.0.0.1:$FAKE 2>/dev/null &
  pids+=($!) labels+=("$label") ports+=($port); port=$((port+1))
}
trap 'kill "${pids[@]}" 2>/dev/null; rm -f "$out"' EXIT
start io.Copy bin/iocopy
for m in ${MINS:-0 8192 16384 32768 65536}; do start "framerelay -splice-min $m" bin/framerelay -splice-min "$m"; done
[ -n "${GOMAXPROCS1:-}" ] && start "framerelay, GOMAXPROCS=1" env GOMAXPROCS=1 bin/framerelay
sleep 0.5
for round in $(seq "${1:-3}"); do
  for size in ${SIZES:-32768 65536 262144 1048576}; do
    for i in "${!pids[@]}"; do
      $PY bench/flood.py --fake-port $FAKE --via "tcp://127.0.0.1:${ports[$i]}/" --relay-pid "${pids[$i]}" \
        --packets $((512 * 1024 * 1024 / size)) --size "$size" --round "$round" --label "${labels[$i]}" --out "$out" || echo "(failed)"
    done
  done
done
echo; $PY bench/flood.py --summary "$out"
