#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Runs fuzz targets one after another for a given time each and prints one
# line per target: package, target, seconds asked, execs reported, result,
# and the load average before and after (the machine is shared: BENCHMARKS.md
# records these lines as they are).
#   scripts/fuzz-bench.sh 60s PKG:TARGET [PKG:TARGET ...]
#   scripts/fuzz-bench.sh 60s all        every target in every package
# PARALLEL=2 sets go test's -parallel (fuzz workers), as CI's fuzz stage.
set -uo pipefail
cd "$(dirname "$0")/.."
time=$1; shift
parallel=${PARALLEL:-2}
targets=("$@")
if [ "${targets[0]:-}" = all ]; then
  targets=()
  for pkg in $(go list ./...); do
    dir=$(go list -f '{{.Dir}}' "$pkg")
    for t in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
      targets+=("$pkg:$t")
    done
  done
fi
for pt in "${targets[@]}"; do
  pkg=${pt%%:*}; t=${pt##*:}
  load0=$(cut -d' ' -f1 /proc/loadavg)
  start=$(date +%s)
  out=$(go test -run='^$' -fuzz="^${t}\$" -fuzztime="$time" -fuzzminimizetime=0 -parallel="$parallel" "$pkg" 2>&1)
  rc=$?
  end=$(date +%s)
  load1=$(cut -d' ' -f1 /proc/loadavg)
  execs=$(echo "$out" | grep -o 'execs: [0-9]*' | tail -n 1 | grep -o '[0-9]*')
  res=pass; [ $rc = 0 ] || res=FAIL
  echo "$pkg $t time=$time wall=$((end-start))s execs=${execs:-?} $res load=$load0->$load1 $(date -u +%H:%M)"
  if [ $rc != 0 ]; then echo "$out" | tail -n 40 | sed 's/^/    /'; fi
done
