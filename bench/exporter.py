#!/usr/bin/env python3
"""Benchmark of `tracekit exporter`: scrape latency and exporter CPU per scrape at 10, 300 and
3000 series, and the syscall overhead while exporting beside `trace summary`'s, in one run.

Series: processes made in a cgroup of their own (`--by process -e getppid --cgroup`), each
making 10 getppid calls, so N processes give N series. Each size is scraped SCRAPES times;
latency is the wall time of a whole HTTP GET of /metrics, CPU the exporter's user+system
time (from /proc) per scrape. Syscall overhead: the getppid workload (CALLS calls, timing
itself) untraced, under `tracekit exporter -e getppid`, and under `tracekit trace summary
-e getppid`, interleaved for ROUNDS rounds.

usage: bench/exporter.py [--scrapes K] [--rounds R] [--calls N]     (root)
"""
import argparse, os, socket, statistics, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release")
TRACEKIT = os.path.join(REL, "tracekit")
WORKLOAD = os.path.join(REL, "tracekit-syscall-workload")
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cgroup2():
    for line in open("/proc/self/mounts"):
        f = line.split()
        if f[2] == "cgroup2":
            return f[1]
    sys.exit("no cgroup v2 hierarchy mounted")


def cpu_seconds(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(") ", 1)[1].split()
    return (int(f[11]) + int(f[12])) / TICK


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
        return r.read()


def start_exporter(args, port):
    p = subprocess.Popen([TRACEKIT, "exporter", "--listen", f"127.0.0.1:{port}"] + args,
                         stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            scrape(port)
            return p
        except OSError:
            time.sleep(0.05)
    sys.exit("the exporter did not answer")


def series_sizes(scrapes):
    rows = []
    for n in (10, 300, 3000):
        cg = os.path.join(cgroup2(), f"tracekit-bench-{os.getpid()}-{n}")
        os.mkdir(cg)
        port = free_port()
        exp = start_exporter(["--by", "process", "-e", "getppid", "--cgroup", cg,
                              "--max-series", "100000"], port)
        w = subprocess.Popen([WORKLOAD, "wait", "fork", str(n), "10"], stdin=subprocess.PIPE)
        open(os.path.join(cg, "cgroup.procs"), "w").write(str(w.pid))
        w.communicate(b"go\n")
        body = scrape(port)
        series = body.count(b"tracekit_syscall_duration_seconds_count{")
        lat = []
        cpu0 = cpu_seconds(exp.pid)
        for _ in range(scrapes):
            t = time.perf_counter()
            scrape(port)
            lat.append(time.perf_counter() - t)
        cpu = (cpu_seconds(exp.pid) - cpu0) / scrapes
        exp.terminate()
        exp.wait()
        os.rmdir(cg)
        rows.append((n, series, len(body), statistics.median(lat), max(lat), cpu))
    return rows


def overhead(rounds, calls):
    tools = {
        "untraced": lambda w: w,
        "tracekit exporter -e getppid": None,
        "tracekit trace summary -e getppid": lambda w: [TRACEKIT, "trace", "summary", "-e", "getppid",
                                                          "-o", "/dev/null", "--"] + w,
    }
    results = {t: [] for t in tools}
    with tempfile.TemporaryDirectory() as tmp:
        tf = os.path.join(tmp, "t")
        for r in range(rounds):
            for t in sorted(tools, key=lambda _: os.urandom(1)):
                w = [WORKLOAD, "getppid", str(calls), "timefile", tf]
                if tools[t] is None:
                    port = free_port()
                    exp = start_exporter(["-e", "getppid"], port)
                    subprocess.run(w, check=True)
                    exp.terminate()
                    exp.wait()
                else:
                    subprocess.run(tools[t](w), check=True, stderr=subprocess.DEVNULL)
                results[t].append(int(open(tf).read()) / calls)
    return {t: statistics.median(v) for t, v in results.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scrapes", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=1_000_000)
    a = ap.parse_args()
    for exe in (TRACEKIT, WORKLOAD):
        if not os.path.exists(exe):
            sys.exit(f"missing {exe}: run `cargo build --release --workspace --bins` first")
    rows = series_sizes(a.scrapes)
    print(f"\nexporter scrapes, {a.scrapes} per size; kernel {os.uname().release}, {os.cpu_count()} CPUs\n")
    hdr = f"{'processes':>9} {'series':>7} {'bytes':>9} {'median ms':>10} {'max ms':>8} {'CPU ms/scrape':>14}"
    print(hdr)
    print("-" * len(hdr))
    for n, series, size, med, mx, cpu in rows:
        print(f"{n:>9} {series:>7} {size:>9} {med * 1e3:>10.2f} {mx * 1e3:>8.2f} {cpu * 1e3:>14.2f}")
    med = overhead(a.rounds, a.calls)
    base = med["untraced"]
    print(f"\nsyscall overhead while exporting, getppid, median of {a.rounds} interleaved rounds ({a.calls} calls)\n")
    hdr = f"{'tool':<36} {'ns/call':>8} {'overhead ns':>12}"
    print(hdr)
    print("-" * len(hdr))
    for t, v in med.items():
        print(f"{t:<36} {v:>8.1f} {v - base:>12.1f}")


if __name__ == "__main__":
    main()
