#!/usr/bin/env bash
# payproxy speed, in one run (see bench/payproxyload):
#   - trades/s for distinct orders through a tollgate process (payproxy:
#     lock, Redis, bookkeeping, provider call) vs the same SDK calls made
#     directly against the paysim engine, per channel, with the ratio
#     (target >= 0.80) and payproxy's overhead per trade at the median
#     (target < 2 ms);
#   - the duplicate storm: p50/p99 latency of 100 concurrent creates of one
#     order, against 100 concurrent creates of distinct orders in the same
#     run (and the provider's creation count per storm: must be 1).
# Redis runs with appendonly yes, appendfsync everysec (the recommended
# production setting; "always" adds an fsync per write).
#
#   bench/payproxy.sh              # 2000 trades per channel and mode, 16 clients
#   N=5000 CONC=32 bench/payproxy.sh
#   CI=true bench/payproxy.sh      # 300 trades, 2 storms
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-2000}; CONC=${CONC:-16}; STORMS=${STORMS:-5}
if [ "${CI:-}" = "true" ]; then N=300; STORMS=2; fi
command -v redis-server >/dev/null || { echo "redis-server is missing: apt-get install -y redis-server" >&2; exit 1; }

. bench/lib.sh # work, pids, cleanup at exit, freeport, waitport

go build -o "$work/tollgate" ./cmd/tollgate
go build -o "$work/payproxyload" ./bench/payproxyload

RPORT=$(freeport)
redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly yes --appendfsync everysec \
  --maxmemory-policy noeviction --dir "$work" --logfile "$work/redis.log" &
pids+=($!)
waitport "$RPORT"

"$work/payproxyload" -bin "$work/tollgate" -redis "redis://127.0.0.1:$RPORT/0" -n "$N" -c "$CONC" -storms "$STORMS"
