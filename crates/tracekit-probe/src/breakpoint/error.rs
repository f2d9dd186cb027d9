//! Why the breakpoint engine could not do what was asked, and what to do instead.

use std::io;
use std::path::PathBuf;

use super::transport::gdb::GdbError;

/// Errors of the breakpoint engine and its transports. Each message says what to do next.
/// The gdb transport's own failures are [`GdbError`]; the ptrace transport's (no such process,
/// not permitted, cannot spawn, a failed system call) are variants here, as every local
/// transport has them.
#[derive(Debug, thiserror::Error)]
pub enum BreakpointError {
    /// The probe address falls inside an instruction.
    #[error(
        "{spec}: address {addr:#x} is in the middle of the instruction `{insn}` at {start:#x}; \
         probe an instruction boundary instead: {start:#x} or {next:#x}"
    )]
    MidInstruction {
        /// The probe spec.
        spec: String,
        /// The ELF address asked for.
        addr: u64,
        /// The instruction containing it.
        insn: String,
        /// Where that instruction starts.
        start: u64,
        /// Where the next one starts.
        next: u64,
    },
    /// The instruction at the probe point cannot be simulated nor executed out of line.
    #[error(
        "{spec}: cannot probe the instruction `{insn}`: {reason}; probe another instruction of the function (use SYMBOL+OFFSET)"
    )]
    Unsupported {
        /// The probe spec.
        spec: String,
        /// The instruction.
        insn: String,
        /// Why it is refused.
        reason: String,
    },
    /// The bytes at the probe point do not decode.
    #[error(
        "{spec}: the bytes at {addr:#x} do not decode as an instruction; is this code? check the symbol and offset"
    )]
    Undecodable {
        /// The probe spec.
        spec: String,
        /// The ELF address.
        addr: u64,
    },
    /// A return probe not at the start of a function.
    #[error("{spec}: a return probe must be at the function's first instruction (no +OFFSET)")]
    ReturnNotAtEntry {
        /// The probe spec.
        spec: String,
    },
    /// The binary's instruction set is not the one of the target.
    #[error(
        "{spec}: {binary} is {found} code but the target runs {expected}; probe x86-64 programs \
         directly and LoongArch64 programs under QEMU with --target qemu-gdb:HOST:PORT"
    )]
    WrongArch {
        /// The probe spec.
        spec: String,
        /// The binary.
        binary: PathBuf,
        /// Its instruction set.
        found: crate::symbols::Machine,
        /// The target's.
        expected: crate::symbols::Machine,
    },
    /// No process with this pid.
    #[error("no process with pid {0}; check the pid with `ps` (the process may have exited)")]
    NoSuchProcess(i32),
    /// ptrace refused.
    #[error(
        "not allowed to trace pid {pid} ({error}): run as root, or as the process's owner{scope}; \
         and make sure no other debugger or tracer is attached to it"
    )]
    PermissionDenied {
        /// The pid.
        pid: i32,
        /// What Yama's ptrace_scope requires, if Yama is there.
        scope: String,
        /// The OS error.
        error: io::Error,
    },
    /// The program to run could not be started.
    #[error("cannot run {program}: {error}; check the path and that it is executable")]
    Spawn {
        /// The program.
        program: PathBuf,
        /// The OS error.
        error: io::Error,
    },
    /// The probe point already holds a breakpoint.
    #[error(
        "{spec}: there is already a breakpoint at {addr:#x} (another debugger, or the same probe twice?)"
    )]
    AlreadyBreakpoint {
        /// The probe spec.
        spec: String,
        /// The runtime address.
        addr: u64,
    },
    /// No executable slot area could be placed near the probed code.
    #[error("cannot map an executable slot area within 2 GiB of {addr:#x} in pid {pid}: {reason}")]
    SlotArea {
        /// The pid.
        pid: i32,
        /// The probed address.
        addr: u64,
        /// What went wrong.
        reason: String,
    },
    /// A return trampoline fired with no saved return address: the tracee cannot continue.
    #[error(
        "thread {tid} returned through the trampoline with no saved return address (stack switched?); the tracee was stopped"
    )]
    LostReturn {
        /// The thread.
        tid: i32,
    },
    /// A system call failed while tracing.
    #[error("{what} failed for pid {pid}: {error}")]
    Sys {
        /// What was being done.
        what: &'static str,
        /// The thread or process.
        pid: i32,
        /// The OS error.
        error: io::Error,
    },
    /// The gdb remote transport failed.
    #[error(transparent)]
    Gdb(#[from] GdbError),
    /// The program under the stub is not the binary the probe names.
    #[error(
        "{spec}: the program under the gdb stub does not have {binary}'s instruction at 0x{addr:x}; give the binary QEMU runs"
    )]
    NotTheProgram {
        /// The probe spec.
        spec: String,
        /// The binary named in it.
        binary: PathBuf,
        /// The probe's runtime address.
        addr: u64,
    },
}

impl BreakpointError {
    /// `Sys` from the current errno.
    pub(crate) fn last(what: &'static str, pid: i32) -> Self {
        BreakpointError::Sys {
            what,
            pid,
            error: io::Error::last_os_error(),
        }
    }
}
