#!/usr/bin/env bash
# Load test of authjwt: one tollgate process, two sites on loopback — one
# answering with `respond` alone, one with authjwt (RS256, 2048-bit key) in
# front of the same `respond` — hit by wrk with the same token header.
# Prints both req/s and the ratio (target: >= 0.90 at 64 connections).
#
#   bench/authjwt.sh                 # 10s per run
#   DURATION=30s bench/authjwt.sh    # longer runs; CI=true shortens to 3s
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
[ "${CI:-}" = "true" ] && DURATION=${CI_DURATION:-3s}
THREADS=${THREADS:-2}
CONNS=${CONNS:-64}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
command -v openssl >/dev/null || { echo "openssl is missing" >&2; exit 1; }

work=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

go build -o "$work/tollgate" ./cmd/tollgate

# An RS256 token signed with a fresh 2048-bit key, valid for an hour.
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/key.pem" 2>/dev/null
openssl pkey -in "$work/key.pem" -pubout -out "$work/pub.pem"
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
now=$(date +%s)
header=$(printf '{"alg":"RS256","typ":"JWT","kid":"bench"}' | b64url)
payload=$(printf '{"sub":"user-42","iss":"https://auth.example","aud":"gateway","iat":%d,"exp":%d,"roles":["courier"]}' "$now" $((now + 3600)) | b64url)
sig=$(printf '%s.%s' "$header" "$payload" | openssl dgst -sha256 -sign "$work/key.pem" -binary | b64url)
token="$header.$payload.$sig"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
admin=$(free_port); plain=$(free_port); auth=$(free_port)
cat > "$work/Caddyfile" <<CADDY
{
	admin 127.0.0.1:$admin
	auto_https off
	persist_config off
	log {
		level ERROR
	}
}
http://127.0.0.1:$plain {
	respond "ok" 200
}
http://127.0.0.1:$auth {
	authjwt {
		key $work/pub.pem bench
		issuer https://auth.example
		audience gateway
	}
	respond "ok {http.auth.user.id}" 200
}
CADDY
"$work/tollgate" run --config "$work/Caddyfile" --adapter caddyfile >"$work/tollgate.log" 2>&1 &
pid=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$plain/" >/dev/null 2>&1 && break; sleep 0.1; done

check=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "http://127.0.0.1:$auth/")
[ "$check" = 200 ] || { echo "authjwt site answered $check to the bench token" >&2; cat "$work/tollgate.log" >&2; exit 1; }
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$auth/")" = 401 ] || { echo "authjwt site did not refuse a request without token" >&2; exit 1; }

run() { # url -> req/s
	wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" -H "Authorization: Bearer $token" "$1" |
		awk '/Requests\/sec/ {print $2}'
}
# Warm both paths (connections, the token cache), then measure.
wrk -t1 -c8 -d1s -H "Authorization: Bearer $token" "http://127.0.0.1:$plain/" >/dev/null
wrk -t1 -c8 -d1s -H "Authorization: Bearer $token" "http://127.0.0.1:$auth/" >/dev/null
plain_rps=$(run "http://127.0.0.1:$plain/")
auth_rps=$(run "http://127.0.0.1:$auth/")

echo "wrk -t$THREADS -c$CONNS -d$DURATION (same Authorization header on both)"
echo "respond only:          $plain_rps req/s"
echo "authjwt + respond:     $auth_rps req/s"
awk -v a="$auth_rps" -v p="$plain_rps" 'BEGIN { printf "ratio authjwt/plain:   %.3f (target >= 0.90)\n", a / p }'
