// SPDX-License-Identifier: GPL-2.0
// Runs the shared statistics helpers of bpf/include/tracekit/stats.h on values supplied by a
// test (through BPF_PROG_TEST_RUN of a syscall program, whose context is copied in and back
// out), so their 128-bit arithmetic is checked against Rust's u128 on the real BPF JIT,
// including latencies above 2^32 ns that no quick syscall workload can produce. The loop is
// unrolled because the verifier refuses context accesses at a variable offset.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "tracekit/stats.h"

#define VALUES 8

struct selftest {
    __u64 values[VALUES];
    __u64 sum_sq_lo;
    __u64 sum_sq_hi;
    __u32 buckets[VALUES];
};

SEC("syscall")
int stats_selftest(struct selftest *t)
{
#pragma unroll
    for (int i = 0; i < VALUES; i++) {
        tk_add_square(&t->sum_sq_lo, &t->sum_sq_hi, t->values[i]);
        t->buckets[i] = tk_log2_bucket(t->values[i]);
    }
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
