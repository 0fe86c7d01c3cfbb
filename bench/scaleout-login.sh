#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# scaleout-login.sh - login latency of the scale-out setup (issue 16: Debian's
# HAProxy with send-proxy-v2 in front of two proxies whose users are in a
# shared PostgreSQL) against the single host's (one proxy, users in sqlite),
# in one run on this machine, for BENCHMARKS.md. As root, Debian 12, loopback
# only. Every path gets the same real challenge logins, interleaved round
# robin (the lab's hello_rtt.py --mode info: connect, hello, answer the hmac
# challenge, stop the clock at the proxy's hello, which an info request gets
# once authenticated; no relay, no xpra server):
#   sqlite direct            the single-host figure
#   sqlite via HAProxy       one proxy behind HAProxy (HAProxy's own cost)
#   postgresql direct        one proxy on the shared directory (the database's)
#   postgresql via HAProxy   two proxies on it, behind HAProxy (round robin)
# The PostgreSQL is a throwaway cluster of Debian's postgresql package with
# its default (durable) settings, on a port and in a directory of the run's.
# Usage: bash bench/scaleout-login.sh [ROUNDS]   (default 50)
#   OUR_BIN=DIR     the proxy already built in DIR (xpra-proxy and its
#                   workers), not one built from this checkout
#   BIN_COMMIT=REV  with OUR_BIN: the commit it was built at, for the output
#   BENCH_PORT=N    ports N..N+7 (default 14680)
#   NO_PG=1         the sqlite paths only
#   CSV=FILE        keep every sample (target,i,ms)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH
ROUNDS=${1:-50}
LAB=${LAB:-$(cd ../shared/lab/peers && pwd)}; TOOLS=$LAB/tools
P=${BENCH_PORT:-14680}
SQ=$P SQHA=$((P + 1)) PGDIRECT=$((P + 2)) PGA=$((P + 3)) PGB=$((P + 4)) FRONT_SQ=$((P + 5)) FRONT_PG=$((P + 6)) PGPORT=$((P + 7))
PY=/usr/bin/python3
U=xprablogin  # the account the users' rows map to (a system user: min-uid is lowered to it;
              # not proxy-compare.sh's xprabench, a login account its xpra server needs)
[ "$(id -u)" = 0 ] || { echo "scaleout-login: run as root" >&2; exit 1; }
haproxy=$(command -v haproxy) || { echo "scaleout-login: needs Debian's haproxy" >&2; exit 1; }
. scripts/ensure-go.sh >/dev/null 2>&1
if [ -n "${OUR_BIN:-}" ]; then
  our_bin=$(cd "$OUR_BIN" && pwd)
else
  mkdir -p bin && chmod 755 bin
  bash scripts/build-bin.sh bin
  our_bin=$(pwd)/bin
fi
id xpra-proxy >/dev/null 2>&1 || useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin xpra-proxy
id "$U" >/dev/null 2>&1 || useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$U"
uid=$(id -u "$U") gid=$(id -g "$U")

work=$(mktemp -d /tmp/scaleout-login.XXXXXX); chmod 755 "$work"
pids=()
pgbin=
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  [ -n "$pgbin" ] && runuser -u postgres -- "$pgbin/pg_ctl" -D "$work/pg/data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# proxy NAME PORT ARGS...: one of our proxies on 127.0.0.1:PORT, with a run
# directory and :proxy control socket of its own.
proxy() {
  local name=$1 port=$2; shift 2
  mkdir -p "$work/$name"
  "$our_bin/xpra-proxy" --bind-tcp=127.0.0.1:$port --run-dir="$work/$name/run" \
    --control-socket="$work/$name/$(hostname)-proxy" --per-source-penalty=0s --min-uid="$uid" "$@" 2>"$work/$name.log" &
  pids+=($!)
}
# listening PORT...: wait up to 15 s for each port to accept.
listening() {
  for port in "$@"; do
    for _ in $(seq 150); do
      (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && continue 2
      sleep 0.1
    done
    echo "scaleout-login: nothing listens on $port; logs:" >&2; tail -n 20 "$work"/*.log >&2; exit 1
  done
}

echo "== users"
db=$work/users.sdb
"$our_bin/xpra-proxy" auth sqlite "$db" create
"$our_bin/xpra-proxy" auth sqlite "$db" add bench pw "$uid" "$gid"
chmod 600 "$db"
proxy sqlite $SQ "--tcp-auth=sqlite,filename=$db"
proxy sqlite-ha $SQHA "--tcp-auth=sqlite,filename=$db" --proxy-protocol-from=127.0.0.1/32
targets=(sqlite-direct="tcp://bench:pw@127.0.0.1:$SQ/" sqlite-via-haproxy="tcp://bench:pw@127.0.0.1:$FRONT_SQ/")
ports=($SQ $SQHA)

pg_backends=""
if [ -z "${NO_PG:-}" ]; then
  pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  [ -x "$pgbin/initdb" ] || { echo "scaleout-login: needs Debian's postgresql (or NO_PG=1)" >&2; exit 1; }
  echo "== PostgreSQL ($pgbin, port $PGPORT)"
  pgpw=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
  mkdir "$work/pg" && chown postgres: "$work/pg"
  (umask 077; echo "$pgpw" >"$work/pg/pw") && chown postgres: "$work/pg/pw"
  runuser -u postgres -- "$pgbin/initdb" -D "$work/pg/data" -U xpraproxy --pwfile="$work/pg/pw" -A scram-sha-256 -E UTF8 >/dev/null
  rm "$work/pg/pw"
  printf "listen_addresses = '127.0.0.1'\nport = %d\nunix_socket_directories = '%s'\n" "$PGPORT" "$work/pg" >>"$work/pg/data/postgresql.conf"
  runuser -u postgres -- "$pgbin/pg_ctl" -D "$work/pg/data" -l "$work/pg/postgres.log" -w start >/dev/null
  PGPASSWORD=$pgpw runuser -u postgres -- "$pgbin/createdb" -h 127.0.0.1 -p "$PGPORT" -U xpraproxy xpraproxy
  uri=$work/pg.uri   # root-only, as directory-uri-file wants
  (umask 077; echo "postgres://xpraproxy:$pgpw@127.0.0.1:$PGPORT/xpraproxy?sslmode=disable" >"$uri")
  "$our_bin/xpra-proxy" auth postgresql "$uri" add bench pw "$uid" "$gid"
  pg=(--directory-uri-file="$uri" --tcp-auth=postgresql)
  proxy pg-direct $PGDIRECT "${pg[@]}" --proxy-name=bench-direct
  proxy pg-a $PGA "${pg[@]}" --proxy-name=bench-a --proxy-protocol-from=127.0.0.1/32
  proxy pg-b $PGB "${pg[@]}" --proxy-name=bench-b --proxy-protocol-from=127.0.0.1/32
  pg_backends="
backend pg
    balance roundrobin
    server a 127.0.0.1:$PGA send-proxy-v2
    server b 127.0.0.1:$PGB send-proxy-v2

frontend pg
    bind 127.0.0.1:$FRONT_PG
    default_backend pg"
  targets+=(postgresql-direct="tcp://bench:pw@127.0.0.1:$PGDIRECT/" postgresql-via-haproxy="tcp://bench:pw@127.0.0.1:$FRONT_PG/")
  ports+=($PGDIRECT $PGA $PGB)
fi

echo "== HAProxy ($("$haproxy" -v | head -n 1))"
cat >"$work/haproxy.cfg" <<EOF
global
    maxconn 200

defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s

backend sqlite
    server a 127.0.0.1:$SQHA send-proxy-v2

frontend sqlite
    bind 127.0.0.1:$FRONT_SQ
    default_backend sqlite
$pg_backends
EOF
"$haproxy" -c -q -f "$work/haproxy.cfg"
"$haproxy" -db -f "$work/haproxy.cfg" 2>"$work/haproxy.log" &
pids+=($!)
listening "${ports[@]}" $FRONT_SQ
[ -n "$pg_backends" ] && listening $FRONT_PG
# One login on each path first: connections, caches and the schema warm.
$PY "$TOOLS/hello_rtt.py" -n 2 --mode info "${targets[@]}" >/dev/null

echo; echo "== challenge logins: connect until the proxy's hello after the challenge ($ROUNDS rounds, interleaved)"
if [ -n "${OUR_BIN:-}" ]; then built="the proxy in $OUR_BIN${BIN_COMMIT:+ (built at $BIN_COMMIT)}"
else built="commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ':!BENCHMARKS.md' || echo '+changes')"; fi
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); $built"
$PY "$TOOLS/hello_rtt.py" -n "$ROUNDS" --mode info ${CSV:+--csv "$CSV"} "${targets[@]}"
# Every login was a proxy's: each one's log counts them, and those behind
# HAProxy took its PROXY header (via= names HAProxy's address).
for name in sqlite sqlite-ha ${pg_backends:+pg-direct pg-a pg-b}; do
  printf '%-10s %4d logins authenticated, %d of them via a PROXY header\n' "$name" \
    "$(grep -c 'msg=authenticated' "$work/$name.log" || true)" "$(grep -c 'msg=authenticated .*via=' "$work/$name.log" || true)"
done
