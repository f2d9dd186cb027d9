//! The BPF side of the exact statistics (bpf/include/tracekit/stats.h), run on the real kernel
//! through BPF_PROG_TEST_RUN and compared with Rust's u128 arithmetic and
//! tracekit_core's bucket function.

use tracekit_core::stats::Log2Histogram;
use tracekit_prog::{BpfObject, RunOptions};

const OBJECT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../bpf/obj/stats_selftest.bpf.o"
);

fn run_selftest(values: [u64; 8]) -> (u128, [u32; 8]) {
    let prog = BpfObject::from_file(OBJECT)
        .unwrap()
        .load("stats_selftest")
        .unwrap();
    let mut ctx = Vec::new();
    values
        .iter()
        .for_each(|v| ctx.extend_from_slice(&v.to_ne_bytes()));
    ctx.extend_from_slice(&[0u8; 16 + 32]);
    let out = prog
        .run(&RunOptions {
            ctx_in: &ctx,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(out.retval, 0);
    let word = |i: usize| u64::from_ne_bytes(out.ctx_out[i * 8..i * 8 + 8].try_into().unwrap());
    let sum_sq = (u128::from(word(9)) << 64) | u128::from(word(8));
    let mut buckets = [0u32; 8];
    for (i, b) in buckets.iter_mut().enumerate() {
        let at = 80 + i * 4;
        *b = u32::from_ne_bytes(out.ctx_out[at..at + 4].try_into().unwrap());
    }
    (sum_sq, buckets)
}

#[test]
fn sum_of_squares_is_exact_across_128_bits() {
    let cases = [
        [0, 1, 2, 3, 1000, 65_535, 1 << 20, u64::from(u32::MAX)],
        // Latencies above 2^32 ns (4.3 s) take the split-multiply path with carries.
        [
            1 << 32,
            (1 << 32) + 1,
            5_000_000_000,
            123_456_789_012,
            u64::MAX >> 1,
            u64::MAX,
            0xffff_ffff_0000_0001,
            7,
        ],
    ];
    for values in cases {
        let (sum_sq, buckets) = run_selftest(values);
        // The kernel's sum wraps at 2^128 like this one would; no case here gets near it.
        let expected = values
            .iter()
            .map(|&v| u128::from(v) * u128::from(v))
            .fold(0u128, u128::wrapping_add);
        assert_eq!(sum_sq, expected, "{values:?}");
        for (v, b) in values.iter().zip(buckets) {
            assert_eq!(b as usize, Log2Histogram::bucket_of(*v), "bucket of {v}");
        }
    }
}
