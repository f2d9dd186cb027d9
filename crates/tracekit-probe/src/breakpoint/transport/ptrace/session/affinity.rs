//! Pinning the tracer and the tracees to one CPU, and giving the tracee its affinity back.

use super::*;

pub(super) fn cpu_set(cpu: usize) -> libc::cpu_set_t {
    // SAFETY: all-zero is an empty cpu_set_t; CPU_SET only sets a bit inside it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        set
    }
}

/// Pins `tid` to `cpu`, returning its previous mask.
pub(super) fn pin(tid: i32, cpu: usize) -> Option<libc::cpu_set_t> {
    // SAFETY: zeroed cpu_set_t is valid; the calls read/write exactly one set.
    unsafe {
        let mut old: libc::cpu_set_t = std::mem::zeroed();
        let got = libc::sched_getaffinity(tid, size_of::<libc::cpu_set_t>(), &mut old) == 0;
        let set = cpu_set(cpu);
        libc::sched_setaffinity(tid, size_of::<libc::cpu_set_t>(), &set);
        got.then_some(old)
    }
}

pub(super) fn pin_self(cpu: usize) -> Result<libc::cpu_set_t, BreakpointError> {
    let set = cpu_set(cpu);
    // SAFETY: zeroed cpu_set_t is valid; the calls read/write exactly one set; 0 = this thread.
    unsafe {
        let mut old: libc::cpu_set_t = std::mem::zeroed();
        libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut old);
        if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(BreakpointError::last(
                "pinning to the requested CPU (does it exist?)",
                0,
            ));
        }
        Ok(old)
    }
}
