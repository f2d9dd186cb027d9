// SPDX-License-Identifier: GPL-2.0
// In-kernel syscall summary for `tracekit trace summary`.
//
// sys_enter stores a timestamp in this CPU's slot, which sched_switch moves into the task's
// local storage if the task leaves the CPU mid-call (no fixed-size per-thread map); sys_exit
// turns it into a latency and folds it into per-CPU statistics, so no entry is ever shared
// between CPUs and no atomics are needed. User space reads the maps once at
// the end and merges the per-CPU values (count, sum, min, max and a 128-bit sum of squares
// are all mergeable exactly). Nothing goes through a ring buffer, so nothing is lost;
// whatever cannot be recorded is counted in `dropped`.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "tracekit/stats.h"

typedef unsigned long long u64;
typedef unsigned int u32;
typedef long long s64;

#define MAX_SYSCALLS 1024
#define MAX_ERRNO 4095

// x86-64 and generic (aarch64) numbers of the syscalls that never return.
#if defined(__TARGET_ARCH_arm64)
#define NR_EXIT 93
#define NR_EXIT_GROUP 94
#else
#define NR_EXIT 60
#define NR_EXIT_GROUP 231
#endif

// 32-bit (ia32) processes on x86-64 number their syscalls from the i386 table: the maps
// keep them at COMPAT_BASE + nr, apart from the 64-bit ones (which are all below it).
#define COMPAT_BASE 512
#define NR_IA32_EXIT 1
#define NR_IA32_EXIT_GROUP 252

// MODE_PROCESS_CGROUP keys by cgroup and process both (the live view regroups either way).
enum mode { MODE_TOTAL = 0, MODE_PROCESS = 1, MODE_THREAD = 2, MODE_CGROUP = 3, MODE_PROCESS_CGROUP = 4 };
enum drop_reason {
    DROP_START = 0,  // task storage could not be allocated
    DROP_STATS = 1,  // per-task statistics map full
    DROP_ERRNO = 2,  // errno breakdown map full
    DROP_FORK = 3,   // a child's storage could not be allocated: not followed
    DROP_COMM = 4,   // task name map full
    DROP_BADNR = 5,  // syscall number beyond the table (the call fails with ENOSYS)
    DROP_HIST = 6,   // per-task histogram map full
    DROP_REASONS = 7
};

enum task_filter { FILTER_NONE = 0, FILTER_TGIDS = 1, FILTER_TIDS = 2 };

// Set by user space before loading; the verifier removes the branches they disable.
const volatile u32 cfg_mode = MODE_TOTAL;
const volatile u32 cfg_filter = FILTER_NONE; // which tasks: traced_tgids (and children) or traced_tids
const volatile u32 cfg_self_tgid = 0; // tracekit itself, never traced
const volatile u32 cfg_errno = 0;    // keep the per-errno breakdown
const volatile u32 cfg_syscalls = 0; // only the syscalls marked in wanted_syscalls
const volatile u32 cfg_failed = 0;   // only calls that return an error
const volatile u32 cfg_latency = 1;  // 0: counts only, no clock read
const volatile u32 cfg_hist = 0;     // log2 latency histograms
const volatile u32 cfg_uid = 0;      // only tasks of uid cfg_uid_value
const volatile u32 cfg_uid_value = 0;
const volatile u32 cfg_cgroup = 0;   // only tasks in the cgroup at index 0 of cgroups (or below)

struct task_struct {
    int pid;
    int tgid;
} __attribute__((preserve_access_index));

struct pt_regs {
    long orig_ax;
} __attribute__((preserve_access_index));

#define HIST_BUCKETS 64

struct hist {
    u64 buckets[HIST_BUCKETS];
};

// Padded to two cache lines: the storages of a task's threads are allocated one after the
// other (at fork, on the parent's CPU), and each thread writes its `ts` on every syscall, so
// unpadded neighbours would share a cache line between CPUs.
struct start {
    u64 ts;
    u32 nr;
    u32 pad;
    u64 spacing[14];
};

struct syscall_stats {
    u64 count;
    u64 errors;
    u64 total_ns;
    u64 min_ns;
    u64 max_ns;
    u64 sum_sq_lo;
    u64 sum_sq_hi;
    u64 pad;
};

struct id_key {
    u64 id; // tgid (process mode), tid (thread mode), cgroup id (cgroup modes) or 0 (total mode)
    u32 nr;
    u32 tgid; // in MODE_PROCESS_CGROUP; 0 otherwise
};

struct errno_key {
    u64 id;
    u32 nr;
    u32 err;
};

struct comm {
    char name[16];
    u32 tgid;
    u32 pad;
};

struct {
    __uint(type, BPF_MAP_TYPE_TASK_STORAGE);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, int);
    __type(value, struct start);
} starts SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, MAX_SYSCALLS);
    __type(key, u32);
    __type(value, struct syscall_stats);
} total_stats SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_HASH);
    __uint(max_entries, 65536);
    __type(key, struct id_key);
    __type(value, struct syscall_stats);
} task_stats SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_HASH);
    __uint(max_entries, 16384);
    __type(key, struct errno_key);
    __type(value, u64);
} errno_counts SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 65536);
    __type(key, u32);
    __type(value, u32);
} traced_tgids SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 65536);
    __type(key, u32);
    __type(value, u32);
} traced_tids SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, MAX_SYSCALLS);
    __type(key, u32);
    __type(value, u32);
} wanted_syscalls SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_CGROUP_ARRAY);
    __uint(max_entries, 1);
    __type(key, u32);
    __type(value, u32);
} cgroups SEC(".maps");

// Latency histograms, by syscall (total mode) or by (task, syscall).
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, MAX_SYSCALLS);
    __type(key, u32);
    __type(value, struct hist);
} total_hists SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_HASH);
    __uint(max_entries, 65536);
    __type(key, struct id_key);
    __type(value, struct hist);
} task_hists SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, u32);
    __type(value, struct hist);
} zero_hist SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 65536);
    __type(key, u32);
    __type(value, struct comm);
} comms SEC(".maps");

// Filled on demand by count_in_flight: traced tasks inside a syscall, by syscall number.
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, MAX_SYSCALLS);
    __type(key, u32);
    __type(value, u64);
} in_flight SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, DROP_REASONS);
    __type(key, u32);
    __type(value, u64);
} dropped SEC(".maps");

static __always_inline void count_drop(u32 reason)
{
    u64 *n = bpf_map_lookup_elem(&dropped, &reason);
    if (n)
        *n += 1;
}

// Whether a task without the traced mark (its storage) should get it.
static __always_inline int traced(u64 pid_tgid)
{
    u32 tgid = pid_tgid >> 32, tid = (u32)pid_tgid;
    if (tgid == cfg_self_tgid)
        return 0;
    if (cfg_filter == FILTER_TIDS)
        return bpf_map_lookup_elem(&traced_tids, &tid) != 0;
    if (cfg_filter == FILTER_TGIDS)
        return bpf_map_lookup_elem(&traced_tgids, &tgid) != 0;
    return 1;
}

// The uid and cgroup filters hold per call: a task may change either at any time.
static __always_inline int in_scope(void)
{
    if (cfg_uid && (u32)bpf_get_current_uid_gid() != cfg_uid_value)
        return 0;
    if (cfg_cgroup && bpf_current_task_under_cgroup(&cgroups, 0) != 1)
        return 0;
    return 1;
}

static __always_inline int wanted(u32 nr)
{
    if (!cfg_syscalls)
        return 1;
    u32 *w = bpf_map_lookup_elem(&wanted_syscalls, &nr);
    return w && *w;
}

// The task's storage, created if the filter says the task is traced; NULL if not traced.
static __always_inline struct start *traced_storage(struct task_struct *task)
{
    struct start *s = bpf_task_storage_get(&starts, task, 0, 0);
    if (s)
        return s;
    if (!traced(bpf_get_current_pid_tgid()))
        return 0;
    s = bpf_task_storage_get(&starts, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
    if (!s)
        count_drop(DROP_START);
    return s;
}

static __always_inline u64 group_id(void)
{
    if (cfg_mode == MODE_CGROUP)
        return bpf_get_current_cgroup_id();
    u64 pid_tgid = bpf_get_current_pid_tgid();
    return cfg_mode == MODE_THREAD ? (u32)pid_tgid : (u32)(pid_tgid >> 32);
}

// The key of the current task's group for syscall `nr`.
static __always_inline struct id_key group_key(u32 nr)
{
    struct id_key key = { .nr = nr };
    if (cfg_mode == MODE_PROCESS_CGROUP) {
        key.id = bpf_get_current_cgroup_id();
        key.tgid = bpf_get_current_pid_tgid() >> 32;
    } else {
        key.id = group_id();
    }
    return key;
}

// Remembers the comm of a process/thread the first time it has stats, so a report can name
// tasks that have exited by the time user space reads the maps. (Cgroups are named by path
// in user space.)
static __always_inline void remember_comm(u64 group, int overwrite)
{
    if (cfg_mode == MODE_CGROUP)
        return;
    u32 id = (u32)group;
    struct comm c = { .tgid = bpf_get_current_pid_tgid() >> 32 };
    bpf_get_current_comm(c.name, sizeof(c.name));
    if (bpf_map_update_elem(&comms, &id, &c, overwrite ? BPF_ANY : BPF_NOEXIST) == -7 /* E2BIG */)
        count_drop(DROP_COMM);
}

static __always_inline struct syscall_stats *stats_for(u32 nr)
{
    if (cfg_mode == MODE_TOTAL)
        return bpf_map_lookup_elem(&total_stats, &nr);

    struct id_key key = group_key(nr);
    struct syscall_stats *st = bpf_map_lookup_elem(&task_stats, &key);
    if (st)
        return st;
    struct syscall_stats zero = {};
    if (bpf_map_update_elem(&task_stats, &key, &zero, BPF_NOEXIST) && bpf_map_lookup_elem(&task_stats, &key) == 0) {
        count_drop(DROP_STATS);
        return 0;
    }
    remember_comm(cfg_mode == MODE_PROCESS_CGROUP ? key.tgid : key.id, 0);
    return bpf_map_lookup_elem(&task_stats, &key);
}

static __always_inline void record_hist(u32 nr, u64 delta)
{
    struct hist *h;
    if (cfg_mode == MODE_TOTAL) {
        h = bpf_map_lookup_elem(&total_hists, &nr);
    } else {
        struct id_key key = group_key(nr);
        h = bpf_map_lookup_elem(&task_hists, &key);
        if (!h) {
            // A zeroed histogram too big for the stack: an entry of a map nobody writes.
            u32 first = 0;
            struct hist *zero = bpf_map_lookup_elem(&zero_hist, &first);
            if (zero)
                bpf_map_update_elem(&task_hists, &key, zero, BPF_NOEXIST);
            h = bpf_map_lookup_elem(&task_hists, &key);
        }
    }
    if (!h) {
        count_drop(DROP_HIST);
        return;
    }
    u32 b = tk_log2_bucket(delta);
    if (b < HIST_BUCKETS)
        h->buckets[b] += 1;
}

static __always_inline int failed(s64 ret)
{
    return ret < 0 && ret >= -MAX_ERRNO;
}

static __always_inline void record(u32 nr, u64 delta, s64 ret)
{
    if (cfg_failed && !failed(ret))
        return;
    if (nr >= MAX_SYSCALLS) {
        count_drop(DROP_BADNR);
        return;
    }
    struct syscall_stats *st = stats_for(nr);
    if (!st)
        return;
    st->count++;
    if (cfg_latency) {
        if (st->count == 1 || delta < st->min_ns)
            st->min_ns = delta;
        if (delta > st->max_ns)
            st->max_ns = delta;
        st->total_ns += delta;
        tk_add_square(&st->sum_sq_lo, &st->sum_sq_hi, delta);
        if (cfg_hist)
            record_hist(nr, delta);
    }
    if (failed(ret)) {
        st->errors++;
        if (cfg_errno) {
            struct errno_key key = { .id = cfg_mode == MODE_TOTAL ? 0 : group_id(), .nr = nr, .err = (u32)-ret };
            u64 *n = bpf_map_lookup_elem(&errno_counts, &key);
            if (n) {
                *n += 1;
            } else {
                u64 one = 1;
                if (bpf_map_update_elem(&errno_counts, &key, &one, BPF_NOEXIST))
                    count_drop(DROP_ERRNO);
            }
        }
    }
}

static __always_inline int never_returns(u32 index)
{
    return index == NR_EXIT || index == NR_EXIT_GROUP || index == COMPAT_BASE + NR_IA32_EXIT ||
           index == COMPAT_BASE + NR_IA32_EXIT_GROUP;
}

// The x86-64 register frame as the ABI fixes it (asm/ptrace.h): the code segment follows ip.
// Read without CO-RE: the layout is the user-visible ptrace one, and the kernel's BTF puts
// `cs` in an anonymous union there.
struct x86_regs {
    u64 gprs[15];
    u64 orig_ax;
    u64 ip;
    unsigned short cs;
};

#define USER32_CS 0x23

// Where the maps keep syscall `nr` of the calling task, from its register frame `regs`: calls
// made from 32-bit code (ia32, code segment __USER32_CS) at COMPAT_BASE + nr; a number beyond
// its table at MAX_SYSCALLS, which is counted as a bad number. (The code segment rather than
// the task's TS_COMPAT: reading the task needs a helper call, which costs more than the rest
// of sys_enter on CPUs with return-thunk mitigations. A 64-bit program that makes int $0x80
// calls is the one case named from the 64-bit table.)
static __always_inline u32 table_index(void *regs, u32 nr)
{
#if defined(__TARGET_ARCH_x86)
    if (((struct x86_regs *)regs)->cs == USER32_CS)
        return nr < COMPAT_BASE ? COMPAT_BASE + nr : MAX_SYSCALLS;
#endif
    return nr < COMPAT_BASE ? nr : MAX_SYSCALLS;
}

// The call in progress on this CPU. A traced task's syscall normally enters and returns on
// the same CPU without being switched out: its timestamp then lives here, where the lookup is
// inlined, and the task's storage is not touched at all. When the task is switched out in the
// middle of a call (a blocking read, a preemption), sched_switch moves the call into its
// storage, where sys_exit finds it. `task` also caches the traced check: it is set only for
// a traced task, and cleared when that task leaves the CPU, so a value in it always belongs
// to the task running there (a task that dies is switched out one last time). It is the
// address of the task's register frame (the syscall tracepoints' first argument, at the top of
// the task's kernel stack): it names the task as well as the task pointer, and costs no
// helper call to get.
struct cpu_call {
    u64 task;
    u64 ts;
    u32 nr;
    u32 pad;
};

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, u32);
    __type(value, struct cpu_call);
} cpu_calls SEC(".maps");

static __always_inline struct cpu_call *this_cpu_call(void)
{
    u32 first = 0;
    return bpf_map_lookup_elem(&cpu_calls, &first);
}

// Whether the current task, whose register frame is at `regs`, is traced: known from this
// CPU's slot, or asked of its storage (created if the filter says so), and remembered in the
// slot.
static __always_inline int traced_here(struct cpu_call *c, void *regs)
{
    if (c->task == (u64)regs)
        return 1;
    if (!traced_storage(bpf_get_current_task_btf()))
        return 0;
    if (c->ts)
        count_drop(DROP_START); // a call that sched_switch did not move (cannot happen)
    c->task = (u64)regs;
    c->ts = 0;
    return 1;
}

SEC("tp_btf/sys_enter")
int sys_enter(u64 *ctx)
{
    void *regs = (void *)ctx[0];
    u32 nr = table_index(regs, (u32)ctx[1]);
    // Counting only: everything is counted at sys_exit, except the calls that never get there.
    if (!cfg_latency && !never_returns(nr))
        return 0;
    if (!wanted(nr) || !in_scope())
        return 0;
    struct cpu_call *c = this_cpu_call();
    if (!c || !traced_here(c, regs))
        return 0;
    // exit and exit_group never reach sys_exit: count them here, with no latency.
    if (never_returns(nr)) {
        if (!cfg_failed)
            record(nr, 0, 0);
        return 0;
    }
    c->nr = nr;
    c->ts = bpf_ktime_get_ns();
    return 0;
}

// fork, vfork, clone and clone3 return twice: in the child too, through ret_from_fork,
// where sys_exit fires with no sys_enter.
static __always_inline int child_return(u32 nr, s64 ret)
{
    if (ret != 0)
        return 0;
    return nr == 56 || nr == 57 || nr == 58 || nr == 435 || nr == COMPAT_BASE + 2 ||
           nr == COMPAT_BASE + 120 || nr == COMPAT_BASE + 190 || nr == COMPAT_BASE + 435;
}

SEC("tp_btf/sys_exit")
int sys_exit(u64 *ctx)
{
    // --failed is applied by record(): the call's timestamp must be cleared in any case.
    s64 ret = (s64)ctx[1];
    void *regs = (void *)ctx[0];
    // The syscall filter first: an array lookup is cheaper than the task storage's.
    u32 nr = 0;
    if (cfg_syscalls || !cfg_latency)
        nr = table_index(regs, (u32)((struct pt_regs *)regs)->orig_ax);
    if (!wanted(nr))
        return 0;
    struct cpu_call *c = this_cpu_call();
    if (!c)
        return 0;
    if (!cfg_latency) {
        if (child_return(nr, ret) || !in_scope() || !traced_here(c, regs))
            return 0;
        record(nr, 0, ret);
        return 0;
    }
    if (c->task == (u64)regs && c->ts) {
        u64 delta = bpf_ktime_get_ns() - c->ts;
        c->ts = 0;
        record(c->nr, delta, ret);
        return 0;
    }
    // The call was moved to the task's storage when the task was switched out. Untraced tasks
    // have no storage (or a zero timestamp): no filter lookup needed here.
    struct start *s = bpf_task_storage_get(&starts, bpf_get_current_task_btf(), 0, 0);
    if (!s || !s->ts)
        return 0;
    u64 delta = bpf_ktime_get_ns() - s->ts;
    s->ts = 0;
    record(s->nr, delta, ret);
    return 0;
}

// A task leaves the CPU: its call in progress, if any, moves to its storage, and the slot
// forgets the task.
SEC("tp_btf/sched_switch")
int sched_switch(u64 *ctx)
{
    struct task_struct *prev = (struct task_struct *)ctx[1];
    struct cpu_call *c = this_cpu_call();
    if (!c || !c->task || c->task != (u64)bpf_task_pt_regs(prev))
        return 0;
    if (c->ts) {
        struct start *s = bpf_task_storage_get(&starts, prev, 0, 0);
        if (s) {
            s->nr = c->nr;
            s->ts = c->ts;
        } else {
            count_drop(DROP_START);
        }
        c->ts = 0;
    }
    c->task = 0;
    return 0;
}

// Children (processes and threads) of a traced task are traced too: they get their storage,
// the "traced" mark, at birth. Being tied to the task, the mark goes away with it, so a
// later process that reuses the pid is not traced by mistake.
SEC("tp_btf/sched_process_fork")
int sched_process_fork(u64 *ctx)
{
    if (cfg_filter != FILTER_TGIDS)
        return 0;
    if (!bpf_task_storage_get(&starts, bpf_get_current_task_btf(), 0, 0))
        return 0;
    struct task_struct *child = (struct task_struct *)ctx[1];
    if (!bpf_task_storage_get(&starts, child, 0, BPF_LOCAL_STORAGE_GET_F_CREATE))
        count_drop(DROP_FORK);
    return 0;
}

// After exec the comm changes: keep the name users know the process by.
SEC("tp_btf/sched_process_exec")
int sched_process_exec(u64 *ctx)
{
    if (cfg_mode == MODE_TOTAL || cfg_mode == MODE_CGROUP ||
        !bpf_task_storage_get(&starts, bpf_get_current_task_btf(), 0, 0))
        return 0;
    remember_comm(group_id(), 1);
    return 0;
}

struct bpf_iter_meta {
    void *seq;
    u64 session_id;
    u64 seq_num;
} __attribute__((preserve_access_index));

struct bpf_iter__task {
    struct bpf_iter_meta *meta;
    struct task_struct *task;
} __attribute__((preserve_access_index));

// Run by user space when it reads the summary: a syscall still in progress then (a blocking
// read under -p, say) has no exit yet, so it is not in the statistics; count such calls so the
// report can say so instead of losing them silently. An iterator runs in one thread at a time,
// so the plain array needs no atomics.
SEC("iter/task")
int count_in_flight(struct bpf_iter__task *ctx)
{
    struct task_struct *task = ctx->task;
    if (!task)
        return 0;
    struct start *s = bpf_task_storage_get(&starts, task, 0, 0);
    if (!s || !s->ts)
        return 0;
    u32 nr = s->nr;
    u64 *n = bpf_map_lookup_elem(&in_flight, &nr);
    if (n)
        *n += 1;
    return 0;
}

// Empty programs on the same hooks: the cost floor of any in-kernel syscall tracer,
// used by bench/trace-summary.py.
SEC("tp_btf/sys_enter")
int floor_enter(u64 *ctx)
{
    return 0;
}

SEC("tp_btf/sys_exit")
int floor_exit(u64 *ctx)
{
    return 0;
}

// The same pair reading the clock once each: the floor of any tracer that measures latency.
// The reading goes to a per-CPU slot, so the floor pays for no cache line shared between CPUs.
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, u32);
    __type(value, u64);
} floor_clock_sink SEC(".maps");

static __always_inline void sink_clock(void)
{
    u32 first = 0;
    u64 *slot = bpf_map_lookup_elem(&floor_clock_sink, &first);
    if (slot)
        *slot = bpf_ktime_get_ns();
}

SEC("tp_btf/sys_enter")
int floor_clock_enter(u64 *ctx)
{
    sink_clock();
    return 0;
}

SEC("tp_btf/sys_exit")
int floor_clock_exit(u64 *ctx)
{
    sink_clock();
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
