#!/usr/bin/env bash
# Benchmark: `tracekit prog run` against `bpftool prog run` on the same XDP program
# (bpf/obj/xdp_port_filter.bpf.o, xdp_port_filter) and the same 42-byte UDP packet to the
# dropped port, at the same repeat counts, in one run.
#
# For each repeat count N, K calls through each tool:
#   bpftool          K processes `bpftool prog run` on the program pinned once
#   tracekit/proc    K processes `tracekit prog run --batches 1` (each loads the program, makes
#                    a cold first call and one timed call: the same work as bpftool plus the load)
#   tracekit/batch   one process, `--batches K`: K warm calls
# ns/run is the kernel's mean duration per run, median over the K calls (both tools print the
# kernel's figure, so they must agree within noise). For repeat 1, every bpftool call is the
# first in its process (cold), so it is compared with tracekit's cold first call; warm calls are
# much faster, which is what --batches shows.
# wall/proc is the wall time of one whole process; wall/call and fixed cost are measured inside
# tracekit around the syscall: fixed = wall/call - repeat x ns/run, the cost of every call that
# the kernel's duration leaves out.
#
# Usage: bash bench/prog.sh [K]     (needs root, bpftool, a release build of tracekit)
set -euo pipefail
cd "$(dirname "$0")/.."
K=${1:-20}
TARGET=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p tracekit
TK="$TARGET/release/tracekit"
OBJ=bpf/obj/xdp_port_filter.bpf.o
PROG=xdp_port_filter
command -v bpftool >/dev/null || { echo "bench/prog.sh: bpftool not found (apt-get install bpftool)" >&2; exit 1; }
WORK=$(mktemp -d)
PIN=/sys/fs/bpf/tracekit-bench-$$
cleanup() { rm -rf "$WORK" "$PIN"; }
trap cleanup EXIT

# The packet: tracekit builds it; the port filter passes it through unchanged to --data-out.
"$TK" prog run "$OBJ" "$PROG" --packet 'proto="udp", dst_port=9999' --data-out "$WORK/pkt.bin" >/dev/null
bpftool prog loadall "$OBJ" "$PIN"

median() { sort -n | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }
now_ns() { date +%s%N; }
range() { sort -n | awk 'NR == 1 {lo = $1} {hi = $1} END {printf "%s..%s", lo, hi}'; }
spread=""

printf '\nmachine: %s CPUs, load average %s\n' "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf 'program: %s %s, packet 42 bytes (UDP to port 9999 -> XDP_DROP), %s calls per tool and repeat count\n\n' "$OBJ" "$PROG" "$K"
printf '%8s  %9s  %9s  %9s  %6s  %11s  %11s  %11s  %11s  %11s\n' \
    repeat bpftool tk/proc tk/batch ratio "bpftool" "tk/proc" "bpftool" "tk/batch" "tk/batch"
printf '%8s  %9s  %9s  %9s  %6s  %11s  %11s  %11s  %11s  %11s\n' \
    "" "ns/run" "ns/run" "ns/run" "" "wall/proc" "wall/proc" "load/proc" "wall/call" "fixed/call"
for N in 1 1000 1000000; do
    : >"$WORK/bt.ns"; : >"$WORK/bt.wall"; : >"$WORK/tp.ns"; : >"$WORK/tp.wall"; : >"$WORK/bt.load"
    for _ in $(seq "$K"); do
        t0=$(now_ns)
        out=$(bpftool -j prog run pinned "$PIN/$PROG" data_in "$WORK/pkt.bin" repeat "$N")
        t1=$(now_ns)
        echo "$out" | sed -E 's/.*"duration":([0-9]+).*/\1/' >>"$WORK/bt.ns"
        echo $((t1 - t0)) >>"$WORK/bt.wall"
        t0=$(now_ns)
        "$TK" prog run "$OBJ" "$PROG" --data-in "$WORK/pkt.bin" --repeat "$N" --json -o "$WORK/tp.json"
        t1=$(now_ns)
        echo $((t1 - t0)) >>"$WORK/tp.wall"
        # Repeat 1: the timed call is the second in the process; the first is the cold one.
        python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["first_call_ns"] if sys.argv[2]=="1" else r["duration_ns"]["median"])' "$WORK/tp.json" "$N" >>"$WORK/tp.ns"
        t0=$(now_ns)
        bpftool prog loadall "$OBJ" "$PIN-load"
        t1=$(now_ns)
        rm -rf "$PIN-load"
        echo $((t1 - t0)) >>"$WORK/bt.load"
    done
    "$TK" prog run "$OBJ" "$PROG" --data-in "$WORK/pkt.bin" --repeat "$N" --batches "$K" --json -o "$WORK/tk.json"
    read -r tk_ns tk_wall tk_fixed < <(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
print(r["duration_ns"]["median"], r["wall_ns_per_call"]["median"], r["fixed_cost_ns_per_call"])' "$WORK/tk.json")
    awk -v n="$N" -v b="$(median <"$WORK/bt.ns")" -v tp="$(median <"$WORK/tp.ns")" -v t="$tk_ns" \
        -v bw="$(median <"$WORK/bt.wall")" -v tw="$(median <"$WORK/tp.wall")" -v bl="$(median <"$WORK/bt.load")" \
        -v cw="$tk_wall" -v f="$tk_fixed" 'BEGIN {
        ms = 1e6
        printf "%8d  %9.1f  %9.1f  %9.1f  %6.2f  %8.2f ms  %8.2f ms  %8.2f ms  %8.1f us  %8.1f us\n", n, b, tp, t, (b > 0 ? tp / b : 0), bw / ms, tw / ms, bl / ms, cw / 1e3, f / 1e3
    }'
    spread="$spread$(printf '%8d  %19s  %19s' "$N" "$(range <"$WORK/bt.ns")" "$(range <"$WORK/tp.ns")")
"
done
printf '\nspread over the %s calls, min..max ns/run:\n\n%8s  %19s  %19s\n%s' "$K" repeat bpftool tk/proc "$spread"
printf '\nratio = tracekit/proc ns/run / bpftool ns/run (1.00 = the same figure).\n'
printf 'bpftool load/proc = `bpftool prog loadall` of the object: the load that tracekit/proc wall includes.\n'
