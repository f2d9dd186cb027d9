//! The timestamp the trampolines take: `rdtsc`, converted to ns with a multiplier tracekit
//! calibrates against `CLOCK_MONOTONIC`.
//!
//! Why rdtsc: it costs a few ns in user space with no syscall and no vDSO call (a
//! `clock_gettime` from a trampoline would need the target's vDSO and a stack frame), and it
//! is not serializing (`rdtscp` would wait for earlier instructions: more exact, slower).
//! It is only right with an invariant TSC (`constant_tsc` and `nonstop_tsc`: the same rate on
//! every CPU, in every power state); without one, return probes fall back to int3.

use std::time::{Duration, Instant};

use super::tramp::Tsc;

/// Shift of the cycles→ns conversion: `ns = (cycles * mult) >> SHIFT`.
pub const SHIFT: u32 = 20;

/// `AT_HWCAP2` bit: the kernel lets user space run `rdfsbase` (Linux 5.9 and later).
const HWCAP2_FSGSBASE: u64 = 1 << 1;

/// Measures the TSC rate (20 ms) and returns the conversion, or why return probes cannot
/// be timed by the trampolines (they also need `rdfsbase` to find the thread's stack).
pub fn calibrate() -> Result<Tsc, String> {
    // SAFETY: getauxval only reads this process's auxiliary vector.
    if unsafe { libc::getauxval(libc::AT_HWCAP2) } & HWCAP2_FSGSBASE == 0 {
        return Err("the kernel does not enable `rdfsbase` (FSGSBASE, Linux 5.9 and later)".into());
    }
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").map_err(|e| e.to_string())?;
    let flags = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .unwrap_or_default();
    for need in ["constant_tsc", "nonstop_tsc"] {
        if !flags.split_whitespace().any(|f| f == need) {
            return Err(format!("the CPU's TSC is not invariant (no `{need}` flag)"));
        }
    }
    let (t0, c0) = (Instant::now(), rdtsc());
    std::thread::sleep(Duration::from_millis(20));
    let (dt, dc) = (t0.elapsed(), rdtsc().wrapping_sub(c0));
    let hz = dc as f64 / dt.as_secs_f64();
    let mult = (f64::from(1u32 << SHIFT) * 1e9 / hz).round();
    if !(1.0..f64::from(i32::MAX as u32)).contains(&mult) {
        return Err(format!("implausible TSC rate {hz:.0} Hz"));
    }
    Ok(Tsc {
        mult: mult as u32,
        shift: SHIFT,
    })
}

fn rdtsc() -> u64 {
    // SAFETY: rdtsc has no preconditions on x86-64 (user-mode TSC reads are enabled on
    // Linux unless a process opts out with PR_SET_TSC, which tracekit does not).
    unsafe { std::arch::x86_64::_rdtsc() }
}
