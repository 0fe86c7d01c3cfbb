#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# build-bin.sh OUTDIR [PACKAGE...] - build the proxy's programs into OUTDIR
# the way the packages do (debian/rules, rpm/xpra-proxy.spec): the
# supervisor and xpra-probe with cgo (glibc's NSS for users and hosts), the
# workers it execs per connection (relay, pre-auth) without, so that no
# relay maps libc and the loader: 1.5 MB less RSS each and a faster exec
# (BENCHMARKS.md). Extra packages are built with cgo, as the supervisor.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: build-bin.sh OUTDIR [PACKAGE...]}
shift
go build -o "$out/" ./cmd/xpra-proxy ./cmd/xpra-probe "$@"
CGO_ENABLED=0 go build -o "$out/" ./cmd/xpra-proxy-worker ./cmd/xpra-proxy-preauth ./cmd/xpra-proxy-control ./cmd/xpra-proxy-metrics ./cmd/xpra-proxy-ldap ./cmd/xpra-proxy-directory
