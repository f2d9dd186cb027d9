#!/usr/bin/env bash
# Benchmark: tracekit's ptrace probe engine against bare ptrace floors, ltrace and gdb, on the
# same program (crates/tracekit-probe/testdata/target.c, `--only FUNC N`: FUNC called N times),
# in one run.
#
# Cases (each run R times, median wall time; per-hit = (median - untraced median) / hits):
#   floor step      a minimal C tracer: int3 on tk_empty; on each trap restore the byte,
#                   single-step, re-insert the int3, continue (two stops per hit)
#   floor emulate   the same tracer emulating tk_empty's first instruction (lea rax,[rdi+rsi])
#                   in the tracer: one stop per hit, GETREGS + SETREGS + CONT, nothing else
#   tracekit        `tracekit probe --engine ptrace uprobe:...:tk_empty` (simulated: one stop)
#   tracekit ool    uprobe on tk_jcc_entry, whose `test dil,1` runs out of line (boosted slot)
#   tracekit ret    uretprobe on tk_empty (entry + return trampoline: two stops per call)
#   ltrace -x       `ltrace -L -x tk_empty` (Debian's ltrace)
#   gdb             `gdb -batch` with `break tk_empty` + `commands silent; continue; end`
# Each case runs twice: unpinned, and with tracer and tracee on one CPU (taskset -c 0, or
# tracekit's own --pin-cpu 0). Hit counts are checked where the tool reports them.
#
# Usage: bash bench/probe-ptrace.sh [N] [R]    (defaults 20000 and 3; gdb uses N/10)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20000}
R=${2:-3}
NG=$((N / 10))
TARGET=${CARGO_TARGET_DIR:-target}
[ -n "${TK_SKIP_BUILD:-}" ] || cargo build --release -q -p tracekit   # TK_SKIP_BUILD=1: use the binary as is
TK="$TARGET/release/tracekit"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
PT="$WORK/probe-target"
gcc -O1 -g -o "$PT" crates/tracekit-probe/testdata/target.c -lpthread

cat >"$WORK/floor.c" <<'EOF'
/* floor MODE VADDR PROG ARGS...: int3 at VADDR (ELF address in PROG, a PIE), count hits. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <signal.h>
#include <unistd.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>
int main(int argc, char **argv) {
	int emulate = !strcmp(argv[1], "emulate");
	unsigned long vaddr = strtoul(argv[2], 0, 0);
	pid_t pid = fork();
	if (pid == 0) { ptrace(PTRACE_TRACEME, 0, 0, 0); execv(argv[3], argv + 3); _exit(127); }
	int st; waitpid(pid, &st, 0);
	char path[PATH_MAX], maps[64], line[4096]; realpath(argv[3], path);
	snprintf(maps, sizeof maps, "/proc/%d/maps", pid);
	FILE *f = fopen(maps, "r"); unsigned long base = 0;
	while (fgets(line, sizeof line, f)) {
		unsigned long s, e, off; char file[PATH_MAX] = "";
		if (sscanf(line, "%lx-%lx %*s %lx %*s %*s %s", &s, &e, &off, file) >= 3 && !strcmp(file, path)) { base = s - off; break; }
	}
	fclose(f);
	unsigned long addr = base + vaddr, hits = 0;
	long orig = ptrace(PTRACE_PEEKTEXT, pid, addr, 0), bp = (orig & ~0xffL) | 0xcc;
	ptrace(PTRACE_POKETEXT, pid, addr, bp);
	ptrace(PTRACE_CONT, pid, 0, 0);
	for (;;) {
		waitpid(pid, &st, 0);
		if (WIFEXITED(st) || WIFSIGNALED(st)) break;
		int sig = WSTOPSIG(st);
		struct user_regs_struct r; ptrace(PTRACE_GETREGS, pid, 0, &r);
		if (sig == SIGTRAP && r.rip - 1 == addr) {
			hits++;
			if (emulate) {
				r.rax = r.rdi + r.rsi; r.rip = addr + 4; /* lea rax,[rdi+rsi] */
				ptrace(PTRACE_SETREGS, pid, 0, &r);
			} else {
				ptrace(PTRACE_POKETEXT, pid, addr, orig);
				r.rip = addr; ptrace(PTRACE_SETREGS, pid, 0, &r);
				ptrace(PTRACE_SINGLESTEP, pid, 0, 0); waitpid(pid, &st, 0);
				ptrace(PTRACE_POKETEXT, pid, addr, bp);
			}
			sig = 0;
		}
		ptrace(PTRACE_CONT, pid, 0, sig);
	}
	fprintf(stderr, "floor hits %lu\n", hits);
	return 0;
}
EOF
gcc -O2 -o "$WORK/floor" "$WORK/floor.c"
VADDR=0x$(nm "$PT" | awk '$3 == "tk_empty" {print $1}')
# The emulate floor hard-codes tk_empty's first instruction: make sure it is that one.
FIRST=$(objdump -d --no-show-raw-insn "$PT" --start-address="$VADDR" 2>/dev/null | awk '/^ +[0-9a-f]+:/ && !done {print; done = 1}')
case "$FIRST" in *"lea    (%rdi,%rsi,1),%rax"*) ;; *)
	echo "bench/probe-ptrace.sh: tk_empty starts with '$FIRST', not lea (%rdi,%rsi,1),%rax; fix the floor tracer" >&2; exit 1 ;; esac

cat >"$WORK/gdb.cmd" <<'EOF'
set pagination off
set confirm off
break tk_empty
commands
silent
continue
end
run
info breakpoints
quit
EOF

median() { sort -n | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }
# time_case NAME HITS COMMAND...: median wall ns over R runs; the last run's stderr in $WORK/err.
time_case() {
	local name=$1 hits=$2; shift 2
	local t
	for _ in $(seq "$R"); do
		local t0; t0=$(date +%s%N)
		"$@" >"$WORK/out" 2>"$WORK/err"
		echo $(($(date +%s%N) - t0))
	done | median >"$WORK/t"
	t=$(cat "$WORK/t")
	printf '%s\t%s\t%s\n' "$name" "$hits" "$t" >>"$WORK/results"
}
check() { # check NAME EXPECTED PATTERN: the hit count a tool printed
	local got; got=$(grep -oE "$3" "$WORK/err" "$WORK/out" 2>/dev/null | grep -oE '[0-9]+' | tail -1 || true)
	[ "$got" = "$2" ] || echo "WARNING: $1 reported ${got:-nothing} hits, expected $2" >&2
}

: >"$WORK/results"
for place in unpinned pinned; do
	if [ $place = pinned ]; then PIN=(taskset -c 0); TKPIN=(--pin-cpu 0); else PIN=(); TKPIN=(); fi
	time_case "untraced/$place" 0 "${PIN[@]}" "$PT" --only tk_empty "$N"
	time_case "untraced-small/$place" 0 "${PIN[@]}" "$PT" --only tk_empty "$NG"
	time_case "floor step/$place" "$N" "${PIN[@]}" "$WORK/floor" step "$VADDR" "$PT" --only tk_empty "$N"
	check "floor step" "$N" 'floor hits [0-9]+'
	time_case "floor emulate/$place" "$N" "${PIN[@]}" "$WORK/floor" emulate "$VADDR" "$PT" --only tk_empty "$N"
	check "floor emulate" "$N" 'floor hits [0-9]+'
	time_case "tracekit/$place" "$N" "$TK" probe --engine ptrace "${TKPIN[@]}" --json "uprobe:$PT:tk_empty" -- "$PT" --only tk_empty "$N"
	check tracekit "$N" '"hits": ?[0-9]+'
	time_case "tracekit ool/$place" "$N" "$TK" probe --engine ptrace "${TKPIN[@]}" --json "uprobe:$PT:tk_jcc_entry" -- "$PT" --only tk_jcc "$N"
	check "tracekit ool" "$N" '"hits": ?[0-9]+'
	time_case "tracekit ret/$place" "$N" "$TK" probe --engine ptrace "${TKPIN[@]}" --json "uretprobe:$PT:tk_empty" -- "$PT" --only tk_empty "$N"
	check "tracekit ret" "$N" '"hits": ?[0-9]+'
	time_case "ltrace -x/$place" "$N" "${PIN[@]}" ltrace -L -c -x tk_empty "$PT" --only tk_empty "$N"
	check "ltrace" "$N" '[0-9]+ tk_empty'
	time_case "gdb/$place" "$NG" "${PIN[@]}" gdb -batch -nx -x "$WORK/gdb.cmd" --args "$PT" --only tk_empty "$NG"
	check gdb "$NG" 'already hit [0-9]+ time'
done

echo "probe-ptrace benchmark: N=$N calls of tk_empty (gdb: $NG), median of $R runs, $(nproc) CPUs, load: $(cut -d' ' -f1-3 /proc/loadavg)"
awk -F'\t' '
	{ name[NR] = $1; hits[NR] = $2; t[NR] = $3; split($1, p, "/"); tool[NR] = p[1]; place[NR] = p[2]
	  if (p[1] == "untraced") base[p[2]] = $3; if (p[1] == "untraced-small") small[p[2]] = $3 }
	END {
		for (i = 1; i <= NR; i++) if (hits[i] > 0) {
			b = (tool[i] == "gdb") ? small[place[i]] : base[place[i]]
			us[i] = (t[i] - b) / hits[i] / 1000
			if (tool[i] == "floor step") step[place[i]] = us[i]
			if (tool[i] == "floor emulate") emu[place[i]] = us[i]
		}
		printf "\n%-16s %-9s %8s %12s %10s %10s\n", "tool", "placement", "hits", "us/hit", "x emulate", "x step"
		printf "%-16s %-9s %8s %12s %10s %10s\n", "----------------", "---------", "--------", "------------", "----------", "----------"
		for (i = 1; i <= NR; i++) if (hits[i] > 0)
			printf "%-16s %-9s %8d %12.2f %10.2f %10.2f\n", tool[i], place[i], hits[i], us[i], us[i] / emu[place[i]], us[i] / step[place[i]]
		printf "\nuntraced: %.2f ms unpinned, %.2f ms pinned (N=%d, whole process)\n", base["unpinned"] / 1e6, base["pinned"] / 1e6, '"$N"'
	}' "$WORK/results"
