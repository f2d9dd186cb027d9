#!/usr/bin/env bash
# Benchmark: `tracekit probe` against bpftrace and ltrace, on one program calling an empty
# function N times (crates/tracekit-probe/testdata/target.c, `--only FUNC N`), in one run.
#
# Per-hit cost is measured by differencing two call counts, so start-up costs (BPF load,
# bpftrace's LLVM compile, ptrace attach) cancel out:
#     us/hit = (median T(N2) - median T(N1)) / (N2 - N1)  -  the same for the untraced program
# Cases:
#   untraced          the program alone
#   tracekit bpf      tracekit probe --engine bpf uprobe:PT:FUNC          (count in the kernel)
#   bpftrace          bpftrace -e 'uprobe:PT:FUNC { @hits = count(); }'   (the same uprobe)
#   tracekit ptrace   tracekit probe --engine ptrace uprobe:PT:FUNC
#   ltrace -x         ltrace -c -L -x FUNC (Debian's ltrace; -L: no library calls)
# on two functions: tk_empty, whose first instruction (lea (%rdi,%rsi),%rax) the kernel's
# uprobe must single-step out of line, and tk_push, whose `push %rbp` the kernel emulates.
# Every tool's hit count is checked against the expected N.
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
# The cases, one per line: TOOL|FUNC|N1|N2. Each repetition runs every case once, in turn, so
# load changes on the shared machine hit every tool alike.
CASES="untraced|tk_empty|1000|101000
tracekit bpf|tk_empty|10000|110000
bpftrace|tk_empty|10000|110000
tracekit ptrace|tk_empty|1000|11000
ltrace -x|tk_empty|500|3000
untraced|tk_push|1000|1001000
tracekit bpf|tk_push|100000|1100000
bpftrace|tk_push|100000|1100000"
# run_one TOOL FUNC N: runs the case once, prints wall ns; checks the reported hit count.
run_one() {
	local tool=$1 func=$2 n=$3 pattern
	local cmd=("$PT" --only "$func" "$n") run
	case $tool in
	untraced) pattern=""; run=("${cmd[@]}") ;;
	"tracekit bpf") pattern='"hits": [0-9]+'; run=("$TK" probe --engine bpf --json "uprobe:$PT:$func" -- "${cmd[@]}") ;;
	"tracekit ptrace") pattern='"hits": [0-9]+'; run=("$TK" probe --engine ptrace --json "uprobe:$PT:$func" -- "${cmd[@]}") ;;
	bpftrace) pattern='@hits: [0-9]+'; run=(bpftrace -e "uprobe:$PT:$func { @hits = count(); }" -c "${cmd[*]}") ;;
	"ltrace -x") pattern='[0-9]+ +'"$func"'$'; run=(ltrace -c -L -x "$func" "${cmd[@]}") ;;
	esac
	local t0; t0=$(date +%s%N)
	"${run[@]}" >"$WORK/out" 2>"$WORK/err"
	echo $(($(date +%s%N) - t0))
	if [ -n "$pattern" ]; then
		local got; got=$(grep -ohE "$pattern" "$WORK/out" "$WORK/err" | grep -oE '[0-9]+' | tail -1 || true)
		[ "$got" = "$n" ] || echo "WARNING: $tool on $func reported ${got:-no} hits, expected $n" >&2
	fi
}

: >"$WORK/times"
for r in $(seq "$R"); do
	while IFS='|' read -r tool func n1 n2; do
		for n in "$n1" "$n2"; do
			printf '%s\t%s\t%s\t%s\n' "$tool" "$func" "$n" "$(run_one "$tool" "$func" "$n")" >>"$WORK/times"
		done
	done <<<"$CASES"
done
: >"$WORK/results"
while IFS='|' read -r tool func n1 n2; do
	for n in "$n1" "$n2"; do
		t=$(awk -F'\t' -v t="$tool" -v f="$func" -v n="$n" '$1 == t && $2 == f && $3 == n {print $4}' "$WORK/times" | median)
		printf '%s\t%s\t%s\t%s\n' "$tool" "$func" "$n" "$t" >>"$WORK/results"
	done
done <<<"$CASES"

echo "probe benchmark: per-hit cost by differencing two call counts, median of $R runs, $(nproc) CPUs, load: $(cut -d' ' -f1-3 /proc/loadavg)"
awk -F'\t' '
	{ key = $1 SUBSEP $2
	  if (!(key in n1)) { n1[key] = $3; t1[key] = $4; order[++k] = key } else { n2[key] = $3; t2[key] = $4 } }
	END {
		for (i = 1; i <= k; i++) { key = order[i]; split(key, p, SUBSEP)
			ns[key] = (t2[key] - t1[key]) / (n2[key] - n1[key])
			if (p[1] == "untraced") base[p[2]] = ns[key] }
		for (i = 1; i <= k; i++) { key = order[i]; split(key, p, SUBSEP)
			if (p[1] == "bpftrace") bt[p[2]] = ns[key] - base[p[2]] }
		printf "\n%-16s %-9s %16s %12s %12s\n", "tool", "function", "calls (N1..N2)", "us/hit", "x bpftrace"
		printf "%-16s %-9s %16s %12s %12s\n", "----------------", "---------", "----------------", "------------", "------------"
		for (i = 1; i <= k; i++) { key = order[i]; split(key, p, SUBSEP)
			range = n1[key] ".." n2[key]
			if (p[1] == "untraced") { printf "%-16s %-9s %16s %12.4f %12s\n", p[1], p[2], range, ns[key] / 1000, "(per call)"; continue }
			us = (ns[key] - base[p[2]]) / 1000
			printf "%-16s %-9s %16s %12.3f %12.2f\n", p[1], p[2], range, us, us * 1000 / bt[p[2]] }
	}' "$WORK/results"

if [ "$ALL" = --all ]; then
	echo
	TK_SKIP_BUILD=1 bash bench/probe-ptrace.sh
fi
