#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# ensure-xpra6.sh - a real xpra 6.5.3 client and server for the tests, built
# from ../shared/lab/xpra6 into $XPRA6_PREFIX (default /opt/xpra6) next to
# Debian's 3.1.3. About 8 minutes on 2 cores the first time on a machine;
# a prefix that already answers 6.5.3 is kept (seconds).
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=${XPRA6_PREFIX:-/opt/xpra6}
shared=${XPRA_PROXY_SHARED:-$(cd .. && pwd)/shared}
kit=$shared/lab/xpra6
if [ ! -f "$kit/build-xpra6.sh" ]; then
  echo "ensure-xpra6: $kit/build-xpra6.sh not found (../shared must be beside the checkout)" >&2
  exit 1
fi
if "$prefix/bin/xpra" --version 2>/dev/null | grep -qx 'xpra v6.5.3'; then
  echo "ensure-xpra6: xpra 6.5.3 in $prefix (built before)"
else
  start=$(date +%s)
  echo "ensure-xpra6: building xpra 6.5.3 into $prefix (about 8 minutes on 2 cores; log $prefix/.build/build.log)"
  bash "$kit/build-xpra6.sh" "$kit/xpra-6.5.3.tar.gz" "$prefix"
  echo "ensure-xpra6: built in $(( $(date +%s) - start )) s"
fi

# The kit's one-file fix without which 6.5.3's --video-encoders=remote:
# cannot load (the e2e remote encoder test needs it). Applied once: a
# reverse dry run that succeeds means it is in already.
site=$(echo "$prefix"/lib/python3*/site-packages)
for p in "$kit"/patches/*.patch; do
  [ -f "$p" ] || continue
  if patch -d "$site" -p1 -R --dry-run -s -f <"$p" >/dev/null 2>&1; then
    echo "ensure-xpra6: $(basename "$p") applied before"
  else
    patch -d "$site" -p1 -s -f <"$p"
    echo "ensure-xpra6: applied $(basename "$p")"
  fi
done
