//! Running one system call in a stopped tracee (the `mmap` of the slot area, the `munmap`
//! at detach) with its registers restored afterwards.

use super::*;

impl<A: Arch> Session<'_, A>
where
    PtraceTarget: Registers<A::Regs>,
{
    /// Runs one system call in stopped thread `tid`, from a syscall instruction written
    /// temporarily at `at` (every thread of the process is stopped, so none can run it).
    pub(super) fn inject_syscall(
        &mut self,
        pid: i32,
        tid: i32,
        at: u64,
        nr: u64,
        args: [u64; 6],
    ) -> Result<i64, BreakpointError> {
        let sys = |what, source| BreakpointError::Sys {
            what,
            pid: tid,
            error: source,
        };
        let proc = self.procs.get_mut(&pid).expect("known process");
        let saved = proc
            .mem
            .get_regs(tid)
            .map_err(|e| sys("PTRACE_GETREGS", e))?;
        let mut orig = vec![0u8; A::SYSCALL.len()];
        proc.mem
            .read(at, &mut orig)
            .map_err(|e| sys("reading code", e))?;
        proc.mem
            .write(at, A::SYSCALL)
            .map_err(|e| sys("writing a syscall instruction", e))?;
        proc.mem
            .set_regs(tid, &A::syscall_regs(&saved, at, nr, args))
            .map_err(|e| sys("PTRACE_SETREGS", e))?;
        // Bounded: a step that keeps stopping without completing must not spin forever.
        let mut fault = None;
        for _ in 0..1000 {
            // SAFETY: single-stepping a stopped tracee; no pointers.
            if unsafe { libc::ptrace(libc::PTRACE_SINGLESTEP, tid, 0, 0) } < 0 {
                return Err(BreakpointError::last("PTRACE_SINGLESTEP", tid));
            }
            let status = waitpid(tid, libc::__WALL)?;
            if !libc::WIFSTOPPED(status) {
                return Err(sys(
                    "injecting a system call",
                    io::Error::other("the thread exited"),
                ));
            }
            let sig = libc::WSTOPSIG(status);
            if status >> 16 == 0 && sig == libc::SIGTRAP {
                fault = Some(None);
                break;
            }
            if status >> 16 == 0 {
                if matches!(
                    sig,
                    libc::SIGSEGV | libc::SIGBUS | libc::SIGILL | libc::SIGFPE
                ) {
                    // The injected instruction itself faults: stepping again would fault again.
                    fault = Some(Some(sig));
                    break;
                }
                // A signal arrived first: keep it for later and step again.
                self.threads.get_mut(&tid).expect("known").pending_sig = sig;
            }
        }
        let proc = self.procs.get_mut(&pid).expect("known process");
        if fault != Some(None) {
            let _ = proc.mem.write(at, &orig);
            let _ = proc.mem.set_regs(tid, &saved);
            let why = match fault {
                Some(Some(sig)) => {
                    format!("the injected syscall at {at:#x} faulted (signal {sig})")
                }
                _ => format!("the injected syscall at {at:#x} did not complete"),
            };
            return Err(sys("injecting a system call", io::Error::other(why)));
        }
        let after = proc
            .mem
            .get_regs(tid)
            .map_err(|e| sys("PTRACE_GETREGS", e))?;
        proc.mem
            .write(at, &orig)
            .map_err(|e| sys("restoring code", e))?;
        proc.mem
            .set_regs(tid, &saved)
            .map_err(|e| sys("PTRACE_SETREGS", e))?;
        Ok(A::syscall_result(&after))
    }
}
