#!/usr/bin/env python3
"""Benchmark: tracekit's probe engine on a LoongArch64 program under QEMU, against the way a
debugger counts breakpoint hits over the same stub.

Both tools drive the same program (crates/tracekit-probe/testdata/loongarch/probe-target.c,
`la-probe-target N`: each probed function called N times) through the same QEMU 7.2 gdb stub
(`qemu-loongarch64-static -g PORT`), in one run, interleaved, median of R rounds:

  untraced          qemu-loongarch64-static la-probe-target N (no stub)
  tracekit entry    uprobe on `work` (C code; its first instruction runs out of line, slot
                    jumps back: one stop per hit)
  tracekit sim      uprobe on `first_b` (a `b`, simulated: one stop per hit)
  tracekit ret      uprobe + uretprobe on `work` (two stops per call)
  rsp floor         the least any stub client can do per hit: `Z0` on `first_b` (a `b` over
                    one instruction) and, at each stop, `c ADDR` to the branch target (the
                    branch emulated with no register read): QEMU's own cost of a stop
  rsp floor spin    the same, polling the socket instead of sleeping in recv (saves the
                    wake-up of an idle CPU on every reply)
  rsp step-over     a minimal gdb remote client in this script doing what gdb does to count
                    a breakpoint (`break` + `ignore`): per hit `z0` (remove), `s` (step the
                    original instruction in place), `Z0` (re-insert), `c`. gdb itself cannot
                    be run: Debian 12's gdb-multiarch (13.1) has no LoongArch support (`set
                    architecture` lists none; QEMU's target description is rejected).

  tracekit fixed     uprobe on `main` (one hit): tracekit's start-up (process, ELF symbols,
                    connecting, the injected mmap/mprotect), subtracted from the tracekit cases

Per stop = (median wall time - baseline) / stops, the baseline being the untraced run (for the
stub clients in this script) or `tracekit fixed` (for tracekit). Hit counts are checked.
Usage: python3 bench/probe-loongarch.py [N] [R]   (defaults 2000 and 5)
"""
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
R = int(sys.argv[2]) if len(sys.argv) > 2 else 5
QEMU = "qemu-loongarch64-static"


def build(work):
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "tracekit"], cwd=ROOT, check=True)
    prog = os.path.join(work, "la-probe-target")
    src = os.path.join(ROOT, "crates/tracekit-probe/testdata/loongarch/probe-target.c")
    subprocess.run(["clang-19", "--target=loongarch64-linux-gnu", "-nostdlib", "-static",
                    "-fuse-ld=lld", "-ffreestanding", "-fno-stack-protector", "-mno-lsx", "-O1",
                    "-g", "-o", prog, src], check=True)
    target_dir = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    return prog, os.path.join(target_dir, "release", "tracekit")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def untraced(prog):
    t = time.perf_counter_ns()
    subprocess.run([QEMU, prog, str(N)], stdout=subprocess.DEVNULL, check=False)
    return time.perf_counter_ns() - t, None


def under_stub(prog, client):
    """Starts QEMU waiting on a port, runs `client(port)` (returns hits), times both."""
    port = free_port()
    t = time.perf_counter_ns()
    q = subprocess.Popen([QEMU, "-g", str(port), prog, str(N)], stdout=subprocess.DEVNULL)
    hits = client(port)
    q.wait()
    return time.perf_counter_ns() - t, hits


def tracekit(tk, prog, specs):
    def client(port):
        out = subprocess.run([tk, "probe", "--target", f"qemu-gdb:127.0.0.1:{port}", "--json"]
                             + [s.replace("BIN", prog) for s in specs],
                             capture_output=True, text=True)
        import json
        v = json.loads(out.stdout)
        return sum(p["hits"] for p in v["probes"])
    return client


class Rsp:
    """The smallest gdb remote client: one packet in flight; with `spin`, it polls the socket
    instead of sleeping in recv (as tracekit does for 150 us)."""

    def __init__(self, port, spin=False):
        self.spin = spin
        for _ in range(200):
            try:
                self.s = socket.create_connection(("127.0.0.1", port))
                break
            except OSError:
                time.sleep(0.01)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.ack = True
        if self.req("QStartNoAckMode") == "OK":
            self.ack = False

    def req(self, p):
        self.s.sendall(b"$%s#%02x" % (p.encode(), sum(p.encode()) & 0xFF))
        while True:
            m = re.search(rb"\$([^#]*)#..", self.buf)
            if m:
                self.buf = self.buf[m.end():]
                if self.ack:
                    self.s.sendall(b"+")
                return m.group(1).decode()
            if self.spin:
                try:
                    self.buf += self.s.recv(65536, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    pass
            else:
                self.buf += self.s.recv(65536)


def symbol(prog, name):
    nm = subprocess.run(["llvm-nm-19", prog], capture_output=True, text=True).stdout
    return int(next(l.split()[0] for l in nm.splitlines() if l.endswith(" " + name)), 16)


def rsp_floor(prog, spin=False):
    first_b = symbol(prog, "first_b")

    def client(port):
        r = Rsp(port, spin)
        r.req(f"Z0,{first_b:x},4")
        hits = 0
        reply = r.req("c")
        while reply.startswith("T"):
            hits += 1
            reply = r.req(f"c{first_b + 8:x}")
        return hits
    return client


def rsp_step_over(prog):
    work = symbol(prog, "work")

    def client(port):
        r = Rsp(port)
        r.req(f"Z0,{work:x},4")
        hits = 0
        while r.req("c").startswith("T"):
            hits += 1
            r.req(f"z0,{work:x},4")
            r.req("s")
            r.req(f"Z0,{work:x},4")
        return hits
    return client


def main():
    with tempfile.TemporaryDirectory() as work:
        prog, tk = build(work)
        cases = [
            ("untraced", lambda: untraced(prog), 0),
            ("tracekit fixed", lambda: under_stub(prog, tracekit(tk, prog, ["uprobe:BIN:main"])), 1),
            ("tracekit entry", lambda: under_stub(prog, tracekit(tk, prog, ["uprobe:BIN:work"])), N),
            ("tracekit sim", lambda: under_stub(prog, tracekit(tk, prog, ["uprobe:BIN:first_b"])), N),
            ("tracekit ret", lambda: under_stub(prog, tracekit(tk, prog, ["BIN:work"])), 2 * N),
            ("rsp floor", lambda: under_stub(prog, rsp_floor(prog)), N),
            ("rsp floor spin", lambda: under_stub(prog, rsp_floor(prog, spin=True)), N),
            ("rsp step-over", lambda: under_stub(prog, rsp_step_over(prog)), N),
        ]
        times = {name: [] for name, _, _ in cases}
        for _ in range(R):
            for name, run, want in cases:
                ns, hits = run()
                if want and hits != want:
                    sys.exit(f"{name}: {hits} hits, expected {want}")
                times[name].append(ns)
        med = {k: statistics.median(v) for k, v in times.items()}
        base = med["untraced"]
        fixed = med["tracekit fixed"]
        per_hit = {
            name: (med[name] - (fixed if name.startswith("tracekit") else base)) / max(want, 1)
            for name, _, want in cases
        }
        load = open("/proc/loadavg").read().split()[:3]
        print(f"probe-loongarch benchmark: N={N} calls per function, median of {R} rounds, "
              f"{os.cpu_count()} CPUs, load {' '.join(load)}; QEMU: "
              + subprocess.run([QEMU, "--version"], capture_output=True, text=True).stdout.splitlines()[0])
        print(f"\n{'case':<16} {'stops':>7} {'wall ms':>9} {'us/stop':>9} {'x floor':>8} {'x spin floor':>13}")
        print(f"{'-' * 16} {'-' * 7} {'-' * 9} {'-' * 9} {'-' * 8} {'-' * 13}")
        for name, _, want in cases:
            if want <= 1:
                print(f"{name:<16} {want:>7} {med[name] / 1e6:>9.1f}")
                continue
            ratio = per_hit[name] / per_hit["rsp floor"]
            spin = per_hit[name] / per_hit["rsp floor spin"]
            print(f"{name:<16} {want:>7} {med[name] / 1e6:>9.1f} {per_hit[name] / 1e3:>9.1f} {ratio:>8.2f} {spin:>13.2f}")


main()
