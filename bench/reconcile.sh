#!/usr/bin/env bash
# Reconciliation (issue 13): a bill of LINES lines (1 000 000) per channel
# against as many records in Redis, through a tollgate process — time and
# the process's peak RSS (target: under 60 s and 200 MiB per channel) —
# and the Redis memory of the per-day index per entry (see
# bench/reconcileload). Redis runs with appendonly no here: the records
# are written by the driver, and only reads and the run's temporary keys
# are measured. CI=true: 100 000 lines.
#
#   bench/reconcile.sh
#   LINES=200000 bench/reconcile.sh
set -euo pipefail
cd "$(dirname "$0")/.."
LINES=${LINES:-1000000}
if [ "${CI:-}" = "true" ]; then LINES=100000; fi
command -v redis-server >/dev/null || { echo "redis-server is missing: apt-get install -y redis-server" >&2; exit 1; }

. bench/lib.sh # work, pids, cleanup at exit, freeport, waitport

go build -o "$work/tollgate" ./cmd/tollgate
go build -o "$work/reconcileload" ./bench/reconcileload

RPORT=$(freeport)
redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no \
  --maxmemory-policy noeviction --dir "$work" --logfile "$work/redis.log" &
pids+=($!)
waitport "$RPORT"

"$work/reconcileload" -bin "$work/tollgate" -redis "redis://127.0.0.1:$RPORT/0" -lines "$LINES"
