#!/usr/bin/env bash
# Benchmark: how long it takes to put 1, 100 and 1000 probes on a program and run it, tracekit
# (BPF engine, a glob pattern) against bpftrace (the same pattern, `-c`), in one run.
# The program (generated here) has 1000 empty functions tk_f0000..tk_f0999 and calls none of
# them, so the time is start-up, load, attach and detach: wall time of the whole command,
# median of R runs. tracekit attaches one perf-event uprobe per probe (aya 0.14 has no
# uprobe_multi links); so does bpftrace on this machine (`bpftool link` shows no uprobe_multi).
#
# Usage: bash bench/probe-attach.sh [R]    (R: runs per case, default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
R=${1:-5}
TARGET=${CARGO_TARGET_DIR:-target}
[ -n "${TK_SKIP_BUILD:-}" ] || cargo build --release -q -p tracekit
TK="$TARGET/release/tracekit"
command -v bpftrace >/dev/null || { echo "bench/probe-attach.sh: bpftrace not found (apt-get install bpftrace)" >&2; exit 1; }
# bpftrace refuses more than 512 probes (and programs) unless told otherwise.
export BPFTRACE_MAX_PROBES=4096 BPFTRACE_MAX_BPF_PROGS=4096
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
{
	for i in $(seq -f "%04g" 0 999); do echo "__attribute__((noinline)) int tk_f$i(int x) { return x + 1; }"; done
	echo "int main(void) { return 0; }"
} > "$WORK/many.c"
gcc -O1 -o "$WORK/many" "$WORK/many.c"
median() { sort -n | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }
wall() { local s e; s=$(date +%s%N); "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; exit 1; }; e=$(date +%s%N); echo $(((e - s) / 1000000)); }
echo "probe-attach benchmark: median wall ms of R=$R runs, $(nproc) CPUs, load: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '\n%-7s %-12s %12s %12s %10s\n' probes pattern "tracekit ms" "bpftrace ms" "x bpftrace"
printf '%-7s %-12s %12s %12s %10s\n' ------- ------------ ------------ ------------ ----------
for case in "1 tk_f0000" "100 tk_f00*" "1000 tk_f*"; do
	set -- $case
	n=$1 pat=$2
	tk=$(for _ in $(seq "$R"); do wall "$TK" probe --engine bpf --max-probes 1000 "uprobe:$WORK/many:$pat" -- "$WORK/many"; done | median)
	bt=$(for _ in $(seq "$R"); do wall bpftrace -e "uprobe:$WORK/many:$pat { @[probe] = count(); }" -c "$WORK/many"; done | median)
	got=$("$TK" probe --engine bpf --max-probes 1000 --json "uprobe:$WORK/many:$pat" -- "$WORK/many" 2>&1 >/dev/null | grep -c '"spec"' || true)
	[ "$got" = "$n" ] || echo "WARNING: tracekit placed $got probes for $pat, expected $n" >&2
	printf '%-7s %-12s %12s %12s %10.2f\n' "$n" "$pat" "$tk" "$bt" "$(awk -v a="$tk" -v b="$bt" 'BEGIN {print a / b}')"
done
