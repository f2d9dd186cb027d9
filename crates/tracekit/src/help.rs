//! The long help of each subcommand (`--help`): teaching text kept apart from the flags, so
//! the command modules show what each flag does and the calls they make.

/// `tracekit prog run --help`.
pub const PROG_RUN: &str = "Load one program of a BPF object (without attaching it) and run it in the kernel with \
BPF_PROG_TEST_RUN on the data and context you give, like `bpftool prog run`, but with the return value \
decoded for the program type (XDP_DROP, TC_ACT_SHOT, ...), the output packet as a hexdump with the \
changed bytes marked, and timing you can trust.\n\n\
Timing: one cold call first (its duration is shown apart: the first run is much slower), then \
--batches calls of --repeat runs each. The kernel reports the mean duration per run of each call; the \
table gives min, median, p99, max and stddev over the batches, in ns per run. The wall time per call \
is shown too: every call has a fixed cost the kernel's figure leaves out (for XDP with repeat > 1 \
about 16 ms here), so do not time single calls from outside.\n\n\
Input: --data-hex, --data-in FILE (raw bytes) or --packet FIELDS for the packet; --ctx-in FILE or \
--ctx-hex for the context (struct __sk_buff, xdp_md, raw_tp arguments, a syscall program's buffer). \
--pcap FILE runs the program once per packet of a capture and counts the verdicts.";

/// `tracekit prog test --help`.
pub const PROG_TEST: &str = "Run the cases of one or more TOML test-vector files and report pass/fail per case; \
the exit status is 1 when any case fails. The same files run from Rust with \
tracekit_prog::vectors::Suite::from_file(PATH)?.run().\n\n\
Format (paths relative to the TOML file):\n\n  \
object = \"../obj/xdp_port_filter.bpf.o\"\n  \
program = \"xdp_port_filter\"\n\n  \
[[case]]\n  \
name = \"UDP to 9999 is dropped\"\n  \
packet = { proto = \"udp\", dst_port = 9999 }   # or data_hex = \"...\"\n  \
expect_retval = \"XDP_DROP\"                    # or a number\n  \
expect_data_hex = \"...\"                       # optional, whole output packet\n  \
expect_fields = { \"ip.tos\" = 184 }            # optional, fields of the output\n\n\
A case may also set object, program, ctx_hex, expect_ctx_hex, data_out_size and expect_error (part \
of the expected error message). Packet fields: proto (udp, tcp, icmp), src_mac, dst_mac, src_ip, \
dst_ip, src_port, dst_port, ttl, tos, payload, payload_hex. Output fields: len, eth.src, eth.dst, \
eth.type, ip.src, ip.dst, ip.tos, ip.dscp, ip.ttl, ip.proto, ip.len, ip.checksum, ip.checksum_ok, \
udp.src_port, udp.dst_port, tcp.src_port, tcp.dst_port.";

/// `tracekit trace summary --help`.
pub const TRACE_SUMMARY: &str = "Per-syscall count, errors, total/min/avg/max latency and standard deviation, \
aggregated inside the kernel by BPF (tp_btf sys_enter/sys_exit, per-CPU maps, task storage): \
no ring buffer, no lost events, exact counts. The replacement for `perf trace -s` and `strace -c`.\n\n\
Give exactly one target: a command after `--` (traced with its threads and every child it forks, \
its exit status passed through), -p PID, or -a for the whole system. The run ends when the target \
exits, after --duration, or on Ctrl-C; the summary is printed then.\n\n\
When a command is traced the report goes to standard error (like strace -c and perf trace), so the \
command's own output is untouched; use -o FILE to write it to a file, or -o - for standard output.\n\n\
Ctrl-C: the command gets the SIGINT from the terminal; if it is still running a second later it is \
sent SIGTERM; the summary covers its syscalls until it exits. After --duration the command is sent \
SIGTERM at once (like `timeout`). A second Ctrl-C exits at once, without a report.\n\n\
Exit status: the command's own (128 + signal if it was killed), 127 if it is not found, 126 if it \
cannot be executed, 130 if interrupted with no command status, 1 for other errors, 2 for usage errors.\n\n\
Latencies are in milliseconds; stddev is the population standard deviation over all calls, computed \
exactly (stddev(%) is relative to the mean). Counts that could not be recorded are reported as dropped.";

/// `tracekit trace diff --help`.
pub const TRACE_DIFF: &str = "Compares two reports saved with `trace summary --json -o FILE` (any mode; \
interval reports are added up), per syscall: calls, errors, mean latency and estimated p99 (when \
the reports were made with --hist or --percentiles) before (A) and after (B), and the change. \
Rows are ordered by the largest change in calls.";

/// `tracekit trace top --help`.
pub const TRACE_TOP: &str = "A live full-screen view of the traced syscalls, refreshed every interval: per \
syscall (or per process and syscall) the calls and errors per second, the mean latency and the \
estimated p99 over the last interval, measured in the kernel as by `trace summary`.\n\n\
Keys: q, Esc or Ctrl-C quit; s changes the sort column (calls/s, errors/s, avg, p99); g groups by \
process or not; p or space pauses the display (tracing goes on). SIGTERM also ends the view; the \
terminal is restored in every case. Standard output must be a terminal: for a stream of reports \
use `trace summary -i SECS`.";

/// `tracekit bench demand-paging --help`.
pub const BENCH_DEMAND_PAGING: &str = "Demand-paging test (the KVM selftests' demand_paging_test, on tracekit's perf-test \
library). A VM with VCPUS vCPUs in 64-bit long mode (the test loop at CPL 3; --supervisor for CPL 0) gets BYTES of fresh, never-touched test memory \
per vCPU at the top of guest physical memory; each vCPU writes the first 8 bytes of every 4 KiB page \
of its slice once, so every write is a page fault served by the host: by the kernel, or with -u by \
userfaultfd handler threads doing UFFDIO_COPY (one per vCPU, or one for all with -a; -r readers \
per uffd, -d a delay before each fault is served; --minor: minor faults on shared memory, whose \
page cache is filled first, served with UFFDIO_CONTINUE). --overlap gives every vCPU all the \
memory, -x splits it into memslots, -s picks the backing (anonymous-thp, shared, hugetlb, \
shared-hugetlb); each matches the selftest's flag of the same meaning.\n\n\
Prints each vCPU's time (by the host's clock and by the guest's TSC), the total time and the \
demand-paging rate (pages/sec = pages of memory / total time), and with -u a log2 histogram of \
every fault's latency in the handler. After the run every page is checked: its first 8 bytes must hold what the guest wrote and, \
with -u, the rest what the handler copied; `verified` is true only when all pages passed, otherwise \
the exit status is 1.\n\n\
--no-kvm runs the same pattern from host threads instead of vCPUs: the floor the guest numbers \
compare with (plain first-touch faults, or with -u the UFFDIO_COPY rate), and a test for machines \
without /dev/kvm.\n\n\
-c pins vCPU i (and its handler) to the i-th CPU of the list; without it the scheduler may put a \
faulting vCPU and its handler on different CPUs, which is several times slower and bimodal.";

/// `tracekit bench dirty-log --help`.
pub const BENCH_DIRTY_LOG: &str = "Dirty-logging test (the KVM selftests' dirty_log_perf_test, on the same library as \
demand-paging). The vCPUs first populate their memory, then dirty logging is enabled on the test \
slot, and each of ITERATIONS iterations lets every vCPU write its pages again (one in WR_FRACT with \
-f, reading the others; or, like the selftest, -w PERCENT of its accesses, -a at random pages, \
-r SEED for the generator, which the host replays to know the exact pages written) while the host then collects the dirty bitmap with KVM_GET_DIRTY_LOG and, \
when the kernel has KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 (disable with -g), re-protects with \
KVM_CLEAR_DIRTY_LOG. At the end logging is disabled; with -e the vCPUs keep dirtying meanwhile \
(the selftest's -e, which stresses the disabling).\n\n\
Reports the populate time, per-iteration dirtying time (per vCPU and total), collection times and \
the time to disable logging (with -e, each vCPU's passes meanwhile), and checks that each bitmap is \
exactly the pages written and that the memory holds each page's last write; the exit status is 1 \
otherwise.\n\n\
--no-kvm dirties the same pages from host threads (no dirty log to collect): the floor for the \
dirtying time, and a test for machines without /dev/kvm.";

macro_rules! probe_examples {
    () => {
        "Examples:\n  \
        tracekit probe /bin/bash:readline -p 1234\n  \
        tracekit probe uprobe:libc.so.6:malloc --print -- ls\n  \
        tracekit probe 'uprobe:libc.so.6:str*' -- ls /    (one probe per matching function)\n  \
        tracekit probe --list 'libc.so.6:mem*'\n  \
        tracekit probe 'uprobe:./app:\"ns::Foo::bar\"' -- ./app\n  \
        tracekit probe ./app:handle_request --json -o probe.json -- ./app --port 8080\n  \
        tracekit probe --engine ptrace uretprobe:./app:parse -- ./app input.txt\n  \
        qemu-loongarch64-static -g 1234 ./la-app & tracekit probe --target qemu-gdb:127.0.0.1:1234 ./la-app:work"
    };
}
/// `tracekit probe -h`: the examples.
pub const PROBE_EXAMPLES: &str = probe_examples!();

/// `tracekit probe --help`: the spec forms, then the examples.
pub const PROBE: &str = concat!(
    "Count calls of user functions and measure their latency, like bpftrace uprobes or ltrace, \
    with BPF uprobes (default) or tracekit's own ptrace breakpoint engine.\n\n\
    SPEC is one of:\n  \
    uprobe:BINARY:SYMBOL[+OFFSET]   function entry (or an instruction inside it)\n  \
    uprobe:BINARY:0xADDRESS         an ELF virtual address, as `nm` prints it\n  \
    uretprobe:BINARY:SYMBOL         function return, with entry-to-return latency\n  \
    BINARY:SYMBOL                   both of the above\n  \
    uprobe:BINARY:PATTERN           every function matching *, ? or [...] (see --list)\n  \
    uprobe:BINARY:\"ns::Foo::bar\"    a C++ or Rust name (with ::) in double quotes\n  \
    usdt:BINARY:PROVIDER:NAME       a USDT probe (all its sites; its semaphore is held while attached)\n  \
    kprobe:FUNC                     kernel function (needs kprobes or BPF trampolines)\n\
    BINARY is a path, a program on PATH, or a library name (libc.so.6; with -p, `libc` \
    finds the process's own). SYMBOL may be mangled or demangled (C++, Rust), carry a \
    version (memcpy@GLIBC_2.14), or be an IFUNC (strlen: the probe goes to the \
    implementation this machine's loader selects).\n\n\
    The report lists hits per probe and, for return probes, total/min/avg/max/stddev and a \
    log2 histogram of the latency. Ctrl-C or SIGTERM ends the run, prints the report and \
    detaches; the traced command's exit status is passed through.\n\n\
    LoongArch64 programs are probed under QEMU: start the program with \
    `qemu-loongarch64-static -g PORT PROGRAM ARGS` (it waits for a debugger), then run \
    `tracekit probe --target qemu-gdb:HOST:PORT SPEC...` with specs naming that PROGRAM. \
    tracekit's breakpoint engine connects to QEMU's gdb stub, runs the program to its exit \
    and reports (the program's output appears where QEMU runs).\n\n",
    probe_examples!()
);

/// `tracekit prog list --help`: the examples.
pub const PROG_LIST_EXAMPLES: &str = "Example:\n  tracekit prog list bpf/obj/xdp_port_filter.bpf.o";

/// `tracekit prog run --help`: the examples.
pub const PROG_RUN_EXAMPLES: &str = "Examples:\n  \
tracekit prog run bpf/obj/xdp_port_filter.bpf.o xdp_port_filter --packet 'proto=\"udp\", dst_port=9999'\n  \
tracekit prog run bpf/obj/tc_dscp_mark.bpf.o tc_dscp_mark --data-in frame.bin --data-out out.bin\n  \
tracekit prog run bpf/obj/xdp_port_filter.bpf.o xdp_port_filter --data-hex 0200... --repeat 1000 --batches 20\n  \
tracekit prog run bpf/obj/xdp_port_filter.bpf.o xdp_port_filter --pcap capture.pcap --verbose\n  \
tracekit prog run bpf/obj/testrun_rawtp.bpf.o testrun_rawtp --ctx-hex '0300000000000000 0400000000000000'\n  \
tracekit prog run OBJ PROG --data-hex ... --json -o result.json";

/// `tracekit prog test --help`: the examples.
pub const PROG_TEST_EXAMPLES: &str = "Examples:\n  tracekit prog test bpf/vectors/xdp_port_filter.toml\n  tracekit prog test bpf/vectors/*.toml --json -o results.json";

/// `tracekit trace summary --help`: the examples.
pub const TRACE_SUMMARY_EXAMPLES: &str = "Examples:\n  \
tracekit trace summary -- make -j2                 # a build, its children and threads\n  \
tracekit trace summary --mode thread -- ./server   # one table per thread\n  \
tracekit trace summary -p 1234 --duration 10       # a running process for 10 s\n  \
tracekit trace summary -a --sort calls --errno     # whole system until Ctrl-C, errors by errno\n  \
tracekit trace summary --json -o out.json -- ls    # machine-readable report";

/// `tracekit trace diff --help`: the examples.
pub const TRACE_DIFF_EXAMPLES: &str = "Example:\n  \
tracekit trace summary --percentiles --json -o before.json -- ./server --bench\n  \
tracekit trace summary --percentiles --json -o after.json -- ./server --bench\n  \
tracekit trace diff before.json after.json";

/// `tracekit trace top --help`: the examples.
pub const TRACE_TOP_EXAMPLES: &str = "Examples:\n  \
tracekit trace top -a                        # the whole system\n  \
tracekit trace top -p 1234 -e '%net'         # a process's network calls\n  \
tracekit trace top --cgroup /sys/fs/cgroup/system.slice/nginx.service";

/// `tracekit bench demand-paging --help`: the examples.
pub const BENCH_DEMAND_PAGING_EXAMPLES: &str = "Examples:\n  \
tracekit bench demand-paging -v 2 -b 256M\n  \
tracekit bench demand-paging -v 2 -b 256M -u -c 0,1\n  \
tracekit bench demand-paging -v 2 -b 256M -u -a            # one shared handler\n  \
tracekit bench demand-paging -v 2 -b 256M --no-kvm -u      # host floor: UFFDIO_COPY rate\n  \
tracekit bench demand-paging -v 2 -b 64M -s shared -u --minor   # UFFDIO_CONTINUE\n  \
tracekit bench demand-paging -v 2 -b 64M -u -r 2 -d 100   # 2 readers per uffd, 100 us delay\n  \
tracekit bench demand-paging -b 64M --json -o dp.json";

/// `tracekit bench dirty-log --help`: the examples.
pub const BENCH_DIRTY_LOG_EXAMPLES: &str = "Examples:\n  \
tracekit bench dirty-log -v 2 -b 256M -i 5\n  \
tracekit bench dirty-log -v 1 -b 64M -i 3 -f 2        # write every other page\n  \
tracekit bench dirty-log -b 64M -g --json              # KVM_GET_DIRTY_LOG only\n  \
tracekit bench dirty-log -v 2 -b 64M -w 50 -a -x 4     # 50% writes, random pages, 4 memslots\n  \
tracekit bench dirty-log -v 2 -b 256M -i 5 --no-kvm    # host floor";
