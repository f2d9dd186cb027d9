//! Running one system call in a stopped tracee (the `mmap` of the slot area, the `munmap`
//! at detach): ptrace's side of [`inject_syscall`], which saves and restores the registers.
//! Here: the registers through `PTRACE_GETREGS`/`PTRACE_SETREGS`, and a system call
//! instruction written over the code at the given address for one single step.

use super::*;
use crate::breakpoint::transport::inject::{InjectSyscall, inject_syscall};

impl<A: Arch> Session<'_, A>
where
    PtraceTarget: Registers<A::Regs>,
{
    /// Runs one system call in stopped thread `tid`, from a syscall instruction written
    /// temporarily at `at` (every thread of the process is stopped, so none can run it).
    /// Returns the raw result (`-errno` on failure).
    pub(super) fn inject_syscall(
        &mut self,
        pid: i32,
        tid: i32,
        at: u64,
        nr: u64,
        args: [u64; 6],
    ) -> Result<i64, BreakpointError> {
        let proc = self.procs.get_mut(&pid).expect("known process");
        let thread = self.threads.get_mut(&tid).expect("known thread");
        // Without a single step where possible (x86-64: see `rescue::run_from_stub`).
        let by_stub =
            super::rescue::run_from_stub(proc, pid, tid, false, nr, args, &mut thread.pending_sig);
        match by_stub {
            Ok(Some(r)) => return Ok(r),
            Ok(None) => {}
            Err(error) => {
                return Err(BreakpointError::Sys {
                    what: "injecting a system call",
                    pid: tid,
                    error,
                });
            }
        }
        // With kill safety, from the rescue area's stub, the registers saved there first.
        let at = super::rescue::begin_injection(proc, tid, at)?;
        let thread = self.threads.get_mut(&tid).expect("known thread");
        let mut injector = Injector {
            mem: &mut proc.mem,
            pending_sig: &mut thread.pending_sig,
        };
        let r = inject_syscall::<A, _>(&mut injector, tid, at, nr, args);
        super::rescue::end_injection(proc);
        r
    }
}

/// A stopped thread of a traced process, as [`inject_syscall`] drives it.
struct Injector<'a> {
    mem: &'a mut PtraceTarget,
    /// Where a signal that arrives during the step is kept, to be delivered later.
    pending_sig: &'a mut i32,
}

impl<A: Arch> InjectSyscall<A> for Injector<'_>
where
    PtraceTarget: Registers<A::Regs>,
{
    type Error = BreakpointError;

    fn read_regs(&mut self, tid: i32) -> Result<A::Regs, BreakpointError> {
        get_regs::<A>(self.mem, tid)
    }

    fn write_regs(&mut self, tid: i32, regs: &A::Regs) -> Result<(), BreakpointError> {
        set_regs::<A>(self.mem, tid, regs)
    }

    /// Writes the architecture's system call instruction at `at`, single-steps it, and puts
    /// the code back (also when the step failed).
    fn run_syscall(&mut self, tid: i32, at: u64) -> Result<(), BreakpointError> {
        let sys = |what, error| BreakpointError::Sys {
            what,
            pid: tid,
            error,
        };
        let mut orig = vec![0u8; A::SYSCALL.len()];
        (self.mem.read(at, &mut orig)).map_err(|e| sys("reading code", e))?;
        (self.mem.write(at, A::SYSCALL)).map_err(|e| sys("writing a syscall instruction", e))?;
        let stepped = self.step_until_done::<A>(tid, at);
        let restored = self.mem.write(at, &orig);
        stepped?;
        restored.map_err(|e| sys("restoring code", e))
    }
}

impl Injector<'_> {
    /// Steps until the system call instruction at `at` has run. A thread stopped inside the
    /// kernel on its way out of a system call (a new thread's first stop, an exec or clone
    /// event) reports the step's trap at that call's exit, before running any instruction,
    /// and the end of that call may overwrite the return register (execve's 0): the call's
    /// registers are then set again and the step repeated. Without this the call was
    /// silently not made (seen: the kill-safety handler never installed in a thread that
    /// had just been created, and a killed tracekit then killed the program).
    fn step_until_done<A: Arch>(&mut self, tid: i32, at: u64) -> Result<(), BreakpointError>
    where
        PtraceTarget: Registers<A::Regs>,
    {
        let call = get_regs::<A>(self.mem, tid)?;
        for _ in 0..3 {
            step_syscall(tid, at, self.pending_sig)?;
            let regs = get_regs::<A>(self.mem, tid)?;
            if A::pc(&regs) != at {
                return Ok(());
            }
            set_regs::<A>(self.mem, tid, &call)?;
        }
        Err(BreakpointError::Sys {
            what: "injecting a system call",
            pid: tid,
            error: io::Error::other(format!("the thread never ran the call at {at:#x}")),
        })
    }
}

/// Single-steps thread `tid` over the system call instruction at `at`; a signal that arrives
/// first is kept in `pending_sig` and the step repeated.
fn step_syscall(tid: i32, at: u64, pending_sig: &mut i32) -> Result<(), BreakpointError> {
    let failed = |why: String| BreakpointError::Sys {
        what: "injecting a system call",
        pid: tid,
        error: io::Error::other(why),
    };
    // Bounded: a step that keeps stopping without completing must not spin forever.
    for _ in 0..1000 {
        // SAFETY: single-stepping a stopped tracee; no pointers.
        if unsafe { libc::ptrace(libc::PTRACE_SINGLESTEP, tid, 0, 0) } < 0 {
            return Err(BreakpointError::last("PTRACE_SINGLESTEP", tid));
        }
        let status = waitpid(tid, libc::__WALL)?;
        if !libc::WIFSTOPPED(status) {
            return Err(failed("the thread exited".into()));
        }
        let sig = libc::WSTOPSIG(status);
        if status >> 16 != 0 {
            continue; // a ptrace event, not the step's end
        }
        match sig {
            libc::SIGTRAP => return Ok(()),
            // The injected instruction itself faults: stepping again would fault again.
            libc::SIGSEGV | libc::SIGBUS | libc::SIGILL | libc::SIGFPE => {
                return Err(failed(format!(
                    "the injected syscall at {at:#x} faulted (signal {sig})"
                )));
            }
            // A signal arrived first: keep it for later and step again.
            _ => *pending_sig = sig,
        }
    }
    Err(failed(format!(
        "the injected syscall at {at:#x} did not complete"
    )))
}
