//! Running one system call in a stopped thread (the `mmap` of a slot area, the `munmap` at
//! detach), with every register put back afterwards: written once, for every transport.
//!
//! The architecture supplies the system call instruction, its numbers and its register
//! convention ([`Arch::SYSCALL`], [`Arch::NR_MMAP`], [`Arch::syscall_regs`],
//! [`Arch::syscall_result`]); the transport supplies [`InjectSyscall`]: its register access
//! and how to run the thread over one system call instruction and stop right after it.

use crate::breakpoint::arch::Arch;

/// What a transport does for [`inject_syscall`].
pub trait InjectSyscall<A: Arch> {
    /// The transport's error (each step's error says what failed).
    type Error;
    /// Thread `tid`'s registers.
    fn read_regs(&mut self, tid: i32) -> Result<A::Regs, Self::Error>;
    /// Sets them.
    fn write_regs(&mut self, tid: i32, regs: &A::Regs) -> Result<(), Self::Error>;
    /// Runs thread `tid`, whose registers are set for the call with its pc at `at`, over the
    /// system call instruction at `at` and stops it right after that instruction (the
    /// transport puts an instruction there first if it must, and takes it away again).
    fn run_syscall(&mut self, tid: i32, at: u64) -> Result<(), Self::Error>;
}

/// Runs system call `nr` with `args` in stopped thread `tid` from the instruction at `at`, then
/// puts every register back; returns the call's raw result (`-errno` on failure).
pub fn inject_syscall<A: Arch, T: InjectSyscall<A> + ?Sized>(
    t: &mut T,
    tid: i32,
    at: u64,
    nr: u64,
    args: [u64; 6],
) -> Result<i64, T::Error> {
    let saved = t.read_regs(tid)?;
    t.write_regs(tid, &A::syscall_regs(&saved, at, nr, args))?;
    if let Err(e) = t.run_syscall(tid, at) {
        // Best effort: the thread must not go on with the call's registers, and the error
        // worth reporting is the first one.
        let _ = t.write_regs(tid, &saved);
        return Err(e);
    }
    let after = t.read_regs(tid)?;
    t.write_regs(tid, &saved)?;
    Ok(A::syscall_result(&after))
}

/// `mmap(hint, len, prot, MAP_PRIVATE | MAP_ANONYMOUS | extra_flags, -1, 0)`'s arguments.
pub fn mmap_args(hint: u64, len: u64, prot: i32, extra_flags: u64) -> [u64; 6] {
    let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64 | extra_flags;
    [hint, len, prot as u64, flags, u64::MAX, 0]
}
