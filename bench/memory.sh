#!/usr/bin/env bash
# Resident size of tollgate processes under a fixed, large amount of work,
# sampled from /proc/<pid>/status (VmRSS; VmHWM is the peak):
#   1. authjwt after TOKENS distinct ES256 tokens (1 000 000), each verified
#      once — the verification cache is bounded (cache_size, 10 000 by
#      default), so RSS must level off; the anchor (caddy-security
#      `authorize`) after ANCHOR_TOKENS (200 000) for comparison;
#   2. payproxy after TRADES trades (100 000; half Alipay, half WeChat Pay)
#      created through a real redis-server and a real cmd/paysim.
# CI=true: 50 000 tokens, 20 000 for the anchor, 10 000 trades.
#
#   bench/memory.sh
#   TOKENS=200000 TRADES=20000 ANCHOR_TOKENS=0 bench/memory.sh   # 0 skips
set -euo pipefail
cd "$(dirname "$0")/.."

TOKENS=${TOKENS:-1000000}
ANCHOR_TOKENS=${ANCHOR_TOKENS:-200000}
TRADES=${TRADES:-100000}
CONC=${CONC:-32}
if [ "${CI:-}" = "true" ]; then TOKENS=50000; ANCHOR_TOKENS=20000; TRADES=10000; fi
for tool in redis-server curl python3; do
	command -v "$tool" >/dev/null || { echo "$tool is missing (apt-get install -y redis-server curl python3)" >&2; exit 1; }
done

work=$(mktemp -d)
pids=()
stop() { # pid
	kill "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}
cleanup() { for p in "${pids[@]}"; do stop "$p"; done; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { # port log
	for _ in $(seq 300); do (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
	echo "port $1 did not open; log:" >&2; cat "$2" >&2; return 1
}
global() { printf '{\n\tadmin 127.0.0.1:%s\n\tauto_https off\n\tpersist_config off\n\tlog {\n\t\tlevel ERROR\n\t}\n' "$(free_port)"; }
summary=()
row() { # what, workload, memload output
	local start final
	start=$(sed -n 's/^start rss_kib=\([0-9]*\).*/\1/p' <<<"$3")
	final=$(grep '^final ' <<<"$3")
	summary+=("$(awk -v what="$1" -v load="$2" -v s="$start" '{
		for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
		printf "| %s | %s | %.1f | %.1f | %.1f | %s |", what, load, s / 1024, f["rss_kib"] / 1024, f["hwm_kib"] / 1024, f["per_s"]
	}' <<<"$final")")
}
samples() { # memload output -> "100k: 54 MiB, 200k: …"
	awk '/^requests=/ { split($1, a, "="); split($4, b, "="); printf "%s%d: %.0f", sep, a[2], b[2] / 1024; sep = ", " } END { print " MiB" }' <<<"$1"
}

echo "== building tollgate, paysim, tokengen, memload and the anchor"
go build -o "$work/tollgate" ./cmd/tollgate
go build -o "$work/paysim" ./cmd/paysim
go build -o "$work/tokengen" ./bench/tokengen
go build -o "$work/memload" ./bench/memload
if [ "$ANCHOR_TOKENS" -gt 0 ]; then
	(cd bench/anchor && GONOSUMDB=github.com/greenpau GOFLAGS=-mod=mod go build -o "$work/anchor" .)
fi
echo "== uptime: $(uptime)"
"$work/tokengen" -alg ES256 -key "$work/es.key" -pub "$work/es-pub.pem" -n 1 >"$work/one"

# token_run <binary> <Caddyfile> <port> <n> <label>: start the process,
# send it n distinct ES256 tokens, add its row, stop it; sets $out.
token_run() {
	"$1" run --config "$2" --adapter caddyfile >"$2.log" 2>&1 &
	local pid=$!
	pids+=("$pid")
	wait_port "$3" "$2.log"
	echo "== $5: $4 distinct ES256 tokens, $CONC concurrent, pid $pid"
	out=$("$work/tokengen" -alg ES256 -key "$work/es.key" -n "$4" |
		"$work/memload" -mode tokens -url "http://127.0.0.1:$3/" -c "$CONC" -pid "$pid" -every $(($4 / 10)))
	echo "$out"
	row "$5" "$4 distinct ES256 tokens verified" "$out"
	stop "$pid"
}

# 1. authjwt, ES256, default cache.
port=$(free_port)
{ global; printf '}\nhttp://127.0.0.1:%s {\n\tauthjwt {\n\t\tkey %s bench\n\t\tissuer https://auth.example\n\t\taudience gateway\n\t}\n\trespond "ok" 200\n}\n' "$port" "$work/es-pub.pem"; } >"$work/authjwt.Caddyfile"
if [ "$TOKENS" -gt 0 ]; then
	token_run "$work/tollgate" "$work/authjwt.Caddyfile" "$port" "$TOKENS" "tollgate authjwt (cache_size 10000)"
	tok_samples=$(samples "$out")
fi

# 1b. the anchor, same key type.
if [ "$ANCHOR_TOKENS" -gt 0 ]; then
	port=$(free_port)
	{
		global
		printf '\tsecurity {\n\t\tauthorization policy bench {\n\t\t\tcrypto key bench verify from file %s\n\t\t\tset token sources header\n\t\t\tvalidate bearer header\n\t\t\tdisable auth redirect\n\t\t\tallow roles courier\n\t\t}\n\t}\n}\n' "$work/es-pub.pem"
		printf 'http://127.0.0.1:%s {\n\troute {\n\t\tauthorize with bench\n\t\trespond "ok" 200\n\t}\n}\n' "$port"
	} >"$work/anchor.Caddyfile"
	token_run "$work/anchor" "$work/anchor.Caddyfile" "$port" "$ANCHOR_TOKENS" "caddy-security authorize (anchor)"
	anchor_samples=$(samples "$out")
fi

# 2. payproxy: redis-server, paysim, tollgate.
if [ "$TRADES" -gt 0 ]; then
rport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" --logfile "$work/redis.log" &
pids+=($!)
sport=$(free_port)
"$work/paysim" -listen "127.0.0.1:$sport" -keys "$work/paysim-keys" >"$work/paysim.log" 2>&1 &
spid=$!; pids+=("$spid")
wait_port "$rport" "$work/redis.log"
wait_port "$sport" "$work/paysim.log"
for _ in $(seq 300); do [ -s "$work/paysim-keys/paysim.env" ] && break; sleep 0.1; done
# shellcheck disable=SC1091
. "$work/paysim-keys/paysim.env"
port=$(free_port)
{
	global
	cat <<CADDY
}
http://127.0.0.1:$port {
	payproxy /pay/* {
		redis redis://127.0.0.1:$rport/0
		prefix /pay
		alipay {
			app_id $ALIPAY_APP_ID
			private_key $ALIPAY_PRIVATE_KEY_FILE
			alipay_public_key $ALIPAY_PUBLIC_KEY_FILE
			gateway $ALIPAY_GATEWAY
			notify_url http://127.0.0.1:$port/pay/notify/alipay
		}
		wechat {
			mch_id $WECHAT_MCH_ID
			app_id $WECHAT_APP_ID
			serial_no $WECHAT_SERIAL_NO
			private_key $WECHAT_PRIVATE_KEY_FILE
			apiv3_key $WECHAT_APIV3_KEY
			platform_public_key $WECHAT_PLATFORM_PUBLIC_KEY_FILE
			platform_public_key_id $WECHAT_PLATFORM_PUBLIC_KEY_ID
			base_url $WECHAT_BASE_URL
			notify_url http://127.0.0.1:$port/pay/notify/wechat
		}
	}
}
CADDY
} >"$work/payproxy.Caddyfile"
"$work/tollgate" run --config "$work/payproxy.Caddyfile" --adapter caddyfile >"$work/payproxy.log" 2>&1 &
tpid=$!; pids+=("$tpid")
wait_port "$port" "$work/payproxy.log"
echo "== payproxy: $TRADES trades, $CONC concurrent, tollgate pid $tpid, redis :$rport, paysim :$sport"
out=$("$work/memload" -mode trades -url "http://127.0.0.1:$port/pay/trades" -n "$TRADES" -c "$CONC" -pid "$tpid" -every $((TRADES / 10)))
echo "$out"
row "tollgate payproxy" "$TRADES trades created (Alipay + WeChat Pay, paysim, redis-server)" "$out"
trade_samples=$(samples "$out")
keys=$(redis-cli -p "$rport" dbsize)
echo "redis keys after the trades: $keys; redis used_memory: $(redis-cli -p "$rport" info memory | sed -n 's/^used_memory_human:\(.*\)\r$/\1/p')"
echo "paysim RSS: $(awk '/VmRSS/ {printf "%.1f MiB", $2 / 1024}' "/proc/$spid/status")"
fi
echo "== uptime: $(uptime)"

echo
echo "<!-- summary: memory -->"
echo "Resident size (MiB, VmRSS from /proc/<pid>/status; peak = VmHWM)"
echo
echo "| process | work | RSS before | RSS after | peak | req/s |"
echo "|---|---|---:|---:|---:|---:|"
printf '%s\n' "${summary[@]}"
echo
if [ -n "${tok_samples:-}" ]; then echo "authjwt RSS along the way: $tok_samples."; fi
if [ -n "${anchor_samples:-}" ]; then echo "anchor RSS along the way: $anchor_samples."; fi
if [ -n "${trade_samples:-}" ]; then echo "payproxy RSS along the way: $trade_samples."; fi
