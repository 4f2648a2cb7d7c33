#!/usr/bin/env bash
# make bench: runs every load script of bench/ (or the ones named, e.g.
# `bench/run.sh compare memory`), one after the other, writing each one's
# raw output to bench/results/<date>-<name>.txt headed by the date and the
# CPU, then prints the summary of every result of that date and saves it as
# bench/results/<date>-summary.md. CI=true shortens every script.
set -euo pipefail
cd "$(dirname "$0")/.."

date=${BENCH_DATE:-$(date +%F)}
results=bench/results
mkdir -p "$results"
cpu=$(lscpu | grep 'Model name' | sed 's/  */ /g' || true)

# `bench/run.sh --summary` only rebuilds the summary from the results of the date.
if [ "${1:-}" = --summary ]; then names=(); elif [ $# -gt 0 ]; then names=("$@"); else
	names=()
	for s in bench/*.sh; do
		n=$(basename "$s" .sh)
		case $n in run | lib) ;; *) names+=("$n") ;; esac
	done
fi

status=0
for n in ${names[@]+"${names[@]}"}; do
	out="$results/$date-$n.txt"
	echo "### bench/$n.sh -> $out"
	{
		echo "date: $(date -Is)"
		echo "$cpu"
		echo "cores: $(nproc); CI=${CI:-}"
		echo "uptime: $(uptime)"
		echo "command: bench/$n.sh"
		echo
	} >"$out"
	if ! "bench/$n.sh" 2>&1 | tee -a "$out"; then
		echo "!!! bench/$n.sh failed" | tee -a "$out"
		status=1
	fi
done

# The summary: each script's own table (after its "<!-- summary" marker),
# and the result lines of the scripts that print none.
summary="$results/$date-summary.md"
{
	echo "# tollgate load results, $date"
	echo
	echo "$cpu, $(nproc) cores. Raw output: \`bench/results/$date-*.txt\`."
	for f in "$results/$date"-*.txt; do
		n=$(basename "$f" .txt); n=${n#"$date"-}
		echo
		echo "## $n ($(sed -n 's/^uptime: .*load average: /load average /p' "$f"))"
		echo
		if grep -q '^<!-- summary' "$f"; then
			sed -n '/^<!-- summary/,$p' "$f" | tail -n +2
		else
			grep -E 'req\/s|ratio|per_s|limit|failed|storm|^(alipay|wechat) ' "$f" | grep -v '^!!!' | sed 's/^/    /' || echo "    (no result lines)"
		fi
		if grep -q '^!!! ' "$f"; then printf '\n**This script failed; see the raw output.**\n'; fi
	done
} >"$summary"
echo
cat "$summary"
exit "$status"
