#!/usr/bin/env bash
# payproxy's Redis footprint per order in each life stage (see
# bench/footprint): created; paid with its events delivered; paid then
# fully refunded; closed unpaid. Redis as in production (appendonly,
# noeviction), a fresh one per run so that every key counts.
#
#   bench/footprint.sh           # 2000 orders per stage
#   N=10000 bench/footprint.sh
#   CI=true bench/footprint.sh   # 100 orders per stage
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-2000}; CONC=${CONC:-16}
if [ "${CI:-}" = "true" ]; then N=100; fi
command -v redis-server >/dev/null || { echo "redis-server is missing: apt-get install -y redis-server" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
waitport() { for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 not up" >&2; return 1; }

go build -o "$work/tollgate" ./cmd/tollgate
go build -o "$work/footprint" ./bench/footprint

RPORT=$(freeport)
redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly yes --appendfsync everysec \
  --maxmemory-policy noeviction --dir "$work" --logfile "$work/redis.log" &
pids+=($!)
waitport "$RPORT"

"$work/footprint" -bin "$work/tollgate" -redis "redis://127.0.0.1:$RPORT/0" -n "$N" -c "$CONC"
