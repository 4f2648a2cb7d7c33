#!/usr/bin/env bash
# Bill parsers (issue 13): time, allocations and peak RSS of reading a
# synthetic bill of LINES lines (1 000 000) per channel — every line and
# every check (Alipay: the zip, GBK, the footer, the summary file; WeChat:
# the SHA1 of every byte, the summary) — from a file on disk, as
# reconciliation will after spooling the download. bench/billgen writes the
# file first (paysim's SyntheticDay, streamed), so each measured process
# only parses. Time and allocations: go test -bench over ROUNDS runs (3).
# Peak RSS: /usr/bin/time -v's "Maximum resident set size" of the process
# (without /usr/bin/time, Debian's package "time": the parser's peak as the
# benchmark reads it from /proc/self/status, VmHWM; billgen's is then not
# shown). Then the whole path once: the first step, the download through
# HTTP, spooling, parsing (BenchmarkFetchBill, paysim in the same process).
# CI=true: 100 000 lines, one round.
#
#   bench/bills.sh
#   LINES=100000 ROUNDS=1 bench/bills.sh
set -euo pipefail
cd "$(dirname "$0")/.."

LINES=${LINES:-1000000}
ROUNDS=${ROUNDS:-3}
TIME=${TIME:-/usr/bin/time}
if [ "${CI:-}" = "true" ]; then LINES=100000; ROUNDS=1; fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/billgen" ./bench/billgen

# peak_kib <command...>: runs it, its stdout to $work/out, prints its peak
# RSS in KiB ("" without /usr/bin/time) and leaves its CPU seconds (user +
# system) in $work/cpu.
peak_kib() {
	echo "" >"$work/cpu"
	if [ -x "$TIME" ]; then
		"$TIME" -v "$@" 2>"$work/time" >"$work/out" || { cat "$work/time" "$work/out" >&2; return 1; }
		awk -F': ' '/User time|System time/ { s += $2 } END { printf "%.2f", s }' "$work/time" >"$work/cpu"
		sed -n 's/.*Maximum resident set size (kbytes): //p' "$work/time"
	else
		"$@" >"$work/out"
	fi
}

parsers=() paths=()
for ch in alipay wechat; do
	echo "== $ch: $LINES lines"
	gen_kib=$(peak_kib "$work/billgen" -channel "$ch" -lines "$LINES" -out "$work/$ch.bill")
	cat "$work/out"
	gen_s=$(sed -n 's/.* in \([0-9.]*\) s$/\1/p' "$work/out")
	go test -c -o "$work/$ch.test" "./payproxy/$ch"
	parse_bench=(env BILL_FILE="$work/$ch.bill" "$work/$ch.test" -test.run '^$' -test.bench '^BenchmarkParseBill$' -test.benchmem)
	parse=$("${parse_bench[@]}" -test.benchtime "${ROUNDS}x" | grep '^BenchmarkParseBill')
	echo "$parse"
	rss_kib=$(peak_kib "${parse_bench[@]}" -test.benchtime 1x)
	if [ -z "$rss_kib" ]; then
		rss_kib=$(sed -n 's/.* \([0-9.]*\) peak-RSS-MiB.*/\1/p' "$work/out" | awk '{ printf "%d", $1 * 1024 }')
	fi
	cpu_s=$(cat "$work/cpu")
	echo "$ch parser peak_rss_kib=$rss_kib cpu_s=${cpu_s:-?}; billgen peak_rss_kib=${gen_kib:-?}"
	fetch=$(BILL_LINES="$LINES" "$work/$ch.test" -test.run '^$' -test.bench '^BenchmarkFetchBill$' -test.benchtime 1x -test.benchmem | grep '^BenchmarkFetchBill')
	echo "$fetch"
	# BenchmarkParseBill-2  3  1700000000 ns/op  1000000 lines/op  17.1 peak-RSS-MiB  212000000 B/op  1000521 allocs/op
	parsers+=("$(awk -v ch="$ch" -v rss="$rss_kib" -v cpu="${cpu_s:-–}" -v size="$(stat -c %s "$work/$ch.bill")" '{
		printf "| %s | %d | %.1f | %.2f | %s | %.0f | %.2f | %.0f | %.1f |", ch, $5, size / 1048576, $3 / 1e9, cpu, $5 / ($3 / 1e9), $11 / $5, $9 / $5, rss / 1024
	}' <<<"$parse")")
	paths+=("$(awk -v ch="$ch" -v gen="$gen_s" -v genrss="${gen_kib:-}" '{
		printf "| %s | %d | %.1f | %s | %.2f |", ch, $5, gen, (genrss == "" ? "–" : sprintf("%.1f", genrss / 1024)), $3 / 1e9
	}' <<<"$fetch")")
done

echo
echo "<!-- summary -->"
echo "Bill parsers: a synthetic bill per channel read from disk (go test -bench, $ROUNDS round(s); CPU time and peak RSS of one run, its setup included: hashing the file)."
echo
echo "| channel | lines | file MiB | s per bill | CPU s, one run | lines/s | allocs per line | bytes allocated per line | peak RSS MiB |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${parsers[@]}"
echo
echo "Paysim writing the file (bench/billgen), and the whole path once (signed first step, HTTP download, spool, parse; paysim in the same process)."
echo
echo "| channel | lines | paysim writes the file, s | paysim peak RSS MiB | fetch and parse, s |"
echo "|---|---:|---:|---:|---:|"
printf '%s\n' "${paths[@]}"
