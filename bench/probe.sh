#!/usr/bin/env bash
# Benchmark: `tracekit probe` against bpftrace and ltrace, on one program calling an empty
# function N times (crates/tracekit-probe/testdata/target.c, `--only FUNC N`), in one run.
#
# Per-hit cost is measured by differencing two call counts, so start-up costs (BPF load,
# bpftrace's LLVM compile, ptrace attach) cancel out:
#     ns/hit = (median T(N2) - median T(N1)) / ((N2 - N1) x threads)  -  the same untraced
# Cases:
#   untraced          the program alone
#   tracekit bpf      tracekit probe --engine bpf uprobe:PT:FUNC          (count in the kernel)
#   bpftrace          bpftrace -e 'uprobe:PT:FUNC { @hits = count(); }'   (the same uprobe)
#   tracekit ptrace   tracekit probe --engine ptrace uprobe:PT:FUNC
#   ltrace -x         ltrace -c -L -x FUNC (Debian's ltrace; -L: no library calls)
#   tracekit jump     tracekit probe --engine jump uprobe:PT:FUNC        (no trap per hit)
# on two functions: tk_empty, whose first instruction (lea (%rdi,%rsi),%rax) the kernel's
# uprobe must single-step out of line, and tk_push, whose `push %rbp` the kernel emulates.
# The jump engine's cases (on tk_push, the kernel's best case) run against the same peers
# with 1 and 2 threads (`--threads T`, N calls per thread; ns/hit is per hit of all threads,
# wall time) and with entry probes alone or entry + return probes ("+ret": the short form
# PT:FUNC for tracekit, uprobe + uretprobe with an nsecs latency histogram for bpftrace).
# Every tool's hit count is checked against the expected N x T.
# The ptrace floors (bare int3 + single-step loops), pinned placements and gdb are in
# bench/probe-ptrace.sh; run it too with --all.
#
# Usage: bash bench/probe.sh [R] [--all]    (R: runs per case, default 7)
set -euo pipefail
cd "$(dirname "$0")/.."
R=7
ALL=
for arg in "$@"; do
	case $arg in --all) ALL=--all ;; *[!0-9]* | "") echo "usage: bash bench/probe.sh [R] [--all]" >&2; exit 2 ;; *) R=$arg ;; esac
done
TARGET=${CARGO_TARGET_DIR:-target}
[ -n "${TK_SKIP_BUILD:-}" ] || cargo build --release -q -p tracekit   # TK_SKIP_BUILD=1: use the binary as is
TK="$TARGET/release/tracekit"
for tool in bpftrace ltrace gcc; do
	command -v $tool >/dev/null || { echo "bench/probe.sh: $tool not found (apt-get install $tool)" >&2; exit 1; }
done
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
PT="$WORK/probe-target"
gcc -O1 -g -o "$PT" crates/tracekit-probe/testdata/target.c -lpthread

median() { sort -n | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }
# The cases, one per line: TOOL|FUNC|N1|N2|THREADS|PROBES (PROBES: entry, or +ret for entry
# and return probes). Each repetition runs every case once, in turn, so load changes on the
# shared machine hit every tool alike.
CASES="untraced|tk_empty|1000|101000|1|entry
tracekit bpf|tk_empty|10000|110000|1|entry
bpftrace|tk_empty|10000|110000|1|entry
tracekit ptrace|tk_empty|1000|11000|1|entry
ltrace -x|tk_empty|500|3000|1|entry
untraced|tk_push|1000000|11000000|1|entry
tracekit bpf|tk_push|100000|1100000|1|entry
bpftrace|tk_push|100000|1100000|1|entry"
# The jump engine against its peers, 1 and 2 threads, entry and entry + return.
for th in 1 2; do
	[ "$th" = 1 ] || CASES+="
untraced|tk_push|1000000|11000000|$th|entry"
	for probes in entry +ret; do
		CASES+="
tracekit jump|tk_push|1000000|11000000|$th|$probes
tracekit bpf|tk_push|100000|1100000|$th|$probes
bpftrace|tk_push|100000|1100000|$th|$probes
tracekit ptrace|tk_push|1000|11000|$th|$probes"
	done
done
# run_one TOOL FUNC N THREADS PROBES: runs the case once, prints wall ns; checks the reported
# hit count (of the return probe for +ret).
run_one() {
	local tool=$1 func=$2 n=$3 threads=$4 probes=$5 pattern
	local cmd=("$PT" --threads "$threads" --only "$func" "$n") run spec="uprobe:$PT:$func"
	local bt="uprobe:$PT:$func { @hits = count(); }"
	if [ "$probes" = +ret ]; then
		spec="$PT:$func"
		bt="uprobe:$PT:$func { @s[tid] = nsecs; } uretprobe:$PT:$func /@s[tid]/ { @lat = hist(nsecs - @s[tid]); delete(@s[tid]); @hits = count(); }"
	fi
	case $tool in
	untraced) pattern=""; run=("${cmd[@]}") ;;
	"tracekit bpf") pattern='"hits": [0-9]+'; run=("$TK" probe --engine bpf --json "$spec" -- "${cmd[@]}") ;;
	"tracekit ptrace") pattern='"hits": [0-9]+'; run=("$TK" probe --engine ptrace --json "$spec" -- "${cmd[@]}") ;;
	"tracekit jump") pattern='"hits": [0-9]+'; run=("$TK" probe --engine jump --json "$spec" -- "${cmd[@]}") ;;
	bpftrace) pattern='@hits: [0-9]+'; run=(bpftrace -e "$bt" -c "${cmd[*]}") ;;
	"ltrace -x") pattern='[0-9]+ +'"$func"'$'; run=(ltrace -c -L -x "$func" "${cmd[@]}") ;;
	esac
	local t0; t0=$(date +%s%N)
	"${run[@]}" >"$WORK/out" 2>"$WORK/err"
	echo $(($(date +%s%N) - t0))
	if [ -n "$pattern" ]; then
		local got want=$((n * threads)); got=$(grep -ohE "$pattern" "$WORK/out" "$WORK/err" | grep -oE '[0-9]+' | tail -1 || true)
		[ "$got" = "$want" ] || echo "WARNING: $tool on $func ($threads threads, $probes) reported ${got:-no} hits, expected $want" >&2
	fi
}

: >"$WORK/times"
for r in $(seq "$R"); do
	while IFS='|' read -r tool func n1 n2 th probes; do
		for n in "$n1" "$n2"; do
			printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$func" "$n" "$(run_one "$tool" "$func" "$n" "$th" "$probes")" "$th" "$probes" >>"$WORK/times"
		done
	done <<<"$CASES"
done
: >"$WORK/results"
while IFS='|' read -r tool func n1 n2 th probes; do
	for n in "$n1" "$n2"; do
		t=$(awk -F'\t' -v t="$tool" -v f="$func" -v n="$n" -v th="$th" -v p="$probes" '$1 == t && $2 == f && $3 == n && $5 == th && $6 == p {print $4}' "$WORK/times" | median)
		printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$func" "$n" "$t" "$th" "$probes" >>"$WORK/results"
	done
done <<<"$CASES"

echo "probe benchmark: per-hit cost by differencing two call counts, median of $R runs, $(nproc) CPUs, load: $(cut -d' ' -f1-3 /proc/loadavg)"
awk -F'\t' '
	{ key = $1 SUBSEP $2 SUBSEP $5 SUBSEP $6
	  if (!(key in n1)) { n1[key] = $3; t1[key] = $4; order[++k] = key } else { n2[key] = $3; t2[key] = $4 } }
	END {
		# ns per hit of all threads: wall-time difference over the difference in calls.
		for (i = 1; i <= k; i++) { key = order[i]; split(key, p, SUBSEP)
			ns[key] = (t2[key] - t1[key]) / ((n2[key] - n1[key]) * p[3])
			if (p[1] == "untraced") base[p[2], p[3]] = ns[key] }
		for (i = 1; i <= k; i++) { key = order[i]; split(key, p, SUBSEP)
			if (p[1] == "bpftrace") bt[p[2], p[3], p[4]] = ns[key] - base[p[2], p[3]] }
		printf "\n%-16s %-9s %3s %-6s %16s %12s %12s\n", "tool", "function", "thr", "probes", "calls (N1..N2)", "ns/hit", "x bpftrace"
		printf "%-16s %-9s %3s %-6s %16s %12s %12s\n", "----------------", "---------", "---", "------", "----------------", "------------", "------------"
		for (i = 1; i <= k; i++) { key = order[i]; split(key, p, SUBSEP)
			range = n1[key] ".." n2[key]
			if (p[1] == "untraced") { printf "%-16s %-9s %3s %-6s %16s %12.1f %12s\n", p[1], p[2], p[3], "-", range, ns[key], "(per call)"; continue }
			hit = ns[key] - base[p[2], p[3]]
			printf "%-16s %-9s %3s %-6s %16s %12.1f %12.3f\n", p[1], p[2], p[3], p[4], range, hit, hit / bt[p[2], p[3], p[4]] }
	}' "$WORK/results"

if [ "$ALL" = --all ]; then
	echo
	TK_SKIP_BUILD=1 bash bench/probe-ptrace.sh
fi
