// SPDX-License-Identifier: GPL-2.0
// Exact, mergeable latency statistics for tracekit's BPF programs. Each program keeps them
// in per-CPU maps; user space merges the CPUs with tracekit_core::stats::LatencyStats.
#ifndef TRACEKIT_STATS_H
#define TRACEKIT_STATS_H

// sum_sq += d * d on a 128-bit (hi, lo) pair: BPF has no 64x64->128 multiply, so the
// product is assembled from 32-bit halves: d^2 = a^2 2^64 + 2ab 2^32 + b^2.
static __always_inline void tk_add_square(__u64 *sum_lo, __u64 *sum_hi, __u64 d)
{
    __u64 lo, hi = 0;
    if (d >> 32 == 0) {
        lo = d * d;
    } else {
        __u64 a = d >> 32, b = d & 0xffffffffULL;
        __u64 ab = a * b;
        __u64 mid = ab << 33;
        hi = a * a + (ab >> 31);
        lo = b * b + mid;
        if (lo < mid)
            hi++;
    }
    __u64 sum = *sum_lo + lo;
    *sum_hi += hi + (sum < lo);
    *sum_lo = sum;
}

// Bucket 0 holds 0, bucket k holds [2^(k-1), 2^k): the bit length of the value, as
// tracekit_core::stats::Log2Histogram (and bpftrace's hist()) count them.
static __always_inline __u32 tk_log2_bucket(__u64 v)
{
    __u32 n = 0;
#pragma unroll
    for (int shift = 32; shift > 0; shift >>= 1) {
        if (v >> shift) {
            v >>= shift;
            n += shift;
        }
    }
    return v ? n + 1 : n;
}

#endif
