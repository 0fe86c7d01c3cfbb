#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# coverage.sh - run tests with coverage and print each package's combined
# figure: the unit tests' and the e2e tests' own (go test -cover
# -coverpkg=./...) together with the supervisor processes the e2e tests
# run (built with go build -cover by internal/proxylab, writing to
# GOCOVERDIR). All counters go into one directory, merged by
# go tool covdata.
#   bash scripts/coverage.sh [go test flags] [packages]   (default ./...)
#   COVERDIR=dir  keep the counters there (default: a new temporary one);
#                 runs into the same COVERDIR add up (e.g. unit tests,
#                 then ./e2e under the e2e lock)
#   COVERAGE_MIN="supervisor=80 ..."  fail (exit 1) when a package's
#                 combined figure is below its floor, in percent
# The e2e tests share one test user: on a shared machine run them as
#   flock /tmp/e2e.lock bash scripts/coverage.sh ./e2e
# Exits with go test's status, after printing the figures.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${COVERDIR:-$(mktemp -d /tmp/xpra-proxy-cover-XXXXXX)}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
[ $# -gt 0 ] || set -- ./...
export XPRA_PROXY_COVERDIR=$dir # internal/proxylab: -cover programs, GOCOVERDIR
status=0
go test -count=1 -timeout 45m -cover -coverpkg=./... "$@" -args -test.gocoverdir="$dir" || status=$?
echo "== combined coverage per package (unit and e2e tests, and the supervisor processes the e2e tests ran), counters in $dir"
go tool covdata percent -i="$dir" | awk '{ sub(/^github.com\/xpra-proxy\/xpra-proxy\/?/, "", $1); if ($1 == "") $1 = "."; printf "%-40s %s\n", $1, $3 }' | sort >"$dir/percent.txt"
cat "$dir/percent.txt"
go tool covdata textfmt -i="$dir" -o "$dir/profile.txt"
echo "== total: $(go tool cover -func="$dir/profile.txt" | tail -n 1 | awk '{print $NF}') of statements (profile: $dir/profile.txt)"
for floor in ${COVERAGE_MIN:-}; do
  pkg=${floor%=*} min=${floor#*=}
  got=$(awk -v p="$pkg" '$1 == p { sub(/%/, "", $2); print $2 }' "$dir/percent.txt")
  if [ -z "$got" ]; then
    echo "== coverage of $pkg: no figure (floor $min %)"; status=1
  elif awk -v g="$got" -v m="$min" 'BEGIN { exit !(g < m) }'; then
    echo "== coverage of $pkg: $got %, below its floor of $min %"; status=1
  else
    echo "== coverage of $pkg: $got % (floor $min %)"
  fi
done
exit $status
