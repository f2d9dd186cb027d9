// SPDX-License-Identifier: GPL-2.0
// In-kernel aggregation for `tracekit probe` (BPF engine).
//
// One entry program and one return program serve every probe: each attachment carries a
// BPF cookie that says which probe it is, so probes cost no extra programs or maps.
//   entry cookie:  bits 0-15  probe id + 1 whose hits this attachment counts (0: none)
//                  bits 16-31 return-probe id + 1 whose entry time it stamps (0: none)
//                  bit 32       a USDT site: --print decodes its arguments with the
//                               probe's entry in `usdt_specs` instead of the argument registers
//   return cookie: bits 0-15  return-probe id + 1
// Entry times go on a small per-thread stack (keyed by thread and probe) so recursion pairs
// each return with its own entry. Latencies fold into per-CPU statistics (count, sum, min,
// max, 128-bit sum of squares, log2 buckets), all exactly mergeable in user space; nothing
// is shared between CPUs and no atomics are needed. `--print` streams events through a ring
// buffer; a full buffer is counted per probe, never silently dropped.
#include <linux/bpf.h>
#include <asm/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "tracekit/stats.h"

typedef unsigned long long u64;
typedef unsigned int u32;

#define MAX_PROBES 4096
#define MAX_DEPTH 32
#define HIST_BUCKETS 64

enum event_kind { EV_ENTRY = 0, EV_RETURN = 1 };

// Set by user space before loading; the verifier removes the branches they disable.
const volatile u32 cfg_tgid = 0;  // 0: any process (the attachments are already scoped)
const volatile u32 cfg_print = 0; // stream events to `events`
const volatile u32 cfg_by_thread = 0; // also count per thread in `thread_stats`

// Entry-to-return latencies, exactly mergeable in user space.
struct latency_sums {
    u64 count;
    u64 total;
    u64 min;
    u64 max;
    u64 sum_sq_lo;
    u64 sum_sq_hi;
};

struct probe_stats {
    u64 hits;
    u64 missed;   // returns without a recorded entry (entered before attach, stack too deep, map full)
    u64 lost;     // events the ring buffer had no room for
    struct latency_sums lat;
    u64 hist[HIST_BUCKETS];
    u64 unattributed; // hits not counted per thread: `thread_stats` was full
};

// Per (probe, thread) with cfg_by_thread: hits and the same latency sums as probe_stats.
struct thread_key {
    u32 probe;
    u32 tid;
};

struct thread_stats {
    u64 hits;
    u64 missed;
    struct latency_sums lat;
};

struct stack_key {
    u32 tid;
    u32 probe;
};

struct stack {
    u32 depth;
    u32 pad;
    u64 ts[MAX_DEPTH];
};

struct event {
    u64 ts;
    u32 tgid;
    u32 tid;
    u32 probe;
    u32 kind;
    u64 args[6]; // entry: the six integer argument registers; return: args[0] = return value
    u64 latency; // return: ns since the matching entry, 0 if unknown
};

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, MAX_PROBES);
    __type(key, u32);
    __type(value, struct probe_stats);
} stats SEC(".maps");

// How to read one USDT argument (the note's `-4@-16(%rbp)`), filled by user space. Register
// operands are offsets into struct pt_regs; sign and size are applied in user space.
enum usdt_kind { ARG_NONE = 0, ARG_IMM = 1, ARG_REG = 2, ARG_MEM = 3 };
#define NO_INDEX 0xffffffff
#define USDT_ARGS 6

struct usdt_arg {
    u64 off;   // ARG_IMM: the value; ARG_MEM: the displacement
    u32 kind;
    u32 size;  // ARG_MEM: bytes to read (1, 2, 4 or 8)
    u32 reg;   // ARG_REG, ARG_MEM: offset of the (base) register in struct pt_regs
    u32 index; // ARG_MEM: offset of the index register, or NO_INDEX
    u32 scale;
    u32 pad;
};

struct usdt_spec {
    struct usdt_arg args[USDT_ARGS];
};

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1); // user space sizes it to the number of probes
    __type(key, u32);
    __type(value, struct usdt_spec);
} usdt_specs SEC(".maps");

// A plain hash, not per-CPU: each key is written only by its own thread (one CPU at a time),
// and a per-CPU map would cost its size times every possible CPU. Not preallocated: only the
// threads seen take memory.
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __uint(max_entries, 1); // sized by user space when cfg_by_thread is set
    __type(key, struct thread_key);
    __type(value, struct thread_stats);
} thread_stats SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 16384);
    __type(key, struct stack_key);
    __type(value, struct stack);
} stacks SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 1 << 20);
} events SEC(".maps");

static __always_inline int wanted(void)
{
    return cfg_tgid == 0 || (bpf_get_current_pid_tgid() >> 32) == cfg_tgid;
}

static __always_inline struct probe_stats *stats_of(u32 id)
{
    return bpf_map_lookup_elem(&stats, &id);
}

static __always_inline void add_latency(struct latency_sums *l, u64 d)
{
    if (l->count == 0 || d < l->min)
        l->min = d;
    if (d > l->max)
        l->max = d;
    l->count++;
    l->total += d;
    tk_add_square(&l->sum_sq_lo, &l->sum_sq_hi, d);
}

static __always_inline void record_latency(struct probe_stats *st, u64 d)
{
    add_latency(&st->lat, d);
    u32 b = tk_log2_bucket(d);
    if (b < HIST_BUCKETS)
        st->hist[b]++;
}

// This thread's statistics of probe `id`, created on its first hit; NULL (and the hit counted
// as unattributed) when the map is full.
static __always_inline struct thread_stats *thread_of(struct probe_stats *st, u32 id)
{
    struct thread_key key = { .probe = id, .tid = (u32)bpf_get_current_pid_tgid() };
    struct thread_stats *t = bpf_map_lookup_elem(&thread_stats, &key);
    if (!t) {
        struct thread_stats zero = {};
        bpf_map_update_elem(&thread_stats, &key, &zero, BPF_NOEXIST);
        t = bpf_map_lookup_elem(&thread_stats, &key);
        if (!t)
            st->unattributed++;
    }
    return t;
}

static __always_inline u64 read_reg(struct pt_regs *ctx, u32 off)
{
    u64 val = 0;
    if (off <= sizeof(struct pt_regs) - sizeof(u64))
        bpf_probe_read_kernel(&val, sizeof(val), (void *)ctx + off);
    return val;
}

static __always_inline u64 usdt_arg(struct pt_regs *ctx, const struct usdt_arg *a)
{
    u64 val = 0;
    switch (a->kind) {
    case ARG_IMM:
        return a->off;
    case ARG_REG:
        return read_reg(ctx, a->reg);
    case ARG_MEM: {
        u64 addr = read_reg(ctx, a->reg) + a->off;
        if (a->index != NO_INDEX)
            addr += read_reg(ctx, a->index) * a->scale;
        // Constant sizes: the verifier wants a bounded length.
        switch (a->size) {
        case 1:
            bpf_probe_read_user(&val, 1, (void *)addr);
            break;
        case 2:
            bpf_probe_read_user(&val, 2, (void *)addr);
            break;
        case 4:
            bpf_probe_read_user(&val, 4, (void *)addr);
            break;
        case 8:
            bpf_probe_read_user(&val, 8, (void *)addr);
            break;
        }
        return val;
    }
    }
    return 0;
}

// The probe's USDT arguments into args[] (unused ones 0).
static __always_inline void usdt_args(struct pt_regs *ctx, u32 id, u64 *args)
{
    struct usdt_spec *spec = bpf_map_lookup_elem(&usdt_specs, &id);
    if (!spec)
        return;
    for (int i = 0; i < USDT_ARGS; i++)
        args[i] = usdt_arg(ctx, &spec->args[i]);
}

static __always_inline void emit(struct pt_regs *ctx, struct probe_stats *st, u32 id, u32 kind, u64 latency, int usdt)
{
    struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
    if (!e) {
        st->lost++;
        return;
    }
    u64 pid_tgid = bpf_get_current_pid_tgid();
    e->ts = bpf_ktime_get_ns();
    e->tgid = pid_tgid >> 32;
    e->tid = (u32)pid_tgid;
    e->probe = id;
    e->kind = kind;
    if (kind == EV_ENTRY && usdt) {
        e->args[0] = e->args[1] = e->args[2] = e->args[3] = e->args[4] = e->args[5] = 0;
        usdt_args(ctx, id, e->args);
    } else if (kind == EV_ENTRY) {
        e->args[0] = PT_REGS_PARM1(ctx);
        e->args[1] = PT_REGS_PARM2(ctx);
        e->args[2] = PT_REGS_PARM3(ctx);
        e->args[3] = PT_REGS_PARM4(ctx);
        e->args[4] = PT_REGS_PARM5(ctx);
        e->args[5] = ctx->r9; // this libbpf has no PT_REGS_PARM6
    } else {
        e->args[0] = PT_REGS_RC(ctx);
        e->args[1] = e->args[2] = e->args[3] = e->args[4] = e->args[5] = 0;
    }
    e->latency = latency;
    bpf_ringbuf_submit(e, 0);
}

static __always_inline void push_entry(u32 ret_id, u64 now)
{
    struct stack_key key = { .tid = (u32)bpf_get_current_pid_tgid(), .probe = ret_id };
    struct stack *s = bpf_map_lookup_elem(&stacks, &key);
    if (!s) {
        struct stack zero = {};
        bpf_map_update_elem(&stacks, &key, &zero, BPF_NOEXIST);
        s = bpf_map_lookup_elem(&stacks, &key);
        if (!s)
            return; // the return side counts it as missed
    }
    u32 d = s->depth;
    if (d < MAX_DEPTH)
        s->ts[d] = now;
    if (d < 0xffff) // deeper frames still pair up; they are counted missed on return
        s->depth = d + 1;
}

// Pops the entry time of this thread's innermost call of `ret_id`; 0 if none was recorded.
static __always_inline u64 pop_entry(u32 ret_id)
{
    struct stack_key key = { .tid = (u32)bpf_get_current_pid_tgid(), .probe = ret_id };
    struct stack *s = bpf_map_lookup_elem(&stacks, &key);
    if (!s || s->depth == 0)
        return 0;
    u32 d = s->depth - 1;
    s->depth = d;
    if (d >= MAX_DEPTH)
        return 0;
    return s->ts[d];
}

SEC("uprobe")
int tk_entry(struct pt_regs *ctx)
{
    if (!wanted())
        return 0;
    u64 cookie = bpf_get_attach_cookie(ctx);
    u32 hit = cookie & 0xffff, ret = (cookie >> 16) & 0xffff;
    if (ret)
        push_entry(ret - 1, bpf_ktime_get_ns());
    if (hit) {
        struct probe_stats *st = stats_of(hit - 1);
        if (!st)
            return 0;
        st->hits++;
        if (cfg_by_thread) {
            struct thread_stats *t = thread_of(st, hit - 1);
            if (t)
                t->hits++;
        }
        if (cfg_print)
            emit(ctx, st, hit - 1, EV_ENTRY, 0, (cookie >> 32) & 1);
    }
    return 0;
}

SEC("uretprobe")
int tk_return(struct pt_regs *ctx)
{
    if (!wanted())
        return 0;
    u64 now = bpf_ktime_get_ns();
    u32 id = (bpf_get_attach_cookie(ctx) & 0xffff) - 1;
    struct probe_stats *st = stats_of(id);
    if (!st)
        return 0;
    st->hits++;
    struct thread_stats *t = cfg_by_thread ? thread_of(st, id) : 0;
    if (t)
        t->hits++;
    u64 start = pop_entry(id);
    u64 latency = 0;
    if (start && start <= now) {
        latency = now - start;
        record_latency(st, latency);
        if (t)
            add_latency(&t->lat, latency);
    } else {
        st->missed++;
        if (t)
            t->missed++;
    }
    if (cfg_print)
        emit(ctx, st, id, EV_RETURN, latency, 0);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
