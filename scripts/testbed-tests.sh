#!/bin/bash
# testbed-tests.sh - run the tests that need systemd as PID 1, dbus, logind
# and real PAM (go build tag "testbed") inside the systemd-nspawn testbed of
# ../shared/lab/systemd (see its LAB.md). As root, on Debian 12.
#
#   bash scripts/testbed-tests.sh [go test flags for the binary, e.g. -test.run=Logout]
#
# The first run on a machine builds the testbed's base tree (debootstrap,
# 1.5-4 min, cached in /var/tmp/systemd-testbed); after that a run is the
# compile plus about 15 s, plus the .deb's build (scripts/build-packages.sh,
# 1.5-6 min on 2 cores) and a few minutes for e2e/service. Exits non-zero
# if a test fails (or cannot run).
#
# e2e/service installs the .deb and starts real xpra sessions: its testbed
# boots on the host's own root as the lower layer (TESTBED_BASE=host), where
# .ci/install-deps.sh has put xpra, Xvfb and the package's libraries, instead
# of debootstrapping xpra's hundreds of packages into the base tree.
# XPRA_PROXY_DEB=path/to.deb skips the package build (reruns); the
# encoder's .deb beside it is used too.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH
testbed=${TESTBED_SCRIPT:-$(cd .. && pwd)/shared/lab/systemd/boot-systemd-testbed.sh}
if [ ! -x "$testbed" ]; then
  echo "testbed-tests: $testbed not found (../shared/lab/systemd must be beside the checkout)" >&2
  exit 1
fi
. scripts/ensure-go.sh >/dev/null

# Packages whose tests run in the testbed, and the lower layer of each.
pkgs=(./logind ./e2e/service)
declare -A base=([./logind]=debootstrap [./e2e/service]=host)

share=$(mktemp -d /var/tmp/xpra-proxy-testbed.XXXXXX)
trap 'rm -rf "$share"' EXIT
chmod 755 "$share"
go vet -tags testbed "${pkgs[@]}"
for p in "${pkgs[@]}"; do
  go test -c -tags testbed -o "$share/$(basename "$p").test" "$p"
done
# The shipped PAM service and supervisor sandbox, for the tests to use.
mkdir "$share/packaging"
[ -f packaging/pam.d/debian/xpra-proxy ] && cp packaging/pam.d/debian/xpra-proxy "$share/packaging/xpra-proxy.pam"
[ -f packaging/systemd/xpra-proxy.service ] && cp packaging/systemd/xpra-proxy.service "$share/packaging/"
# The package e2e/service installs.
mkdir "$share/deb"
if [ -n "${XPRA_PROXY_DEB:-}" ]; then
  cp "$XPRA_PROXY_DEB" "$share/deb/"
  for f in "$(dirname "$XPRA_PROXY_DEB")"/xpra-proxy-encode_*.deb; do [ -e "$f" ] && cp "$f" "$share/deb/"; done
else
  t0=$SECONDS
  bash scripts/build-packages.sh --deb "$share/deb" >/dev/null
  echo "testbed-tests: .deb built in $((SECONDS - t0))s"
fi
"$testbed" build

status=0
log="$share/out.log"
for p in "${pkgs[@]}"; do
  name=$(basename "$p")
  echo "== testbed: $name"
  envs=()
  [ -n "${CI:-}" ] && envs+=(--env "CI=$CI")
  TESTBED_BASE=${base[$p]} "$testbed" run --bind-ro "$share:/opt/xpra-proxy-tests" "${envs[@]}" --timeout 600 -- \
    "/opt/xpra-proxy-tests/$name.test" -test.v -test.count=1 -test.timeout=8m "$@" 2>&1 | tee -a "$log" || status=1
done
passed=$(grep -c -- '^--- PASS' "$log" || true)
failed=$(grep -c -- '^--- FAIL' "$log" || true)
skipped=$(grep -c -- '^--- SKIP' "$log" || true)
if [ "$status" = 0 ] && [ "$passed" = 0 ]; then
  echo "testbed-tests: no test ran" >&2
  status=1
fi
# CI shows only the end of this output: repeat there what each failed
# test said (the first lines of each message it logged while it ran).
if [ "$failed" != 0 ] || [ "$status" != 0 ]; then
  echo "testbed: what the failed tests said:"
  awk '
    /^=== (RUN|CONT) / { cur = $3; left = 0; next }
    /^ *--- FAIL: / { left = 0; sub(/^ *--- FAIL: /, ""); sub(/ \(.*$/, ""); bad[$0] = 1; next }
    /^ *--- / { left = 0; next }
    /^ +[A-Za-z0-9_]+_test\.go:[0-9]+: / { n[cur]++; left = 4; if (n[cur] <= 6) msg[cur] = msg[cur] $0 "\n"; next }
    left > 0 { left--; if (n[cur] <= 6) msg[cur] = msg[cur] $0 "\n" }
    END { for (t in bad) if (t in msg) printf "-- %s\n%s", t, msg[t] }
  ' "$log" | cut -c1-300
fi
echo "testbed: $passed passed, $failed failed, $skipped skipped"
exit "$status"
