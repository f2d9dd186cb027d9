#!/usr/bin/env bash
# Benchmark: XDP live frames (BPF_F_TEST_XDP_LIVE_FRAMES), `tracekit prog run --live` beside
# the libbpf floor and Debian's xdp-trafficgen, in one run, through the same veth pair.
#
# Set-up: a veth pair whose far end is in a network namespace of its own, with
# bpf/obj/xdp_count_udp9.bpf.o attached there (native XDP), counting the UDP packets to port 9
# that arrive and dropping them. Every tool sends the same 42-byte UDP frame to port 9 by
# running bpf/obj/xdp_live_tx.bpf.o (XDP_TX) with ingress_ifindex = the near end.
#
#   tracekit     one process: `prog run --live --repeat R --batches K` (a cold call of one
#                frame, then K calls of R frames)
#   libbpf       bench/live-frames-libbpf.c (built here with gcc and libbpf-dev): the program
#                loaded by libbpf, K calls of bpf_prog_test_run_opts() of R frames: the floor
#   xdp-trafficgen  `xdp-trafficgen udp -n K*R -p 9` on the near end (xdp-tools 1.3.1)
# Mpps (kernel) is from the kernel's ns per frame, median over the K calls; Mpps (wall) is
# frames per call / median wall time of a call (it includes the XDP dispatcher switch the
# kernel makes around every call with repeat > 1); "arrived" is what the counter saw, which must equal
# what each tool says it sent.
#
# Usage: bash bench/prog-live.sh [K] [R] [BATCH]   (root; xdp-tools, libbpf-dev, gcc, iproute2)
set -euo pipefail
cd "$(dirname "$0")/.."
K=${1:-10}
R=${2:-1000000}
BATCH=${3:-64}
TARGET=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p tracekit
TK="$TARGET/release/tracekit"
WORK=$(mktemp -d)
NS=tracekit-bench-$$
NEAR=tkb$$a
FAR=tkb$$b
cleanup() { ip netns del "$NS" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

gcc -O2 -Wall bench/live-frames-libbpf.c -lbpf -o "$WORK/libbpf-peer"
ip netns add "$NS"
ip link add "$NEAR" type veth peer name "$FAR" netns "$NS"
sysctl -qw "net.ipv6.conf.$NEAR.disable_ipv6=1"
ip netns exec "$NS" sysctl -qw "net.ipv6.conf.$FAR.disable_ipv6=1"
ip link set "$NEAR" up
ip -n "$NS" link set "$FAR" up
ip -n "$NS" link set dev "$FAR" xdpdrv obj bpf/obj/xdp_count_udp9.bpf.o sec xdp
COUNTER=$(ip -n "$NS" -j link show dev "$FAR" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["xdp"]["prog"]["id"])')
# The counter's map, read by tracekit itself (a TCP packet: the counter does not count it).
arrived() {
    "$TK" prog run "id:$COUNTER" --packet 'proto="tcp"' --dump-maps --json |
        python3 -c 'import json,sys; v=json.load(sys.stdin)["maps"][0]["entries"][0]["value"]; print(int.from_bytes(bytes.fromhex(v), "little"))'
}
median() { sort -n | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }
now_ns() { date +%s%N; }

printf '\nmachine: %s CPUs, %s, load average %s\n' "$(nproc)" "$(uname -r)" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf 'frames: 42-byte UDP to port 9, %s calls of %s frames, batches of %s, veth %s -> %s (netns %s)\n\n' "$K" "$R" "$BATCH" "$NEAR" "$FAR" "$NS"
printf '%-16s  %14s  %12s  %12s  %12s  %s\n' tool "ns/frame (med)" "Mpps kernel" "Mpps wall" "frames sent" "arrived"

before=$(arrived)
t0=$(now_ns)
"$TK" prog run bpf/obj/xdp_live_tx.bpf.o xdp_live_tx --packet 'proto="udp", dst_port=9' \
    --dev "$NEAR" --live --batch-size "$BATCH" --repeat "$R" --batches "$K" --json -o "$WORK/tk.json"
t1=$(now_ns)
after=$(arrived)
python3 - "$WORK/tk.json" "$((t1 - t0))" "$((after - before))" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
ns = r["duration_ns"]["median"]
wall = sum(r["batch_means_ns"]) * r["repeat"]
calls_wall = r["wall_ns_per_call"]["median"] * r["batches"]
sent = r["live_frames"]["frames_sent"]
print(f'{"tracekit":<16}  {ns:>14.1f}  {1e3/ns:>12.2f}  {r["repeat"]*r["batches"]/calls_wall*1e3:>12.2f}  {sent:>12}  {sys.argv[3]}')
PY

before=$(arrived)
"$WORK/libbpf-peer" bpf/obj/xdp_live_tx.bpf.o xdp_live_tx "$NEAR" "$R" "$K" "$BATCH" >"$WORK/libbpf.txt"
after=$(arrived)
# The kernel's duration is already per frame (the mean over the call's repeats).
ns=$(cut -d' ' -f1 "$WORK/libbpf.txt" | median)
wall=$(cut -d' ' -f2 "$WORK/libbpf.txt" | median)
awk -v ns="$ns" -v wall="$wall" -v k="$K" -v r="$R" -v got="$((after - before))" \
    'BEGIN {printf "%-16s  %14.1f  %12.2f  %12.2f  %12d  %d\n", "libbpf (floor)", ns, 1e3 / ns, r / wall * 1e3, k * r, got}'

before=$(arrived)
if out=$(timeout 120 xdp-trafficgen udp -n "$((K * R))" -p 9 "$NEAR" 2>&1); then
    after=$(arrived)
    printf '%-16s  %14s  %12s  %12s  %12d  %d\n' xdp-trafficgen - - "(see below)" "$((K * R))" "$((after - before))"
    echo "$out" | tail -5
else
    printf '%-16s  did not run: %s\n' xdp-trafficgen "$(echo "$out" | grep -v '^ *libbpf' | tail -1)"
    echo "$out" | grep -m1 'failed to find kernel BTF type' | sed 's/^ */  (/; s/$/)/'
fi
printf '\nBPF programs loaded on the machine during the run, by type: %s\n' \
    "$(bpftool -j prog show 2>/dev/null | python3 -c 'import collections,json,sys; print(dict(collections.Counter(p.get("type") for p in json.load(sys.stdin))))')"
