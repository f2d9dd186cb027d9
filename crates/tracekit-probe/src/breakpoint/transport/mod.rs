//! Transports: how the engine reaches a stopped thread's registers and a process's memory,
//! and runs the target.
//!
//! The engine core only needs [`Memory`] and [`Registers`]. [`ptrace`] implements them for a
//! local process (`/proc/PID/mem`, `PTRACE_GETREGS`) and owns that process's event loop;
//! [`gdb`] implements them over the GDB remote protocol (QEMU's stub) for a program under
//! QEMU. A third transport is one more folder here: a type implementing [`Memory`] and
//! [`Registers`] for its architecture's register set, and a `run` that places the probes
//! through the engine and drives the target's stops into the engine's handlers.

pub mod gdb;
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

/// Read and write a stopped thread's registers.
pub trait Registers<R> {
    /// The thread's registers.
    fn get_regs(&mut self, tid: i32) -> io::Result<R>;
    /// Sets them.
    fn set_regs(&mut self, tid: i32, regs: &R) -> io::Result<()>;
}
