#!/usr/bin/env python3
"""Benchmark of `tracekit trace summary` against its peers, in one run, interleaved.

For each tool the same workload (exactly N getppid calls, single-threaded and split over
2 threads) runs ROUNDS times, tools shuffled in every round. Tools: the empty tp_btf pair
and the pair reading the clock (floors), tracekit in its default, --hist, --no-latency and a
non-matching filter (-e read), bpftrace's stats(), hist() and count() one-liners, perf
trace -s and strace -c -f. The workload measures its own
wall time (so tool start-up is not counted) and each tool's count of getppid is checked
against N. Prints, per tool: ns per syscall, overhead over the untraced run, the ratio of
that overhead to the empty-BPF floor, and whether the count was exact.

usage: bench/trace-summary.py [--rounds R] [--calls N] [--slow-calls M] [--only REGEX]
Needs root, and perf, strace, bpftrace (apt-get install linux-perf strace bpftrace).
"""
import argparse, json, os, random, re, shutil, statistics, subprocess, sys, tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release")
WORKLOAD = os.path.join(REL, "tracekit-syscall-workload")
TRACEKIT = os.path.join(REL, "tracekit")
FLOOR = os.path.join(REL, "examples", "floor")
GETPPID = 110  # x86-64

BPFTRACE_PROG = (
    "tracepoint:raw_syscalls:sys_enter /pid == cpid/ { @start[tid] = nsecs; } "
    "tracepoint:raw_syscalls:sys_exit /@start[tid]/ { @lat[args->id] = stats(nsecs - @start[tid]); "
    "delete(@start[tid]); }"
)
BPFTRACE_HIST = (
    "tracepoint:raw_syscalls:sys_enter /pid == cpid/ { @start[tid] = nsecs; } "
    "tracepoint:raw_syscalls:sys_exit /@start[tid]/ { @hist[args->id] = hist(nsecs - @start[tid]); "
    "delete(@start[tid]); }"
)
BPFTRACE_COUNT = "tracepoint:raw_syscalls:sys_exit /pid == cpid/ { @count[args->id] = count(); }"


def workload_args(threads, n, timefile):
    steps = ["getppid", str(n)] if threads == 1 else ["threads", str(threads), str(n // threads)]
    return [WORKLOAD] + steps + ["timefile", timefile]


def count_tracekit(out):
    doc = json.load(open(out))
    return next((s["calls"] for s in doc["syscalls"] if s["name"] == "getppid"), 0)


def count_perf(out):
    # perf prints one table per thread; sum the getppid rows.
    return sum(int(m.group(1)) for m in re.finditer(r"^\s+getppid\s+(\d+)", open(out).read(), re.M))


def count_strace(out):
    m = re.search(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?getppid\s*$", open(out).read(), re.M)
    return int(m.group(1)) if m else 0


def count_bpftrace(out):
    m = re.search(r"@lat\[%d\]: count (\d+)" % GETPPID, open(out).read())
    return int(m.group(1)) if m else 0


def count_bpftrace_hist(out):
    # The @hist[110] block: one "[lo, hi)   count |@@@|" line per bucket.
    m = re.search(r"^@hist\[%d\]: *\n((?:\[.*\n)+)" % GETPPID, open(out).read(), re.M)
    return sum(int(l.split(")")[1].split("|")[0]) for l in m.group(1).splitlines()) if m else 0


def count_bpftrace_count(out):
    m = re.search(r"@count\[%d\]: (\d+)" % GETPPID, open(out).read())
    return int(m.group(1)) if m else 0


def nothing_counted(n, out):
    """The filter matches none of the workload's calls: exact means a count of 0."""
    doc = json.load(open(out))
    return n if all(s["name"] != "getppid" for s in doc["syscalls"]) else -1


def tools(tmp):
    out = os.path.join(tmp, "out")
    return {
        "untraced": (lambda w: w, None),
        "empty tp_btf pair (floor)": (lambda w: [FLOOR] + w, None),
        "  + bpf_ktime_get_ns each": (lambda w: [FLOOR, "--clock"] + w, None),
        "tracekit trace summary": (lambda w: [TRACEKIT, "trace", "summary", "--json", "-o", out, "--"] + w,
                                   lambda n: count_tracekit(out)),
        "tracekit --hist": (lambda w: [TRACEKIT, "trace", "summary", "--hist", "--json", "-o", out, "--"] + w,
                            lambda n: count_tracekit(out)),
        "tracekit --no-latency": (lambda w: [TRACEKIT, "trace", "summary", "--no-latency", "--json", "-o", out, "--"] + w,
                                  lambda n: count_tracekit(out)),
        "tracekit -e read (no match)": (lambda w: [TRACEKIT, "trace", "summary", "-e", "read", "--json", "-o", out, "--"] + w,
                                        lambda n: nothing_counted(n, out)),
        "bpftrace (stats per syscall)": (lambda w: ["bpftrace", "-q", "-o", out, "-e", BPFTRACE_PROG, "-c", " ".join(w)],
                                         lambda n: count_bpftrace(out)),
        "bpftrace (hist per syscall)": (lambda w: ["bpftrace", "-q", "-o", out, "-e", BPFTRACE_HIST, "-c", " ".join(w)],
                                        lambda n: count_bpftrace_hist(out)),
        "bpftrace (count per syscall)": (lambda w: ["bpftrace", "-q", "-o", out, "-e", BPFTRACE_COUNT, "-c", " ".join(w)],
                                         lambda n: count_bpftrace_count(out)),
        "perf trace -s": (lambda w: ["perf", "trace", "-s", "-o", out, "--"] + w, lambda n: count_perf(out)),
        "strace -c -f": (lambda w: ["strace", "-c", "-f", "-o", out] + w, lambda n: count_strace(out)),
    }


SLOW = {"perf trace -s", "strace -c -f"}


def run_once(cmd_of, counter, threads, n, tmp):
    timefile = os.path.join(tmp, "time")
    if os.path.exists(timefile):
        os.remove(timefile)
    cmd = cmd_of(workload_args(threads, n, timefile))
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
    ns = int(open(timefile).read())
    return ns / n, (counter(n) if counter else n)


def attached_programs():
    """Tracing programs already loaded by others: they share the syscall hooks' cost."""
    try:
        out = subprocess.run(["bpftool", "prog", "show", "--json"], capture_output=True, text=True).stdout
        progs = json.loads(out or "[]")
    except (OSError, ValueError):
        return "unknown (bpftool missing)"
    kinds = ("tracepoint", "raw_tracepoint", "tracing", "kprobe", "perf_event")
    found = [f"{p.get('name', '?')} ({p['type']})" for p in progs if p.get("type") in kinds]
    return ", ".join(found) if found else "none"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=1_000_000, help="getppid calls for the BPF tools")
    ap.add_argument("--slow-calls", type=int, default=100_000, help="getppid calls for perf trace and strace")
    ap.add_argument("--only", help="only the tools whose name matches this regex (and the floors)")
    args = ap.parse_args()
    for exe in (WORKLOAD, TRACEKIT, FLOOR):
        if not os.path.exists(exe):
            sys.exit(f"missing {exe}: run `cargo build --release --workspace --bins --examples` first")
    if not os.path.isdir("/sys/kernel/tracing/events"):
        subprocess.run(["mount", "-t", "tracefs", "nodev", "/sys/kernel/tracing"], check=False)
    # Before any tool of ours runs: what others have attached shares the syscall hooks' cost.
    others = attached_programs()
    with tempfile.TemporaryDirectory() as tmp:
        table = tools(tmp)
        names = [t for t in table if t == "untraced" or shutil.which(table[t][0](["x"])[0]) or os.path.exists(table[t][0](["x"])[0])]
        if args.only:
            names = [t for t in names if table[t][1] is None or re.search(args.only, t)]
        results = {(t, th): [] for t in names for th in (1, 2)}
        exact = {(t, th): True for t in names for th in (1, 2)}
        for r in range(args.rounds):
            order = [(t, th) for t in names for th in (1, 2)]
            random.shuffle(order)
            for t, th in order:
                n = args.slow_calls if t in SLOW else args.calls
                per_call, count = run_once(table[t][0], table[t][1], th, n, tmp)
                results[(t, th)].append(per_call)
                exact[(t, th)] &= count == n
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    print(f"\nBPF programs of others attached at the start (bpftool prog show): {others}")
    print(f"\nsyscall tracing overhead, getppid, median of {args.rounds} interleaved rounds "
          f"({args.calls} calls; perf/strace {args.slow_calls}); kernel {os.uname().release}, {os.cpu_count()} CPUs\n")
    hdr = f"{'tool':<30} {'threads':>7} {'ns/call':>10} {'overhead ns':>12} {'x floor':>8} {'x clock floor':>14} {'exact count':>12}"
    print(hdr)
    print("-" * len(hdr))
    for th in (1, 2):
        base = statistics.median(results[("untraced", th)])
        floor_key = ("empty tp_btf pair (floor)", th)
        floor = statistics.median(results[floor_key]) - base if floor_key in results else None
        clock_key = ("  + bpf_ktime_get_ns each", th)
        clock = statistics.median(results[clock_key]) - base if clock_key in results else None
        for t in names:
            med = statistics.median(results[(t, th)])
            over = med - base
            ratio = f"{over / floor:.2f}" if floor and t != "untraced" else "-"
            cratio = f"{over / clock:.2f}" if clock and t not in ("untraced", "empty tp_btf pair (floor)") else "-"
            ex = "-" if t in ("untraced", "empty tp_btf pair (floor)", "  + bpf_ktime_get_ns each") else ("yes" if exact[(t, th)] else "NO")
            print(f"{t:<30} {th:>7} {med:>10.1f} {over:>12.1f} {ratio:>8} {cratio:>14} {ex:>12}")
        print()


if __name__ == "__main__":
    main()
