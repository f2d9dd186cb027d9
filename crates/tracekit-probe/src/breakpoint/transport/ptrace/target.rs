//! The ptrace implementation of the transport traits.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use crate::breakpoint::transport::{Memory, Registers};

/// A process traced with ptrace: memory through `/proc/PID/mem`, registers through
/// `PTRACE_GETREGS`/`PTRACE_SETREGS`.
#[derive(Debug)]
pub struct PtraceTarget {
    mem: File,
}

impl PtraceTarget {
    /// Opens the memory of process `pid` (the caller must already trace it).
    pub fn open(pid: i32) -> io::Result<Self> {
        let mem = File::options()
            .read(true)
            .write(true)
            .open(format!("/proc/{pid}/mem"))?;
        Ok(PtraceTarget { mem })
    }
}

impl Memory for PtraceTarget {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> io::Result<()> {
        self.mem.read_exact_at(buf, addr)
    }

    fn write(&mut self, addr: u64, data: &[u8]) -> io::Result<()> {
        self.mem.write_all_at(data, addr)
    }
}

impl Registers<libc::user_regs_struct> for PtraceTarget {
    fn get_regs(&mut self, tid: i32) -> io::Result<libc::user_regs_struct> {
        // SAFETY: all-zero is a valid user_regs_struct (plain integers).
        let mut regs: libc::user_regs_struct = unsafe { std::mem::zeroed() };
        // SAFETY: PTRACE_GETREGS writes exactly one user_regs_struct to the pointer, which
        // points to one we own.
        let r = unsafe { libc::ptrace(libc::PTRACE_GETREGS, tid, 0, &mut regs as *mut _) };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(regs)
        }
    }

    fn set_regs(&mut self, tid: i32, regs: &libc::user_regs_struct) -> io::Result<()> {
        // SAFETY: PTRACE_SETREGS only reads one user_regs_struct from the pointer.
        let r = unsafe { libc::ptrace(libc::PTRACE_SETREGS, tid, 0, regs as *const _) };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}
