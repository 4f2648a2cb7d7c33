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

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
waitport() { for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 not up" >&2; return 1; }

go build -o "$work/tollgate" ./cmd/tollgate
go build -o "$work/reconcileload" ./bench/reconcileload

RPORT=$(freeport)
redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no \
  --maxmemory-policy noeviction --dir "$work" --logfile "$work/redis.log" &
pids+=($!)
waitport "$RPORT"

"$work/reconcileload" -bin "$work/tollgate" -redis "redis://127.0.0.1:$RPORT/0" -lines "$LINES"
