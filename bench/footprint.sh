#!/usr/bin/env bash
# payproxy's Redis footprint per order in each life stage (see
# bench/footprint): created; paid with its events delivered; paid then
# fully refunded; closed unpaid (each compacted, inside its retention);
# then what is left after retention. STEADY=<duration> instead runs
# orders continuously that long under RETENTION and prints the memory
# every 10 s (flat past the first retention). Redis as in production
# (appendonly, noeviction), a fresh one per run so that every key counts.
#
#   bench/footprint.sh           # 2000 orders per stage
#   N=10000 bench/footprint.sh
#   STEADY=5m RETENTION=1m bench/footprint.sh
#   CI=true bench/footprint.sh   # 100 orders per stage
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-2000}; CONC=${CONC:-16}; STEADY=${STEADY:-0}; RETENTION=${RETENTION:-1m}
if [ "${CI:-}" = "true" ]; then N=100; fi
command -v redis-server >/dev/null || { echo "redis-server is missing: apt-get install -y redis-server" >&2; exit 1; }

. bench/lib.sh # work, pids, cleanup at exit, freeport, waitport

go build -o "$work/tollgate" ./cmd/tollgate
go build -o "$work/footprint" ./bench/footprint

RPORT=$(freeport)
redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly yes --appendfsync everysec \
  --maxmemory-policy noeviction --dir "$work" --logfile "$work/redis.log" &
pids+=($!)
waitport "$RPORT"

"$work/footprint" -bin "$work/tollgate" -redis "redis://127.0.0.1:$RPORT/0" -n "$N" -c "$CONC" \
  -steady "$STEADY" -retention "$RETENTION"
