#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# ensure-go.sh - make Go 1.26 available; source it (". scripts/ensure-go.sh").
# Uses an installed Go >= 1.21 (e.g. /usr/local/go) and lets it fetch the
# 1.26 toolchain through the Go module proxy (GOTOOLCHAIN) when it is older.
# A fresh Debian 12 only ships Go 1.19, which cannot do that, so golang-1.23
# comes from bookworm-backports first.
GO_WANT=go1.26.8
export PATH="/usr/local/go/bin:$PATH"
_go_minor() { go env GOVERSION 2>/dev/null | sed -n 's/^go1\.\([0-9]*\).*/\1/p'; }
if ! command -v go >/dev/null 2>&1 || [ "$(_go_minor)" -lt 21 ] 2>/dev/null; then
  if [ ! -x /usr/lib/go-1.23/bin/go ]; then
    echo "ensure-go: installing golang-1.23-go from bookworm-backports to bootstrap $GO_WANT" >&2
    if [ ! -f /etc/apt/sources.list.d/xpra-proxy-backports.sources ]; then
      cat > /etc/apt/sources.list.d/xpra-proxy-backports.sources <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    fi
    apt-get -o DPkg::Lock::Timeout=900 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends \
      -t bookworm-backports golang-1.23-go ca-certificates git >/dev/null
  fi
  export PATH="/usr/lib/go-1.23/bin:$PATH"
fi
if [ "$(_go_minor)" -lt 26 ] 2>/dev/null; then
  export GOTOOLCHAIN=$GO_WANT
fi
go version >&2
