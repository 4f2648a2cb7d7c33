#!/usr/bin/env bash
# authjwt against its baseline and its anchor, in one run, on loopback:
#   respond   Caddy `respond` alone (the tollgate binary, no auth)
#   authjwt   tollgate's authjwt in front of the same `respond`
#   anchor    caddy-security v1.1.31 `authorize` in front of `respond`
#             (stock Caddy v2.11.9 + caddy-security, built from bench/anchor)
# for RS256 (2048-bit) and ES256 keys, the same tokens for both gates, and
# two token mixes: "cached" (one token on every request) and "first-seen"
# (wrk's Lua script walks a file of distinct tokens, each sent once).
# ROUNDS rounds, each with fresh processes and the targets in a rotated
# order; the table gives medians over rounds, every figure also as a ratio
# against `respond` measured in the same round with the same wrk script.
#
#   bench/compare.sh                       # 3 rounds, 5 s per wrk run
#   ROUNDS=5 DURATION=10s bench/compare.sh
#   ALGS=RS256 MODES=cached ROUNDS=7 bench/compare.sh   # one cell, more rounds
#   CI=true bench/compare.sh               # 1 round, 2 s, fewer tokens
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
THREADS=${THREADS:-2}
CONNS=${CONNS:-64}
ALGS=${ALGS:-RS256 ES256}
MODES=${MODES:-cached first-seen}
# Distinct tokens per key type: enough that no token is sent twice to one
# process in a first-seen run (RS256 signing is slow to generate).
TOKENS_RS256=${TOKENS_RS256:-70000}
TOKENS_ES256=${TOKENS_ES256:-100000}
if [ "${CI:-}" = "true" ]; then
	ROUNDS=${CI_ROUNDS:-1}; DURATION=${CI_DURATION:-2s}; TOKENS_RS256=3000; TOKENS_ES256=10000
fi
for tool in wrk curl python3; do
	command -v "$tool" >/dev/null || { echo "$tool is missing (apt-get install -y wrk curl python3)" >&2; exit 1; }
done

work=$(mktemp -d)
pids=()
stop_all() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
	pids=()
}
cleanup() { stop_all; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ok() { # url header log
	for _ in $(seq 150); do
		[ "$(curl -s -o /dev/null -w '%{http_code}' -H "$2" "$1")" = 200 ] && return 0
		sleep 0.1
	done
	echo "$1 did not answer 200; log:" >&2; cat "$3" >&2; return 1
}

echo "== building tollgate, tokengen and the anchor (bench/anchor, its own module)"
go build -o "$work/tollgate" ./cmd/tollgate
go build -o "$work/tokengen" ./bench/tokengen
(cd bench/anchor && GONOSUMDB=github.com/greenpau GOFLAGS=-mod=mod go build -o "$work/anchor" .)

for alg in $ALGS; do
	n_var=TOKENS_$alg
	"$work/tokengen" -alg "$alg" -key "$work/$alg.key" -pub "$work/$alg-pub.pem" -n 1 >"$work/$alg.one"
	case " $MODES " in
	*" first-seen "*) "$work/tokengen" -alg "$alg" -key "$work/$alg.key" -n "${!n_var}" >"$work/$alg.tokens" ;;
	*) cp "$work/$alg.one" "$work/$alg.tokens" ;; # no first-seen run: no token file needed
	esac
	echo "== $alg: $(wc -l <"$work/$alg.tokens") distinct tokens, $(head -c 2000 "$work/$alg.one" | wc -c) bytes each"
done

# wrk script for first-seen tokens: thread k of T sends lines k, k+T, k+2T…
cat >"$work/first.lua" <<'LUA'
local n = 0
function setup(thread)
	thread:set("id", n)
	n = n + 1
end
function init(args)
	tokens = {}
	for line in io.lines(args[1]) do tokens[#tokens + 1] = line end
	step = tonumber(args[2])
	i = id + 1 - step
end
function request()
	i = i + step
	if i > #tokens then i = id + 1 end -- wrapped: compare.sh flags the run
	return wrk.format(nil, nil, { Authorization = "Bearer " .. tokens[i] })
end
LUA

start_round() { # writes the Caddyfiles, starts both processes, sets ports
	local alg
	admin1=$(free_port); admin2=$(free_port); p_respond=$(free_port); p_authjwt=$(free_port); p_anchor=$(free_port)
	{
		printf '{\n\tadmin 127.0.0.1:%s\n\tauto_https off\n\tpersist_config off\n\tlog {\n\t\tlevel ERROR\n\t}\n}\n' "$admin1"
		printf 'http://127.0.0.1:%s {\n\trespond "ok" 200\n}\n' "$p_respond"
		printf 'http://127.0.0.1:%s {\n' "$p_authjwt"
		for alg in $ALGS; do
			printf '\thandle /%s {\n\t\tauthjwt {\n\t\t\tkey %s bench\n\t\t\tissuer https://auth.example\n\t\t\taudience gateway\n\t\t\trequire_role courier\n\t\t}\n\t\trespond "ok" 200\n\t}\n' "$alg" "$work/$alg-pub.pem"
		done
		printf '}\n'
	} >"$work/tollgate.Caddyfile"
	{
		printf '{\n\tadmin 127.0.0.1:%s\n\tauto_https off\n\tpersist_config off\n\tlog {\n\t\tlevel ERROR\n\t}\n\tsecurity {\n' "$admin2"
		for alg in $ALGS; do
			printf '\t\tauthorization policy %s {\n\t\t\tcrypto key bench verify from file %s\n\t\t\tset token sources header\n\t\t\tvalidate bearer header\n\t\t\tdisable auth redirect\n\t\t\tallow roles courier\n\t\t}\n' "$alg" "$work/$alg-pub.pem"
		done
		printf '\t}\n}\nhttp://127.0.0.1:%s {\n' "$p_anchor"
		for alg in $ALGS; do
			printf '\troute /%s {\n\t\tauthorize with %s\n\t\trespond "ok" 200\n\t}\n' "$alg" "$alg"
		done
		printf '}\n'
	} >"$work/anchor.Caddyfile"
	"$work/tollgate" run --config "$work/tollgate.Caddyfile" --adapter caddyfile >"$work/tollgate.log" 2>&1 &
	pids+=($!)
	"$work/anchor" run --config "$work/anchor.Caddyfile" --adapter caddyfile >"$work/anchor.log" 2>&1 &
	pids+=($!)
	for alg in $ALGS; do
		local h="Authorization: Bearer $(cat "$work/$alg.one")"
		wait_ok "http://127.0.0.1:$p_respond/" "$h" "$work/tollgate.log"
		wait_ok "http://127.0.0.1:$p_authjwt/$alg" "$h" "$work/tollgate.log"
		wait_ok "http://127.0.0.1:$p_anchor/$alg" "$h" "$work/anchor.log"
		for url in "http://127.0.0.1:$p_authjwt/$alg" "http://127.0.0.1:$p_anchor/$alg"; do
			code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $(head -c 200 "$work/$alg.one")x.y" "$url")
			[ "$code" = 401 ] || { echo "$url accepted a bad token ($code)" >&2; exit 1; }
		done
	done
}

url_of() { # target alg
	case $1 in
	respond) echo "http://127.0.0.1:$p_respond/$2" ;;
	authjwt) echo "http://127.0.0.1:$p_authjwt/$2" ;;
	anchor) echo "http://127.0.0.1:$p_anchor/$2" ;;
	esac
}

records="$work/records"
: >"$records"
measure() { # round alg mode target
	local url out tokens=0
	url=$(url_of "$4" "$2")
	echo "--- round $1 $2 $3 $4: $url"
	if [ "$3" = cached ]; then
		out=$(wrk --latency -t"$THREADS" -c"$CONNS" -d"$DURATION" -H "Authorization: Bearer $(cat "$work/$2.one")" "$url")
	else
		tokens=$(wc -l <"$work/$2.tokens")
		out=$(wrk --latency -t"$THREADS" -c"$CONNS" -d"$DURATION" -s "$work/first.lua" "$url" -- "$work/$2.tokens" "$THREADS")
	fi
	echo "$out"
	# round alg mode target req/s p50_ms p99_ms requests bad_answers wrapped
	awk -v r="$1" -v a="$2" -v m="$3" -v t="$4" -v tokens="$tokens" '
		function ms(v) {
			if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0
			if (v ~ /m$/) return v * 60000; if (v ~ /s$/) return v * 1000; return v
		}
		/^ +50%/ { p50 = ms($2) } /^ +99%/ { p99 = ms($2) }
		/requests in/ { reqs = $1 } /Requests\/sec/ { rps = $2 }
		/Non-2xx or 3xx/ { bad = $NF } /Socket errors/ { bad += 0 }
		END { printf "%s %s %s %s %s %.3f %.3f %d %d %d\n", r, a, m, t, rps, p50, p99, reqs, bad + 0, (tokens > 0 && reqs > tokens) }
	' <<<"$out" >>"$records"
	tail -1 "$records" | awk '$9 > 0 { print "!!! " $9 " answers were not 2xx" > "/dev/stderr"; exit 1 }'
}

echo "== uptime: $(uptime)"
echo "== wrk -t$THREADS -c$CONNS -d$DURATION --latency, $ROUNDS round(s), algs: $ALGS"
targets=(respond authjwt anchor)
for round in $(seq "$ROUNDS"); do
	start_round
	for alg in $ALGS; do
		for mode in $MODES; do
			# Warm connections and the one cached token; no first-seen token is used.
			for t in "${targets[@]}"; do
				wrk -t1 -c8 -d1s -H "Authorization: Bearer $(cat "$work/$alg.one")" "$(url_of "$t" "$alg")" >/dev/null
			done
			for k in 0 1 2; do # rotated order: no target is always first
				measure "$round" "$alg" "$mode" "${targets[$(((k + round) % 3))]}"
			done
		done
	done
	stop_all
done
echo "== uptime: $(uptime)"

echo
echo "<!-- summary: compare -->"
python3 - "$records" "$ROUNDS" "$DURATION" <<'PY'
import sys, statistics
from collections import defaultdict
recs = [l.split() for l in open(sys.argv[1]) if l.strip()]
by = {}
for r, alg, mode, t, rps, p50, p99, reqs, bad, wrapped in recs:
    by[(r, alg, mode, t)] = (float(rps), float(p50), float(p99), int(wrapped))
keys = sorted({(a, m) for (_, a, m, _) in by}, key=lambda k: (k[0] != "RS256", k[1] != "cached"))
rounds = sorted({r for (r, _, _, _) in by})
print(f"authjwt vs caddy-security `authorize` — median of {sys.argv[2]} round(s), wrk {sys.argv[3]} each; ×respond = ratio to `respond` alone in the same round")
print()
print("| key | tokens | server | req/s | ×respond | p50 ms | ×respond | p99 ms | ×respond |")
print("|---|---|---|---:|---:|---:|---:|---:|---:|")
wrapped = False
for alg, mode in keys:
    for t in ("respond", "authjwt", "anchor"):
        cols = []
        for i in range(3):
            vals = [by[(r, alg, mode, t)][i] for r in rounds]
            ratios = [by[(r, alg, mode, t)][i] / by[(r, alg, mode, "respond")][i] for r in rounds]
            cols.append((statistics.median(vals), statistics.median(ratios)))
        wrapped |= any(by[(r, alg, mode, t)][3] for r in rounds) and t != "respond"
        name = {"respond": "`respond` alone", "authjwt": "tollgate authjwt", "anchor": "caddy-security authorize"}[t]
        print(f"| {alg} | {mode} | {name} | {cols[0][0]:.0f} | {cols[0][1]:.2f} | {cols[1][0]:.2f} | {cols[1][1]:.2f} | {cols[2][0]:.2f} | {cols[2][1]:.2f} |")
ahead = []
for alg, mode in keys:
    a = statistics.median(by[(r, alg, mode, "authjwt")][0] for r in rounds)
    c = statistics.median(by[(r, alg, mode, "anchor")][0] for r in rounds)
    ahead.append(f"{alg} {mode}: authjwt/anchor = {a / c:.2f}")
print()
print("Throughput authjwt ÷ anchor: " + "; ".join(ahead) + ".")
if wrapped:
    print("Note: some first-seen run sent more requests than there were tokens, so some tokens were sent twice (raise TOKENS_RS256/TOKENS_ES256).")
PY
