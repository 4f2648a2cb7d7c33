#!/usr/bin/env bash
# payproxy's Redis after a million orders of a delivery platform's mix,
# before and after retention (issue 17): BenchmarkMillionOrders
# (payproxy/footprint_bench_test.go) drives payproxy's own store scripts
# in-process against a Redis of its own, configured as in production
# (appendonly, noeviction), and prints used_memory at each stage.
#
#   bench/million.sh                 # 1 000 000 orders (about 15 minutes here)
#   ORDERS=100000 bench/million.sh
#   WINDOW_ONLY=1 bench/million.sh   # stops at the window's cost (no archival: about half the time)
#   CI=true bench/million.sh         # 5 000 orders
set -euo pipefail
cd "$(dirname "$0")/.."
ORDERS=${ORDERS:-1000000}
if [ "${CI:-}" = "true" ]; then ORDERS=5000; fi
command -v redis-server >/dev/null || { echo "redis-server is missing: apt-get install -y redis-server" >&2; exit 1; }

. bench/lib.sh # work, pids, cleanup at exit, freeport, waitport

RPORT=$(freeport)
redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly yes --appendfsync everysec \
  --maxmemory-policy noeviction --dir "$work" --logfile "$work/redis.log" &
pids+=($!)
waitport "$RPORT"

TOLLGATE_BENCH_REDIS="redis://127.0.0.1:$RPORT/0" TOLLGATE_BENCH_ORDERS="$ORDERS" TOLLGATE_BENCH_WINDOW_ONLY="${WINDOW_ONLY:-}" \
  go test -run '^$' -bench '^BenchmarkMillionOrders$' -benchtime 1x -timeout 3h ./payproxy/ |
  grep -v '^\(goos\|goarch\|pkg\|cpu\|PASS\|ok \)'
