#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# install-deps.sh - the Debian 12 packages the tests need, as root. Real peers:
# xpra 3.1.3 with Xvfb and an X client to draw, python3-rencode and python3-lz4
# so tests can cross-check our codecs against the libraries xpra itself uses;
# prometheus for promtool, which checks the metrics endpoint's output;
# slapd and ldap-utils for the throwaway OpenLDAP directory of e2e/TestLDAP;
# haproxy, the load balancer in front of two proxies (PROXY protocol);
# postgresql for the throwaway clusters of the shared-directory tests.
# Does nothing when everything is already installed.
set -euo pipefail
PKGS="xpra xvfb xauth x11-apps xterm python3-gi-cairo python3-pil python3-lz4
python3-cryptography python3-netifaces python3-setproctitle python3-xdg
python3-pyinotify python3-rencode ca-certificates git systemd
ffmpeg gcc libc6-dev libffmpeg-nvenc-dev libturbojpeg0-dev libx264-dev libyuv-dev
chromium
libpam0g-dev curl openssl
debhelper lintian rpm rpm2cpio cpio rpmlint patch
prometheus slapd ldap-utils haproxy postgresql"
# --demo: only what scripts/demo.sh needs (a real session, the supervisor's
# cgo build, the certificate and the HTML5 check), not the tests' tools.
if [ "${1:-}" = --demo ]; then
  PKGS="xpra xvfb xauth x11-apps ca-certificates openssl curl gcc libc6-dev"
fi
missing=()
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=900 update -q >/dev/null
apt-get -o DPkg::Lock::Timeout=900 install -y -q --no-install-recommends "${missing[@]}" >/dev/null
