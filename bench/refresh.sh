#!/usr/bin/env bash
# Refreshes per second through a real tollgate and a real redis-server, for
# ES256 and RS256 signing keys, next to the signature-only limit measured by
# the Go benchmark in the same run (BenchmarkTwoSignatures: the access and
# refresh tokens signed on every core). Target: ratio >= 0.70.
# CI=true shortens the runs. Usage: bench/refresh.sh [concurrency]
set -euo pipefail
cd "$(dirname "$0")/.."
CONC=${1:-16}
DUR=10s; BENCHTIME=3s
if [ "${CI:-}" = "true" ]; then DUR=3s; BENCHTIME=1s; fi

. bench/lib.sh # work, pids, cleanup at exit, freeport, waitport

go build -o "$work/tollgate" ./cmd/tollgate
go build -o "$work/refreshload" ./bench/refreshload

RPORT=$(freeport)
redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" --logfile "$work/redis.log" &
pids+=($!)
waitport "$RPORT"

openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/ES256.pem" 2>/dev/null
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/RS256.pem" 2>/dev/null

echo "concurrency=$CONC duration=$DUR cores=$(nproc)"
for alg in ES256 RS256; do
	PORT=$(freeport); APORT=$(freeport)
	cat >"$work/Caddyfile" <<CADDY
{
	admin 127.0.0.1:$APORT
	auto_https off
	persist_config off
	log {
		level ERROR
	}
}
http://127.0.0.1:$PORT {
	jwt_refresh {
		redis redis://127.0.0.1:$RPORT/0
		signing_key $work/$alg.pem
		login_path /login
		user_claim userId
	}
	handle /login {
		header X-Auth-Subject "{http.request.header.X-User}"
		respond \`{"nickname":"bench"}\` 200
	}
}
CADDY
	"$work/tollgate" run --config "$work/Caddyfile" --adapter caddyfile >"$work/tollgate-$alg.log" 2>&1 &
	tpid=$!; pids+=($tpid)
	waitport "$PORT" || { cat "$work/tollgate-$alg.log" >&2; exit 1; }
	load=$("$work/refreshload" -url "http://127.0.0.1:$PORT" -c "$CONC" -d "$DUR")
	kill "$tpid"; wait "$tpid" 2>/dev/null || true
	rps=$(sed -n 's/.*refreshes_per_s=\([0-9.]*\).*/\1/p' <<<"$load")
	ns=$(go test -run '^$' -bench "BenchmarkTwoSignatures/$alg\$" -benchtime "$BENCHTIME" ./refresh/ 2>/dev/null |
		awk '/BenchmarkTwoSignatures/ {print $3}')
	limit=$(awk -v ns="$ns" 'BEGIN { printf "%.1f", 1e9 / ns }')
	ratio=$(awk -v r="$rps" -v l="$limit" 'BEGIN { printf "%.2f", r / l }')
	echo "$alg: endpoint $load"
	echo "$alg: signature-only limit ${limit}/s (${ns} ns per two signatures, all cores); ratio ${ratio}"
done
