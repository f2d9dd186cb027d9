//! Transports: how the engine reaches a stopped thread's registers and a process's memory,
//! and runs the target.
//!
//! The engine core only needs [`Memory`] and [`Registers`]; placing slots needs system calls
//! run in the target, [`inject::inject_syscall`] (written once, over [`inject::InjectSyscall`]).
//! [`ptrace`] implements them for a local process (`/proc/PID/mem`, `PTRACE_GETREGS`) and owns
//! that process's event loop; [`gdb`] implements them over the GDB remote protocol (QEMU's
//! stub) for a program under QEMU. Both are generic over the [`Arch`](super::arch::Arch) and
//! take what they need of it through a trait bound: ptrace its register set as
//! `PTRACE_GETREGS` fills it (`PtraceTarget: Registers<A::Regs>`), gdb its register layout
//! ([`gdb::GdbRegisters`]).
//!
//! A third transport is one more folder here with:
//! - a type implementing [`Memory`], and [`Registers`] for each architecture it reaches (or a
//!   per-transport register mapping trait, as [`gdb::GdbRegisters`], that each architecture
//!   implements next to its [`Arch`](super::arch::Arch));
//! - [`inject::InjectSyscall`] for it, if it places out-of-line slots or return trampolines
//!   (they live in an area mapped by an injected `mmap`);
//! - a `run` generic over the architecture, ending with [`crate::Outcome`], that builds the
//!   [`ProbeTable`](super::engine::ProbeTable), places every point through
//!   [`place`](super::engine::place) (classify, slot image) and hands each stop to the
//!   engine's handlers ([`Engine::on_trap`](super::engine::Engine::on_trap)), then detaches
//!   with [`Engine::evacuate`](super::engine::Engine::evacuate) and the return-address
//!   restores.

pub mod gdb;
pub mod inject;
pub mod ptrace;

use std::io;

/// Read and write a traced process's memory, ignoring page protections (as a debugger does).
pub trait Memory {
    /// Reads `buf.len()` bytes at `addr`.
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Writes `data` at `addr` (text included).
    fn write(&mut self, addr: u64, data: &[u8]) -> io::Result<()>;

    /// Reads a little-endian u64.
    fn read_u64(&mut self, addr: u64) -> io::Result<u64> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    /// Writes a little-endian u64.
    fn write_u64(&mut self, addr: u64, value: u64) -> io::Result<()> {
        self.write(addr, &value.to_le_bytes())
    }
}

/// Memory for unit tests: any address reads as 0 until written.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct SparseMemory(std::collections::HashMap<u64, u8>);

#[cfg(test)]
impl Memory for SparseMemory {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> io::Result<()> {
        for (i, b) in buf.iter_mut().enumerate() {
            *b = *self.0.get(&(addr + i as u64)).unwrap_or(&0);
        }
        Ok(())
    }
    fn write(&mut self, addr: u64, data: &[u8]) -> io::Result<()> {
        for (i, b) in data.iter().enumerate() {
            self.0.insert(addr + i as u64, *b);
        }
        Ok(())
    }
}

/// Read and write a stopped thread's registers.
pub trait Registers<R> {
    /// The thread's registers.
    fn get_regs(&mut self, tid: i32) -> io::Result<R>;
    /// Sets them.
    fn set_regs(&mut self, tid: i32, regs: &R) -> io::Result<()>;
}
