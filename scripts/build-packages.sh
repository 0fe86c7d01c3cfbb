#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# build-packages.sh - build the .deb and the .rpm of xpra-proxy into OUTDIR.
#
#   scripts/build-packages.sh [--deb] [--rpm] [--src DIR] OUTDIR
#
# Both packages by default. The sources are the files of DIR (default: this
# checkout) as they are now, committed or not: git's tracked and untracked
# files minus ignored ones, else everything but .git. They become
# OUTDIR/xpra-proxy-VERSION.tar.gz, which both builds start from (the
# .rpm's Source0). Needs: dpkg-buildpackage + debhelper (.deb), rpmbuild
# (.rpm), and Go 1.26 on PATH or in /usr/local/go (see packaging/README.md:
# offline builds need a filled Go module cache).
set -euo pipefail

usage() { echo "usage: $0 [--deb] [--rpm] [--src DIR] OUTDIR" >&2; exit 2; }
deb=0 rpm=0 src=
while [ $# -gt 0 ]; do
  case "$1" in
    --deb) deb=1 ;;
    --rpm) rpm=1 ;;
    --src) [ $# -ge 2 ] || usage; src=$2; shift ;;
    -*) usage ;;
    *) break ;;
  esac
  shift
done
[ $# -eq 1 ] || usage
if [ $deb = 0 ] && [ $rpm = 0 ]; then deb=1 rpm=1; fi
[ -n "$src" ] || src=$(cd "$(dirname "$0")/.." && pwd)
src=$(cd "$src" && pwd)
mkdir -p "$1"
out=$(cd "$1" && pwd)

if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
  export PATH="/usr/local/go/bin:$PATH"
fi

# One version for both: debian/changelog's (the spec must agree; the
# packaging test checks).
version=$(sed -n '1s/^xpra-proxy (\([^)]*\)).*/\1/p' "$src/debian/changelog")
[ -n "$version" ] || { echo "build-packages: no version in debian/changelog" >&2; exit 1; }
name=xpra-proxy-$version

work=$(mktemp -d "${TMPDIR:-/tmp}/xpra-proxy-pkg.XXXXXX")
trap 'rm -rf "$work"' EXIT

# The source tarball.
mkdir "$work/$name"
if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  (cd "$src" && git ls-files -z --cached --others --exclude-standard) |
    (cd "$src" && xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh) |
    tar -C "$src" --null -T - -cf - | tar -C "$work/$name" -xf -
else
  tar -C "$src" --exclude=.git --exclude=./bin --exclude=./_build -cf - . | tar -C "$work/$name" -xf -
fi
tar -C "$work" --sort=name --owner=0 --group=0 --numeric-owner -czf "$out/$name.tar.gz" "$name"
echo "build-packages: $out/$name.tar.gz" >&2

if [ $deb = 1 ]; then
  # dpkg-buildpackage writes next to the source tree: build in a copy.
  mkdir "$work/deb"
  tar -C "$work/deb" -xzf "$out/$name.tar.gz"
  (cd "$work/deb/$name" && dpkg-buildpackage -us -uc -b) >"$work/deb.log" 2>&1 ||
    { tail -n 60 "$work/deb.log" >&2; echo "build-packages: dpkg-buildpackage failed" >&2; exit 1; }
  for f in "$work"/deb/*.deb "$work"/deb/*.ddeb "$work"/deb/*.buildinfo "$work"/deb/*.changes; do
    [ -e "$f" ] && cp "$f" "$out/"
  done
  ls "$out"/xpra-proxy_"$version"_*.deb >&2
fi

if [ $rpm = 1 ]; then
  top="$work/rpmbuild"
  mkdir -p "$top/SOURCES"
  cp "$out/$name.tar.gz" "$top/SOURCES/"
  nodeps=
  # Debian's rpm has an empty package database: BuildRequires cannot be
  # checked there.
  if [ -f /etc/debian_version ]; then nodeps=--nodeps; fi
  rpmbuild -bb $nodeps --define "_topdir $top" "$src/rpm/xpra-proxy.spec" >"$work/rpm.log" 2>&1 ||
    { tail -n 60 "$work/rpm.log" >&2; echo "build-packages: rpmbuild failed" >&2; exit 1; }
  find "$top/RPMS" -name '*.rpm' -exec cp {} "$out/" \;
  ls "$out"/xpra-proxy-"$version"-*.rpm >&2
fi
