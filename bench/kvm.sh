#!/usr/bin/env bash
# Benchmark: `tracekit bench demand-paging` on KVM, with and without userfaultfd, for 1 and 2
# vCPUs at 256 MiB per vCPU, next to the host floors measured in the same run:
#   first touch   host threads writing the first 8 bytes of every fresh page (--no-kvm): the
#                 cost of a plain anonymous page fault, no guest involved
#   UFFDIO_COPY   the same host threads faulting on userfaultfd-registered memory, each fault
#                 served by a handler thread with UFFDIO_COPY (--no-kvm -u)
# Each configuration runs REPS times (fresh VM and fresh memory each time); the table shows the
# median, min and max demand-paging rate (pages/sec = all pages / total time) and the ratio of
# the median to the matching host floor (kernel faults vs first touch, -u vs UFFDIO_COPY), and
# for userfaultfd rows the median of the handlers' mean UFFDIO_COPY time.
# Pinned runs use -c (vCPU i and its handler on CPU i); the unpinned -u rows show what happens
# when the scheduler separates a faulting vCPU from its handler. The guest loop runs at CPL 3
# (tracekit's default); the --supervisor rows run it at CPL 0 like the seed, which on PVM hosts
# (software-virtualized KVM) is not a page-fault test: PVM emulates every supervisor instruction
# and the emulator writes guest memory through the host mapping, so no guest fault is taken.
#
# With MODE `selftests` (or `all`, the default) it first runs bench/kvm-vs-selftests.sh: the
# kernel's own demand_paging_test and dirty_log_perf_test (6.12, built from Debian's
# linux-source-6.12 into /var/cache/tracekit by bench/kvm-selftests.sh, which installs the package
# if missing) side by side with tracekit, REPS interleaved repetitions of BYTES per vCPU.
# MODE `floors` runs only the table above.
#
# Usage: bash bench/kvm.sh [REPS] [BYTES_PER_VCPU] [all|selftests|floors]
#        (root, /dev/kvm; default 5, 256M, all)
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${1:-5}
BYTES=${2:-256M}
MODE=${3:-all}
case $MODE in
all | selftests) bash bench/kvm-vs-selftests.sh "$REPS" "$BYTES" ;;
floors) ;;
*) echo "bench/kvm.sh: MODE must be all, selftests or floors" >&2; exit 2 ;;
esac
[ "$MODE" = selftests ] && exit 0
TARGET=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p tracekit
TK="$TARGET/release/tracekit"
command -v jq >/dev/null || { echo "bench/kvm.sh: jq not found (apt-get install jq)" >&2; exit 1; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# run NAME ARGS...: REPS runs of one configuration; one pages/sec value per line in $WORK/NAME.
run() {
    local name=$1
    shift
    : >"$WORK/$name"
    for _ in $(seq "$REPS"); do
        "$TK" bench demand-paging -b "$BYTES" "$@" --json -o "$WORK/r.json"
        [ "$(jq .verified "$WORK/r.json")" = true ] || { echo "bench/kvm.sh: $name not verified" >&2; exit 1; }
        jq -r '[.pages_per_sec, (.uffd.copy_mean_ns // "-")] | @tsv' "$WORK/r.json" >>"$WORK/$name"
    done
}

# row LABEL NAME [FLOOR]: median/min/max pages/sec of NAME, its median over FLOOR's median, and
# the median time of one UFFDIO_COPY in the handlers (userfaultfd rows).
median() { sort -g | awk '{v[NR]=$1} END {if (NR) print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
row() {
    local label=$1 name=$2 floor=${3:-} floor_med="" copy
    [ -n "$floor" ] && floor_med=$(cut -f1 "$WORK/$floor" | median)
    copy=$(cut -f2 "$WORK/$name" | { grep -v -- - || true; } | median)
    cut -f1 "$WORK/$name" | sort -g | awk -v label="$label" -v floor="$floor_med" -v copy="$copy" '
        {v[NR]=$1}
        END {
            med = (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2
            ratio = (floor != "") ? sprintf("%.2fx", med/floor) : "floor"
            copy_us = (copy != "") ? sprintf("%.1f", copy/1000) : "-"
            printf "%-44s %12.0f %12.0f %12.0f %10s %10s\n", label, med, v[1], v[NR], ratio, copy_us
        }'
}

printf '\nmachine: %s CPUs, %s, load average %s\n' "$(nproc)" "$(uname -r)" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf 'demand paging, %s per vCPU (4 KiB pages), anonymous memory, %s runs per row\n\n' "$BYTES" "$REPS"
for V in 1 2; do
    CPUS=$(seq -s, 0 $((V - 1)))
    run "host$V" -v "$V" --no-kvm -c "$CPUS"
    run "hostu$V" -v "$V" --no-kvm -u -c "$CPUS"
    run "kvm$V" -v "$V"
    run "kvmu$V" -v "$V" -u -c "$CPUS"
    run "kvmun$V" -v "$V" -u
    run "kvmsup$V" -v "$V" --supervisor
done
printf '%-44s %12s %12s %12s %10s %10s\n' "configuration" "pages/sec" "min" "max" "vs floor" "copy us"
printf '%-44s %12s %12s %12s %10s %10s\n' "-------------" "---------" "---" "---" "--------" "-------"
for V in 1 2; do
    CPUS=$(seq -s, 0 $((V - 1)))
    row "host first touch, $V thread(s) (-c $CPUS)" "host$V"
    row "kvm kernel faults, $V vCPU(s)" "kvm$V" "host$V"
    row "host UFFDIO_COPY, $V thread(s) (-u -c $CPUS)" "hostu$V"
    row "kvm userfaultfd, $V vCPU(s) (-u -c $CPUS)" "kvmu$V" "hostu$V"
    row "kvm userfaultfd, $V vCPU(s) (-u, unpinned)" "kvmun$V" "hostu$V"
    row "kvm CPL 0, $V vCPU(s) (--supervisor; see note)" "kvmsup$V" "host$V"
done

# Dirty logging: per-iteration time for the vCPUs to re-dirty all their pages (write-protect
# faults) and for the host to collect the bitmap, against host threads rewriting the same pages.
dirty() {
    "$TK" bench dirty-log -v 2 -b "$BYTES" -i "$REPS" -c 0,1 "$@" --json -o "$WORK/d.json"
    jq -r '[.dirty_seconds.median, .expected_dirty_pages, (.get_log_seconds.median // 0),
            (.clear_log_seconds.median // 0), (.bitmap_exact // "-"), .verified] | @tsv' "$WORK/d.json"
}
read -r kd kp kg kc kx kv < <(dirty)
read -r hd hp _ _ _ hv < <(dirty --no-kvm)
[ "$kv" = true ] && [ "$hv" = true ] && [ "$kx" = true ] || { echo "bench/kvm.sh: dirty-log not verified" >&2; exit 1; }
printf '\ndirty logging, 2 vCPUs x %s, %s iterations (median per iteration)\n\n' "$BYTES" "$REPS"
printf '%-44s %12s %12s %14s %14s\n' "configuration" "dirty s" "pages/sec" "get log us" "clear log us"
printf '%-44s %12s %12s %14s %14s\n' "-------------" "-------" "---------" "----------" "------------"
awk -v d="$hd" -v p="$hp" 'BEGIN {printf "%-44s %12.4f %12.0f %14s %14s\n", "host threads rewrite (--no-kvm -c 0,1)", d, p/d, "-", "-"}'
awk -v d="$kd" -v p="$kp" -v g="$kg" -v c="$kc" 'BEGIN {printf "%-44s %12.4f %12.0f %14.1f %14.1f\n", "kvm vCPUs dirty, bitmap exact (-c 0,1)", d, p/d, g*1e6, c*1e6}'

printf '\nload average after: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
