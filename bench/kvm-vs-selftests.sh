#!/usr/bin/env bash
# `tracekit bench` side by side with the kernel's own KVM selftests (6.12, built from Debian's
# linux-source-6.12 by bench/kvm-selftests.sh into a cache outside the repository).
#
# Every configuration runs the selftest and tracekit with the same vCPUs, memory per vCPU,
# backing, userfaultfd mode and pinning (-c 0 or -c 0,1 in both; tracekit's -c also pins each
# userfaultfd handler next to its vCPU, the selftest leaves its handlers unpinned). tracekit runs
# twice: at CPL 0 (--supervisor, the selftest's privilege level) and at CPL 3 (its default).
# The REPS repetitions are interleaved: each repetition runs every configuration once, so load
# changes on this shared machine hit all columns alike; the table shows medians and the ratios
# of medians.
#
# One definition of pages/sec for both: guest pages of test memory / wall time of the fault
# phase (with -o every vCPU visits all the memory, but each page is faulted once). For the
# selftest that is its "Total guest execution time" (vCPU threads created to all joined); for
# tracekit, total_seconds (first vCPU released to last done). The selftest's own printed rate is
# checked against pages / its time: a difference above 0.1% is reported (6.1 divided tv_nsec by
# 1e8 instead of 1e9).
# Dirty logging: all pages / the median time of one dirtying iteration (the selftest's
# "Iteration N dirty memory time", tracekit's iterations[].dirty_seconds).
#
# Usage: bash bench/kvm-vs-selftests.sh [REPS] [BYTES_PER_VCPU]   (root, /dev/kvm; default 3 and 128M)
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${1:-3}
BYTES=${2:-128M}
TARGET=${CARGO_TARGET_DIR:-target}
[ -n "${TK_SKIP_BUILD:-}" ] || cargo build --release -q -p tracekit
TK="$TARGET/release/tracekit"
command -v jq >/dev/null || { echo "bench/kvm-vs-selftests.sh: jq not found (apt-get install jq)" >&2; exit 1; }
ST=$(bash bench/kvm-selftests.sh)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
PAGE=4096
bytes_of() { numfmt --from=iec "$1"; }
PAGES_PER_VCPU=$(( $(bytes_of "$BYTES") / PAGE ))

# Configurations: NAME VCPUS SELFTEST_ARGS | TRACEKIT_ARGS ("-": tracekit cannot run it).
CONFIGS=()
for V in 1 2; do
    for B in anonymous:anonymous shmem:shared anonymous_thp:anonymous-thp; do
        S=${B%%:*} T=${B##*:}
        CONFIGS+=("kernel-$S-$V|$V|-s $S|-s $T")
        CONFIGS+=("missing-$S-$V|$V|-s $S -u MISSING|-s $T -u")
    done
    CONFIGS+=("minor-shmem-$V|$V|-s shmem -u MINOR|-s shared -u --minor")
done
# Hugetlb backings (2 MiB pages) only when enough are reserved in /proc/sys/vm/nr_hugepages.
HUGE_FREE=$(awk '/^HugePages_Free:/ {print $2}' /proc/meminfo)
if [ "$HUGE_FREE" -ge $((2 * $(bytes_of "$BYTES") / (2 << 20))) ]; then
    for V in 1 2; do
        CONFIGS+=("kernel-hugetlb-$V|$V|-s anonymous_hugetlb|-s hugetlb")
        CONFIGS+=("missing-hugetlb-$V|$V|-s anonymous_hugetlb -u MISSING|-s hugetlb -u")
        CONFIGS+=("minor-shared_hugetlb-$V|$V|-s shared_hugetlb -u MINOR|-s shared-hugetlb -u --minor")
    done
else
    echo "bench/kvm-vs-selftests.sh: no hugetlb rows ($HUGE_FREE free 2 MiB pages; reserve them in /proc/sys/vm/nr_hugepages)" >&2
fi
# Knobs: two reader threads per uffd, and overlapping vCPU memory (-o implies one uffd).
CONFIGS+=("readers-2|2|-u MISSING -r 2|-u -r 2")
CONFIGS+=("overlap-2|2|-u MISSING -o|-u --overlap")
# Dirty logging: NAME VCPUS SELFTEST_ARGS | TRACEKIT_ARGS (the same flags in both but --overlap).
DIRTY=()
for V in 1 2; do DIRTY+=("dirty-$V|$V||"); done
DIRTY+=("dirty-w50a|2|-w 50 -a|-w 50 -a")
DIRTY+=("dirty-x8|2|-x 8|-x 8")
DIRTY+=("dirty-g|2|-g|-g")
DIRTY+=("dirty-e|2|-e|-e")

fail() { echo "bench/kvm-vs-selftests.sh: $*" >&2; exit 1; }

# selftest NAME V ARGS: one run; appends pages/sec to $WORK/NAME.st and the printed/computed ratio
# to $WORK/printed.
selftest() {
    local name=$1 v=$2 args=$3 out t printed pages
    # shellcheck disable=SC2086
    out=$("$ST/demand_paging_test" -v "$v" -b "$BYTES" -c "$(seq -s, 0 $((v - 1)))" $args 2>&1) ||
        fail "demand_paging_test $args failed: $out"
    echo "$name" >>"$WORK/$name.st.runs"
    t=$(sed -n 's/^Total guest execution time:\s*\([0-9.]*\)s$/\1/p' <<<"$out")
    printed=$(sed -n 's/^Overall demand paging rate:\s*\([0-9.]*\) pgs\/sec$/\1/p' <<<"$out")
    pages=$((PAGES_PER_VCPU * v))
    awk -v p="$pages" -v t="$t" 'BEGIN {printf "%.1f\n", p / t}' >>"$WORK/$name.st"
    awk -v p="$pages" -v t="$t" -v r="$printed" -v n="$v vCPU, $args" \
        'BEGIN {printf "%.4f\t%s\n", r / (p / t), n}' >>"$WORK/printed"
}

# tracekit NAME V SUFFIX ARGS...: one run; appends pages/sec to $WORK/NAME.SUFFIX.
tracekit() {
    local name=$1 v=$2 suffix=$3
    shift 3
    "$TK" bench demand-paging -v "$v" -b "$BYTES" -c "$(seq -s, 0 $((v - 1)))" "$@" --json -o "$WORK/r.json"
    [ "$(jq .verified "$WORK/r.json")" = true ] || fail "$name ($*) not verified"
    jq -r .pages_per_sec "$WORK/r.json" >>"$WORK/$name.$suffix"
    echo "$name" >>"$WORK/$name.$suffix.runs"
}

# Dirty logging: the selftest's and tracekit's pages/sec per dirtying iteration (all pages
# visited / the iteration's time).
ITER=3
dirty_selftest() {
    local name=$1 v=$2 args=$3 out
    # shellcheck disable=SC2086
    out=$("$ST/dirty_log_perf_test" -v "$v" -b "$BYTES" -i "$ITER" -c "$(seq -s, 0 $((v - 1)))" $args 2>&1) ||
        fail "dirty_log_perf_test $args failed: $out"
    sed -n 's/^Iteration [0-9]* dirty memory time: \([0-9.]*\)s$/\1/p' <<<"$out" |
        awk -v p=$((PAGES_PER_VCPU * v)) '{print p / $1}' >>"$WORK/$name.st"
    sed -n 's/^Disabling dirty logging time: \([0-9.]*\)s$/\1/p' <<<"$out" >>"$WORK/$name.st.off"
    echo "$name" >>"$WORK/$name.st.runs"
}
dirty_tracekit() {
    local name=$1 v=$2 suffix=$3
    shift 3
    "$TK" bench dirty-log -v "$v" -b "$BYTES" -i "$ITER" -c "$(seq -s, 0 $((v - 1)))" "$@" --json -o "$WORK/d.json"
    [ "$(jq '.verified and .bitmap_exact' "$WORK/d.json")" = true ] || fail "dirty-log $* not verified"
    jq -r --argjson p $((PAGES_PER_VCPU * v)) '.iterations[].dirty_seconds | $p / .' "$WORK/d.json" >>"$WORK/$name.$suffix"
    jq -r .disable_seconds "$WORK/d.json" >>"$WORK/$name.$suffix.off"
    echo "$name" >>"$WORK/$name.$suffix.runs"
}

# TK_ONLY=REGEX runs only the configurations whose name matches (e.g. TK_ONLY=hugetlb).
if [ -n "${TK_ONLY:-}" ]; then
    keep() {
        local c
        for c in "$@"; do
            if [[ ${c%%|*} =~ $TK_ONLY ]]; then printf '%s\n' "$c"; fi
        done
    }
    mapfile -t CONFIGS < <(keep "${CONFIGS[@]}")
    mapfile -t DIRTY < <(keep "${DIRTY[@]}")
fi

for rep in $(seq "$REPS"); do
    echo "bench/kvm-vs-selftests.sh: repetition $rep of $REPS" >&2
    for c in "${CONFIGS[@]}"; do
        IFS='|' read -r name v sargs targs <<<"$c"
        selftest "$name" "$v" "$sargs"
        # shellcheck disable=SC2086
        if [ "$targs" != - ]; then
            tracekit "$name" "$v" cpl0 $targs --supervisor
            tracekit "$name" "$v" cpl3 $targs
        fi
    done
    for c in "${DIRTY[@]}"; do
        IFS='|' read -r name v sargs targs <<<"$c"
        dirty_selftest "$name" "$v" "$sargs"
        # shellcheck disable=SC2086
        dirty_tracekit "$name" "$v" cpl0 $targs --supervisor
        # shellcheck disable=SC2086
        dirty_tracekit "$name" "$v" cpl3 $targs
    done
done

median() { sort -g | awk '{v[NR]=$1} END {if (NR) print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2; else print "-"}'; }
med() { [ -s "$WORK/$1" ] && median <"$WORK/$1" || echo -; }
# Runs that passed their checks (the script stops at the first that does not): the selftest's
# exit status 0, tracekit's verified pages (and exact bitmaps).
runs() { [ -s "$WORK/$1.runs" ] && wc -l <"$WORK/$1.runs" || echo 0; }
row() {
    local label=$1 name=$2 st t0 t3 ok
    st=$(med "$name.st") t0=$(med "$name.cpl0") t3=$(med "$name.cpl3")
    ok="$(runs "$name.st") + $(( $(runs "$name.cpl0") + $(runs "$name.cpl3") ))"
    awk -v l="$label" -v s="$st" -v a="$t0" -v b="$t3" -v ok="$ok" 'BEGIN {
        r0 = (a == "-") ? "-" : sprintf("%.2fx", a / s)
        r3 = (b == "-") ? "-" : sprintf("%.2fx", b / s)
        printf "| %-40s | %10.0f | %10s | %6s | %10s | %6s | %8s |\n", l, s, (a == "-") ? "-" : sprintf("%.0f", a), r0, (b == "-") ? "-" : sprintf("%.0f", b), r3, ok
    }'
}

printf '\nmachine: %s CPUs, %s, load average %s\n' "$(nproc)" "$(uname -r)" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf 'selftests: %s (linux-source-6.12 %s)\n' "$ST" "$(dpkg-query -W -f '${Version}' linux-source-6.12)"
printf '%s per vCPU (4 KiB guest pages), %s interleaved repetitions, medians\n' "$BYTES" "$REPS"
printf 'verified: selftest runs that exited 0 + tracekit runs with every page (and every dirty bitmap) verified\n\n'
printf '| %-40s | %10s | %10s | %6s | %10s | %6s | %8s |\n' "configuration (pages/sec)" "selftest" "tk CPL 0" "ratio" "tk CPL 3" "ratio" "verified"
printf '|%s|%s|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..42})" "------------" "------------" "--------" "------------" "--------" "----------"
for c in "${CONFIGS[@]}"; do
    IFS='|' read -r name v sargs _ <<<"$c"
    row "$v vCPU, $sargs" "$name"
done
for c in "${DIRTY[@]}"; do
    IFS='|' read -r name v sargs _ <<<"$c"
    row "$v vCPU, dirty-log pass ${sargs:-(-i $ITER)}" "$name"
done
if [ ${#DIRTY[@]} -gt 0 ]; then
    # ms SECONDS: milliseconds with 3 decimals ("-" stays).
    ms() { awk -v s="$1" 'BEGIN {print (s == "-") ? "-" : sprintf("%.3f", s * 1000)}'; }
    printf '\ndisabling dirty logging at the end (ms, medians; -e: the vCPUs keep dirtying meanwhile):\n'
    printf '| %-40s | %10s | %10s | %10s |\n' "configuration" "selftest" "tk CPL 0" "tk CPL 3"
    printf '|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..42})" "------------" "------------" "------------"
    for c in "${DIRTY[@]}"; do
        IFS='|' read -r name v sargs _ <<<"$c"
        printf '| %-40s | %10s | %10s | %10s |\n' "$v vCPU, dirty-log ${sargs:-(-i $ITER)}" \
            "$(ms "$(med "$name.st.off")")" "$(ms "$(med "$name.cpl0.off")")" "$(ms "$(med "$name.cpl3.off")")"
    done
fi
if [ -s "$WORK/printed" ]; then
    printf '\nselftest printed "Overall demand paging rate" / (pages of memory / its time), by configuration:\n'
    sort -t$'\t' -k2,2 -k1,1g "$WORK/printed" | awk -F'\t' '
        {if (!($2 in lo)) {lo[$2] = $1; order[++n] = $2}; hi[$2] = $1}
        END {for (i = 1; i <= n; i++) {k = order[i]; printf "  %-40s %s..%s%s\n", k, lo[k], hi[k], (hi[k] > 1.001 || lo[k] < 0.999) ? "  <- differs" : ""}}'
fi
printf 'load average after: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
