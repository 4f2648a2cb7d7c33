#!/usr/bin/env bash
# make demo: builds tollgate, starts redis-server, paysim and a stand-in
# backend in a temporary folder, runs caddyfile.example, and walks through
# the whole mission. KEEP=1 leaves everything running (Ctrl-C to stop) so a
# person can click through a payment on paysim's page. Every port can be
# moved with its *_PORT variable (make demo CUSTOMER_PORT=18081); a port in
# use stops the demo before anything is built or started.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

CUSTOMER_PORT=${CUSTOMER_PORT:-8081}
COURIER_PORT=${COURIER_PORT:-8082}
INTERNAL_PORT=${INTERNAL_PORT:-8083}
PAYSIM_PORT=${PAYSIM_PORT:-8090}
BACKEND_PORT=${BACKEND_PORT:-9000}
REDIS_PORT=${REDIS_PORT:-6390}
ADMIN_PORT=${ADMIN_PORT:-2999}
KEEP=${KEEP:-}
DEMO_OUT=${DEMO_OUT:-$ROOT/bin} # where the walkthrough writes the QR codes

say() { printf '\033[1m%s\033[0m\n' "$*"; }

# preflight: every demo port distinct and free on 127.0.0.1, checked before
# anything is installed, built or started.
in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
preflight() {
	local name port first="" seen=" "
	for name in CUSTOMER_PORT COURIER_PORT INTERNAL_PORT PAYSIM_PORT BACKEND_PORT REDIS_PORT ADMIN_PORT; do
		port=${!name}
		if ! [[ $port =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); then
			echo "✗ $name=$port is not a TCP port number" >&2
		elif [[ $seen == *" $port "* ]]; then
			echo "✗ $name=$port: another demo port already uses $port" >&2
		elif in_use "$port"; then
			echo "✗ port $port ($name) is already in use on 127.0.0.1" >&2
		else
			seen+="$port "
			continue
		fi
		first=${first:-$name}
	done
	[ -z "$first" ] && return
	port=${!first}
	[[ $port =~ ^[0-9]+$ ]] && ((port < 65000)) || port=18000
	for ((port++; port < 65535; port++)); do
		[[ $seen != *" $port "* ]] && ! in_use "$port" && break
	done
	echo "  Choose other ports with the *_PORT variables, e.g.: make demo $first=$port" >&2
	echo "  (now CUSTOMER_PORT=$CUSTOMER_PORT COURIER_PORT=$COURIER_PORT INTERNAL_PORT=$INTERNAL_PORT PAYSIM_PORT=$PAYSIM_PORT BACKEND_PORT=$BACKEND_PORT REDIS_PORT=$REDIS_PORT ADMIN_PORT=$ADMIN_PORT)" >&2
	exit 1
}
preflight

if ! command -v redis-server >/dev/null 2>&1; then
	say "redis-server is missing: installing Debian's redis-server package (apt-get)"
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-demo.XXXXXX")
PIDS=()
cleanup() {
	trap - EXIT INT TERM
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port() { # name port
	for _ in $(seq 1 300); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	echo "✗ $1 did not start on port $2; its log:" >&2
	cat "$WORK/$1.log" >&2 || true
	exit 1
}

say "Building tollgate, paysim and the demo backend…"
mkdir -p bin "$DEMO_OUT"
go build -o bin/tollgate ./cmd/tollgate
go build -o "$WORK/paysim" ./cmd/paysim
go build -o "$WORK/backend" ./demo/backend
go build -o "$WORK/walkthrough" ./demo/walkthrough

say "Starting redis-server :$REDIS_PORT, paysim :$PAYSIM_PORT, backend :$BACKEND_PORT in $WORK"
# Redis with a password, as in production: caddyfile.example gives it with
# the password block, from {env.REDIS_PASSWORD}.
export REDIS_PASSWORD
REDIS_PASSWORD=$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf 'requirepass %s\n' "$REDIS_PASSWORD" >"$WORK/redis.conf"
redis-server "$WORK/redis.conf" --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
"$WORK/paysim" -listen "127.0.0.1:$PAYSIM_PORT" -keys "$WORK/paysim-keys" >"$WORK/paysim.log" 2>&1 &
PIDS+=($!)
wait_port redis "$REDIS_PORT"
wait_port paysim "$PAYSIM_PORT"
for _ in $(seq 1 100); do [ -s "$WORK/paysim-keys/paysim.env" ] && break; sleep 0.1; done
set -a
# shellcheck disable=SC1091
. "$WORK/paysim-keys/paysim.env"
set +a

"$WORK/backend" -genkey "$WORK/jwt"
export WEBHOOK_SECRET
WEBHOOK_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n') # 64 hex digits: at least 32 bytes
"$WORK/backend" -listen "127.0.0.1:$BACKEND_PORT" >"$WORK/backend.log" 2>&1 &
PIDS+=($!)
wait_port backend "$BACKEND_PORT"

# The settings caddyfile.example reads (the list at its top); paysim.env
# above gave the providers' ones, REDIS_PASSWORD and WEBHOOK_SECRET are set.
export TOLLGATE_ADMIN="127.0.0.1:$ADMIN_PORT"
export TOLLGATE_CUSTOMER_SITE="http://127.0.0.1:$CUSTOMER_PORT"
export TOLLGATE_COURIER_SITE="http://127.0.0.1:$COURIER_PORT"
export TOLLGATE_INTERNAL_SITE="http://127.0.0.1:$INTERNAL_PORT"
export TOLLGATE_INTERNAL_BIND=127.0.0.1
export REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
export JWT_SIGNING_KEY_FILE="$WORK/jwt/jwt-signing.pem"
export JWT_PUBLIC_KEY_FILE="$WORK/jwt/jwt-public.pem"
export BACKEND="127.0.0.1:$BACKEND_PORT"
export ORDER_SOURCE="http://127.0.0.1:$BACKEND_PORT/orders/{order_no}"
export WEBHOOK_URL="http://127.0.0.1:$BACKEND_PORT/webhooks/tollgate"
export PAY_NOTIFY_BASE="http://127.0.0.1:$COURIER_PORT/pay/notify"
export REUSE_GRACE=2s

say "Starting tollgate with caddyfile.example"
bin/tollgate run --config caddyfile.example --adapter caddyfile >"$WORK/tollgate.log" 2>&1 &
PIDS+=($!)
wait_port tollgate "$COURIER_PORT"
wait_port tollgate "$CUSTOMER_PORT"
wait_port tollgate "$INTERNAL_PORT"

status=0
"$WORK/walkthrough" -customer "$TOLLGATE_CUSTOMER_SITE" -courier "$TOLLGATE_COURIER_SITE" \
	-internal "$TOLLGATE_INTERNAL_SITE" -service-key "$JWT_SIGNING_KEY_FILE" \
	-paysim "$PAYSIM_URL" -backend "http://$BACKEND" -grace "$REUSE_GRACE" -out "$DEMO_OUT" \
	-admin "http://$TOLLGATE_ADMIN" || status=$?
echo
say "What the backend's webhook receiver printed:"
sed 's/^/  /' "$WORK/backend.log"

if [ -n "$KEEP" ]; then
	say "Everything keeps running. Pay by hand at $PAYSIM_URL/_sim/ ; Ctrl-C stops it all."
	wait
fi
exit "$status"
