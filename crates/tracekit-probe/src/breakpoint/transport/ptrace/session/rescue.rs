//! Kill safety (x86-64): when tracekit dies, even by SIGKILL, the program it traced runs on
//! as if it had never been probed.
//!
//! When a tracer dies the kernel detaches its tracees and they run on with whatever is in
//! their memory: our int3s, return addresses replaced by the trampoline's, threads in
//! slots. A thread then executing an int3 gets a SIGTRAP, which kills it unless the program
//! has a handler. So the program gets one: at attach (and after every exec), before any
//! breakpoint is written, an injected `mmap` maps a *rescue area* into the process and an
//! injected `rt_sigaction` installs the SIGTRAP handler written there (`rescue/handler.S`,
//! position-independent code; [`area`] has the layout). At a normal detach its tables are
//! emptied and it stays, handing any SIGTRAP to the program's own disposition (see
//! [`Session::release_rescue`] for why). While tracekit lives
//! the handler never runs for our traps: each is reported to tracekit first, which
//! suppresses it. Once tracekit is gone, the handler finds the trap in the area's tables,
//! which tracekit keeps complete at every moment:
//!
//! - an int3 at a probe point (or its guard, below): the thread goes to a copy of the
//!   displaced instruction in the slot area (its out-of-line slot, or for a simulated one a
//!   *rescue copy* written there when the probes are placed), which jumps back after the
//!   original. The code is never written: every later hit costs one signal;
//! - the entry point's or the loader's hook int3 (met by one thread at a time: startup,
//!   and the loader's lock): the original bytes are written back (through `/proc/self/mem`;
//!   failing that, the page is made writable) and the thread resumes there;
//! - a slot's breakpoint (`--slot-breakpoint`): the thread resumes after the original;
//! - the return trampoline (or the int3 after it): the thread resumes at the real return
//!   address, found by the stack slot it was popped from (each hijack is recorded before it
//!   is made);
//! - anything else (the program's own int3, a `kill -TRAP`): the program's own SIGTRAP
//!   action is put back and the signal raised again, as if the handler did not exist.
//!
//! Threads in a slot or a copy finish it and jump back (slot areas stay mapped).
//!
//! **The race with a dying tracer.** A thread in a signal-delivery stop for one of our traps
//! when tracekit dies is let go with the registers tracekit left, and (measured on 6.18) its
//! SIGTRAP dropped: if tracekit had not handled it yet, the thread runs on just past the
//! int3. So a breakpoint is two int3s ([`patch_len`], [`point_patch_len`]): the second, a
//! *guard*, traps again, now without a tracer, and the handler sends the thread to the
//! copy. On an instruction longer than a byte the guard is its second byte; on a one-byte
//! instruction (`push rbp`) it is the first byte of the next instruction, which gets a copy
//! too: the point's copy jumps to it, and while tracekit lives a thread about to run into
//! the guard (after the one-byte instruction was simulated) is sent there, so the guard is
//! only met by a thread that stopped before it. The guard bytes are never written back
//! before detach: a thread let go when tracekit died may reach its guard long after another
//! thread's rescue. The trampoline is two int3s too. If tracekit had handled the trap, the
//! registers already point where the thread goes next (they are set in one
//! `PTRACE_SETREGS`). Should a kernel deliver the SIGTRAP instead, the handler must tell the
//! two apart: tracekit first overwrites the stop's siginfo (`PTRACE_SETSIGINFO`) with a mark
//! ([`area::MAGIC`] in `si_errno`) and the trap's pc and stack pointer, and the handler goes
//! on unchanged when either differs from the signal frame's. Memory written while handling
//! (a simulated push, the hijacked return slot) is written again the same way when the
//! thread is sent to the copy, and each hijack's entry is written before the stack is
//! changed. Entries of returns that completed are left: a thread's live entries are the
//! lowest of its region, which the handler scans first (see [`Area::record_return`]).
//!
//! **Injected system calls** (the area's `mmap`, the handler's `rt_sigaction`, slot areas'
//! `mmap` and `munmap`) run from a stub that puts the thread right by itself
//! ([`bootstrap`], in the vDSO's tail), driven by `PTRACE_SYSCALL`: no trap flag, no trap,
//! no signal, so a tracer killed at any moment of one leaves nothing behind. (Before, the
//! area's `mmap` was single-stepped: a tracekit killed during it killed the program, 5 of
//! 800 kills over eight seeds, all in the first milliseconds.) It matters beyond a dying
//! tracer: the SIGTRAP that ends a single step is forced on the thread, and a forced signal
//! the thread blocks is unblocked and its action reset to `SIG_DFL` for the whole process,
//! tracer or not. Attaching while the program creates threads, an injection into its leader
//! inside `pthread_create` (every signal blocked around its `clone`) took the handler away
//! again (5 of 100 such attaches; ftrace showed the leader's step trap right after the
//! injected `rt_sigaction`, and, once tracekit was killed, the next breakpoint delivered
//! with `sa_handler` 0 and the handler's flags: 3 of 2,100 kills).
//!
//! Where that stub cannot be used (no room in the vDSO, or see [`bootstrap::run`]) a call
//! is single-stepped with the thread's registers replaced, for a few microseconds; a tracer
//! that dies then leaves the trap flag set. Once the area exists such an injection runs
//! from its stub (`syscall; int3; int3`), the thread's own registers saved in the area
//! first: the handler, entered from the stub (single-step trap or int3), puts them back (an
//! interrupted restartable system call is restarted), and a single-step trap anywhere else
//! just clears the flag.
//!
//! **Not covered.** Without room for that stub in the vDSO (or without a vDSO), or where the
//! stub cannot stand in for the kernel (see [`bootstrap::run`]), the `mmap` is
//! single-stepped as before: a tracer killed during it (microseconds, once per process
//! and exec) leaves the thread with wrong registers and single-stepping. A probe on `ret` or after a
//! `lock` prefix has no guard (code may jump over a `lock`), nor one whose next instruction
//! cannot be copied; a thread that jumps straight to the guard after a one-byte instruction
//! once tracekit is gone runs that instruction twice. A program with a SIGTRAP handler of
//! its own keeps it (a warning says kill safety is off for it), as does one that installs
//! one later; a thread that blocks SIGTRAP is killed by the kernel at an int3 as before, and
//! one that meets an int3 while tracekit lives (or is single-stepped, above) resets the
//! handler to `SIG_DFL` for the whole process. An
//! unfollowed fork child keeps the handler (it only ever takes the "not ours" path there).

mod area;
mod bootstrap;

use super::*;
use crate::breakpoint::arch::{Handling, ReturnSlot, SlotReturn};
use crate::breakpoint::engine::MAX_RETURN_DEPTH;
use crate::breakpoint::transport::inject::mmap_args;
use crate::symbols::Machine;
pub(super) use area::Area;

/// x86-64's `rt_sigaction` (arch/x86/entry/syscalls/syscall_64.tbl).
const NR_RT_SIGACTION: u64 = 13;
/// x86-64's `read`, also the number execve's return value makes of any call (see
/// `map_rescue`): run on fd -1 it does nothing.
const NR_READ: u64 = 0;
const SIGTRAP: u64 = libc::SIGTRAP as u64;
/// `SIG_IGN`: handlers above it are the program's own.
const SIG_IGN: u64 = 1;

/// A process's kill safety.
#[derive(Debug, Clone, Default)]
pub(super) enum Rescue {
    /// Not set up yet (nothing placed in this address space).
    #[default]
    Untried,
    /// Not available (another architecture, the program's own handler, a failure).
    Off,
    /// The handler is installed; its area is this.
    On(Box<Area>),
}

impl Rescue {
    /// Thread `tid` exited: its region of returns is cleared and may be reused.
    pub(super) fn release(&mut self, mem: &mut PtraceTarget, tid: i32) {
        if let Rescue::On(area) = self {
            // Best effort: the process may be gone with the thread.
            let _ = area.release(mem, tid);
        }
    }

    /// A followed fork child's copy (`mem` is the child's memory).
    pub(super) fn fork_copy(
        &self,
        mem: &mut PtraceTarget,
        parent: i32,
        child: i32,
    ) -> io::Result<Rescue> {
        Ok(match self {
            Rescue::On(area) => Rescue::On(Box::new(area.fork_copy(mem, parent, child)?)),
            other => other.clone(),
        })
    }
}

fn sys(what: &'static str, pid: i32) -> impl Fn(io::Error) -> BreakpointError {
    move |error| BreakpointError::Sys { what, pid, error }
}

impl<A: Arch> Session<'_, A>
where
    PtraceTarget: Registers<A::Regs>,
{
    /// Installs the handler in `pid` (every thread stopped) unless done or refused for this
    /// address space; a failure or the program's own handler is a warning, not an error.
    /// `at_exec`: the thread is at its exec stop (still inside `execve`).
    pub(super) fn setup_rescue(&mut self, pid: i32, at_exec: bool) {
        let proc = self.procs.get_mut(&pid).expect("known process");
        if !matches!(proc.rescue, Rescue::Untried) {
            return;
        }
        proc.rescue = Rescue::Off;
        if A::MACHINE != Machine::X86_64 {
            return;
        }
        let result = self.map_rescue(pid, at_exec);
        let proc = self.procs.get_mut(&pid).expect("known process");
        proc.rescue = Rescue::Off;
        match result {
            Ok(Some(area)) => proc.rescue = Rescue::On(Box::new(area)),
            Ok(None) => self.warnings.push(format!(
                "process {pid} has a SIGTRAP handler of its own: kill safety is off for it \
                 (if tracekit dies, a thread meeting a breakpoint gets that handler's SIGTRAP)"
            )),
            Err(e) => self.warnings.push(format!(
                "kill safety is off for process {pid} (if tracekit dies, a thread meeting a \
                 breakpoint dies of SIGTRAP): {e}"
            )),
        }
    }

    /// Maps the area, writes its fixed part and installs the handler. `None` when the
    /// program has a handler of its own (then left as it was).
    fn map_rescue(&mut self, pid: i32, at_exec: bool) -> Result<Option<Area>, BreakpointError> {
        let tid = self.any_stopped_thread(pid);
        let scratch = read_entry(pid).map_err(sys("reading /proc/PID/auxv", pid))?;
        let base = self.map_rescue_area(pid, tid, at_exec, scratch)?;
        if base < 0 {
            let error = io::Error::from_raw_os_error(-base as i32);
            return Err(sys("mapping the rescue area", pid)(error));
        }
        let base = base as u64;
        let proc = self.procs.get_mut(&pid).expect("known");
        area::write_fixed(&mut proc.mem, base).map_err(sys("writing the rescue area", pid))?;
        // From here on injections run from the area's stub (`begin_injection`): a tracer
        // killed during the one that installs the handler leaves a thread that handler
        // can put right.
        proc.rescue = Rescue::On(Box::new(Area::new(base)));
        let mut old = self.sigaction(pid, tid, scratch, Some(base + area::NEW_ACT))?;
        let mem = &mut self.procs.get_mut(&pid).expect("known").mem;
        if let Some(orig) = area::earlier_original(mem, handler_of(&old)) {
            old = orig; // an earlier tracekit's handler, left after its detach
        }
        let mem = &mut self.procs.get_mut(&pid).expect("known").mem;
        mem.write(base + area::ORIG_ACT, &old)
            .map_err(sys("writing the rescue area", pid))?;
        if handler_of(&old) > SIG_IGN {
            self.put_action_back(pid, tid, scratch, base + area::ORIG_ACT)?;
            let munmap = [base, area::LEN, 0, 0, 0, 0];
            self.inject_syscall(pid, tid, scratch, A::NR_MUNMAP, munmap)?;
            return Ok(None);
        }
        Ok(Some(Area::new(base)))
    }

    /// The area's `mmap`, from the self-restoring stub ([`bootstrap`]) when the vDSO has room
    /// for it; else from `scratch` with a single step (a tracer killed during that step
    /// leaves the thread with the call's registers and the trap flag).
    fn map_rescue_area(
        &mut self,
        pid: i32,
        tid: i32,
        at_exec: bool,
        scratch: u64,
    ) -> Result<i64, BreakpointError> {
        let args = mmap_args(0, area::LEN, libc::PROT_READ | libc::PROT_EXEC, 0);
        let proc = self.procs.get_mut(&pid).expect("known process");
        let thread = self.threads.get_mut(&tid).expect("known thread");
        let ran = run_from_stub(
            proc,
            pid,
            tid,
            at_exec,
            A::NR_MMAP,
            args,
            &mut thread.pending_sig,
        );
        if let Some(base) = ran.map_err(sys("mapping the rescue area", pid))? {
            return Ok(base);
        }
        if at_exec {
            // The thread is still inside execve, whose return value (0, `read` on x86-64)
            // replaces the first injected call's number: give it a harmless one.
            self.inject_syscall(pid, tid, scratch, NR_READ, [u64::MAX, 0, 0, 0, 0, 0])?;
        }
        self.inject_syscall(pid, tid, scratch, A::NR_MMAP, args)
    }

    /// Runs `rt_sigaction(SIGTRAP, new, old, 8)` in `tid` and returns the old action (read
    /// back from below the thread's stack pointer, past the red zone).
    fn sigaction(
        &mut self,
        pid: i32,
        tid: i32,
        scratch: u64,
        new: Option<u64>,
    ) -> Result<[u8; 32], BreakpointError> {
        let regs = get_regs::<A>(&mut self.procs.get_mut(&pid).expect("known").mem, tid)?;
        let buf = (A::sp(&regs) - 1024) & !15;
        let args = [SIGTRAP, new.unwrap_or(0), buf, 8, 0, 0];
        let r = self.inject_syscall(pid, tid, scratch, NR_RT_SIGACTION, args)?;
        if r < 0 {
            let error = io::Error::from_raw_os_error(-r as i32);
            return Err(sys("rt_sigaction(SIGTRAP)", pid)(error));
        }
        let mut old = [0u8; 32];
        let mem = &mut self.procs.get_mut(&pid).expect("known").mem;
        mem.read(buf, &mut old)
            .map_err(sys("reading a sigaction", pid))?;
        Ok(old)
    }

    /// `rt_sigaction(SIGTRAP, action, NULL, 8)`, `action` in the tracee's memory.
    fn put_action_back(
        &mut self,
        pid: i32,
        tid: i32,
        scratch: u64,
        action: u64,
    ) -> Result<(), BreakpointError> {
        let args = [SIGTRAP, action, 0, 8, 0, 0];
        let r = self.inject_syscall(pid, tid, scratch, NR_RT_SIGACTION, args)?;
        if r < 0 {
            let error = io::Error::from_raw_os_error(-r as i32);
            return Err(sys("rt_sigaction(SIGTRAP)", pid)(error));
        }
        Ok(())
    }

    /// At detach (every breakpoint and return already restored, slot areas unmapped): the
    /// handler's tables are emptied, so that from now on it only hands any SIGTRAP to the
    /// program's own disposition. The handler stays installed and its area mapped: putting
    /// the disposition back takes an injected system call, during which a tracer killed
    /// after the call but before its single step is over would leave a trap flag that the
    /// program's default SIGTRAP action turns into its death (seen once in a 50-run campaign).
    pub(super) fn release_rescue(&mut self, pid: i32) -> Result<(), BreakpointError> {
        let proc = self.procs.get_mut(&pid).expect("known process");
        let Rescue::On(area) = std::mem::replace(&mut proc.rescue, Rescue::Off) else {
            return Ok(());
        };
        area::empty(&mut proc.mem, area.base).map_err(sys("emptying the rescue area", pid))
    }
}

/// Runs system call `nr` in stopped thread `tid` of `pid` from the self-restoring stub in the
/// vDSO's tail ([`bootstrap`]), driven by `PTRACE_SYSCALL`: no single step, so no trap and no
/// signal at all. `None` where there is no stub (not x86-64, no room in the vDSO) or it
/// cannot stand in for the kernel (see [`bootstrap::run`]): the caller single-steps.
///
/// Every injection goes this way when it can, not only the rescue area's `mmap`: a single
/// step ends in a SIGTRAP the kernel forces on the thread, and a forced signal the thread
/// blocks is unblocked and its action reset to `SIG_DFL`, for the whole process, even while
/// a tracer takes the signal (force_sig_info_to_task). A thread inside `pthread_create`
/// blocks every signal around its `clone`, and a new thread until it has started: an
/// injection there silently took the rescue handler away again (and a program's own
/// SIGTRAP handler), so that once tracekit died the next breakpoint killed the program.
pub(super) fn run_from_stub<A: Arch>(
    proc: &mut Proc<A>,
    pid: i32,
    tid: i32,
    at_exec: bool,
    nr: u64,
    args: [u64; 6],
    pending_sig: &mut i32,
) -> io::Result<Option<i64>> {
    if A::MACHINE != Machine::X86_64 {
        return Ok(None);
    }
    if proc.stub.is_none() {
        // A failed read is not remembered: the next injection looks again.
        proc.stub = bootstrap::stub_address(pid, &mut proc.mem).ok();
    }
    let Some(Some(at)) = proc.stub else {
        return Ok(None);
    };
    bootstrap::run(&mut proc.mem, tid, at, at_exec, nr, args, pending_sig)
}

/// Before a system call is injected into `tid`: with the rescue area in place, the call
/// runs from its stub and the thread's registers are saved there first (the handler puts
/// them back if tracekit dies before the injection ends). Returns where to inject from.
pub(super) fn begin_injection<A: Arch>(
    proc: &mut Proc<A>,
    tid: i32,
    at: u64,
) -> Result<u64, BreakpointError>
where
    PtraceTarget: Registers<A::Regs>,
{
    let Rescue::On(area) = &proc.rescue else {
        return Ok(at);
    };
    let base = area.base;
    let regs = get_regs::<A>(&mut proc.mem, tid)?;
    if size_of::<A::Regs>() != size_of::<[u64; 27]>() {
        return Ok(at);
    }
    // SAFETY: A::Regs is x86-64's user_regs_struct here (Machine::X86_64, checked when the
    // area was set up, and the size just checked): 27 plain u64s, any bit pattern valid.
    let words: [u64; 27] = unsafe { std::mem::transmute_copy(&regs) };
    area::begin_injection(&mut proc.mem, base, &words).map_err(sys("saving registers", tid))?;
    Ok(base + area::STUB)
}

/// After an injected system call (whatever its outcome).
pub(super) fn end_injection<A: Arch>(proc: &mut Proc<A>) {
    if let Rescue::On(area) = &proc.rescue {
        let _ = area::end_injection(&mut proc.mem, area.base);
    }
}

/// The handler field of a kernel `struct sigaction`.
fn handler_of(action: &[u8; 32]) -> u64 {
    u64::from_le_bytes(action[..8].try_into().expect("8 bytes"))
}

/// Records a breakpoint about to be written at `addr` (see [`Area::add_point`]). A full
/// table leaves that breakpoint unprotected: a warning.
pub(super) fn protect_point<A: Arch>(
    proc: &mut Proc<A>,
    pid: i32,
    warnings: &mut Vec<String>,
    addr: u64,
    resume: u64,
    orig: Option<u8>,
) -> Result<(), BreakpointError> {
    let Rescue::On(area) = &mut proc.rescue else {
        return Ok(());
    };
    let added = (area.add_point(&mut proc.mem, addr, resume, orig))
        .map_err(sys("writing the rescue area", pid))?;
    if !added {
        warnings.push(format!(
            "too many breakpoints in process {pid}: the one at {addr:#x} is not protected \
             if tracekit dies"
        ));
    }
    Ok(())
}

/// How many bytes to patch for a breakpoint on `insn` (whose bytes start `code`): on x86-64
/// two int3s when the instruction is longer than one byte (the second is a guard: a thread
/// stopped at the first when tracekit dies is let go just past it, with its SIGTRAP
/// dropped, and must trap again there), except after a `lock` prefix, which code may jump
/// over; one elsewhere.
pub(super) fn patch_len<A: Arch>(insn: &A::Insn, code: &[u8]) -> usize {
    let guarded = A::MACHINE == Machine::X86_64 && A::len(insn) >= 2 && code.first() != Some(&0xf0);
    A::BREAKPOINT.len() * if guarded { 2 } else { 1 }
}

/// Writes a breakpoint over `orig.len()` bytes at `addr` (see [`patch_len`]), each byte first
/// recorded for the handler: it puts that byte back and resumes the thread at `addr`.
pub(super) fn arm_bytes<A: Arch>(
    proc: &mut Proc<A>,
    pid: i32,
    warnings: &mut Vec<String>,
    addr: u64,
    orig: &[u8],
) -> Result<(), BreakpointError> {
    for (i, &b) in orig.iter().enumerate() {
        protect_point(proc, pid, warnings, addr + i as u64, addr, Some(b))?;
    }
    write_breakpoint(proc, pid, addr, orig.len())
}

/// Covers `len` bytes at `addr` with breakpoints (each already in the handler's tables).
fn write_breakpoint<A: Arch>(
    proc: &mut Proc<A>,
    pid: i32,
    addr: u64,
    len: usize,
) -> Result<(), BreakpointError> {
    let patch = A::BREAKPOINT.repeat(len / A::BREAKPOINT.len());
    (proc.mem.write(addr, &patch)).map_err(sys("writing a breakpoint", pid))
}

/// [`patch_len`] for a probe point at `addr`, which may also guard a one-byte instruction
/// (not `ret`): the guard is then the first byte of the next instruction, which gets a copy
/// too ([`write_guarded_copies`]). Only with kill safety on and slots returning by jump.
pub(super) fn point_patch_len<A: Arch>(
    rescue: &Rescue,
    jump: bool,
    insn: &A::Insn,
    code: &[u8],
    addr: u64,
) -> usize {
    let n = patch_len::<A>(insn, code);
    let one_byte = A::len(insn) == 1 && code.len() > 1 && code[0] != 0xc3 && code[0] != 0xf0;
    if !(matches!(rescue, Rescue::On(_)) && jump && one_byte) {
        return n;
    }
    let next = A::decode(&code[1..], addr + 1);
    match next.map(|j| A::classify(&j)) {
        Some(Handling::Simulate | Handling::OutOfLine) => 2 * A::BREAKPOINT.len(),
        _ => n,
    }
}

/// For a one-byte point with a guard: at `slot` the instruction and a jump to the copy of
/// the next instruction (the one under the guard), which is at the following slot and jumps
/// back after it. Recorded: `slot` as the point's copy, the second as the guard's target.
pub(super) fn write_guarded_copies<A: Arch>(
    proc: &mut Proc<A>,
    pid: i32,
    live: &LivePoint<A>,
    slot: u64,
) -> Result<(), BreakpointError> {
    let err = sys("writing the slot area", pid);
    let guard = live.addr + 1;
    let second = slot + A::SLOT_SIZE;
    let mut code = vec![0u8; A::MAX_INSN_LEN];
    proc.mem.read(guard, &mut code).map_err(&err)?;
    code[0] = live.orig[1];
    let next = A::decode(&code, guard).ok_or_else(|| err(io::Error::other("undecodable")))?;
    let image =
        A::prepare_slot(&next, second, SlotReturn::Jump).map_err(|e| err(io::Error::other(e)))?;
    proc.mem.write(second, &image).map_err(&err)?;
    // A one-byte instruction has nothing to re-encode: its byte, then `jmp rel32`.
    let rel = (second as i64 - (slot as i64 + 6)) as i32;
    let mut first = vec![live.orig[0], 0xe9];
    first.extend_from_slice(&rel.to_le_bytes());
    proc.mem.write(slot, &first).map_err(&err)?;
    if let Rescue::On(area) = &mut proc.rescue {
        area.copies.insert(live.addr, slot);
        area.guards.insert(guard, second);
        area.ranges.push((slot, live.addr, 1));
        area.ranges.push((second, guard, A::len(&next) as u64));
    }
    Ok(())
}

/// Where a thread trapping on the guard at `addr` goes while tracekit lives (it came there
/// by a jump, or from a slot returning by breakpoint): the copy of the guarded instruction.
pub(super) fn guard_target<A: Arch>(proc: &Proc<A>, addr: u64) -> Option<u64> {
    match &proc.rescue {
        Rescue::On(area) => area.guards.get(&addr).copied(),
        _ => None,
    }
}

/// After the engine handled a trap: a thread about to run into a guard (the one-byte
/// instruction before it was simulated) goes to the guarded instruction's copy instead.
pub(super) fn redirect_guard<A: Arch>(proc: &Proc<A>, regs: &mut A::Regs) {
    if let Some(to) = guard_target(proc, A::pc(regs)) {
        A::set_pc(regs, to);
    }
}

/// At detach (original bytes back): a stopped thread inside a rescue copy goes to the same
/// place in the original code (the copies go away with the slot areas).
pub(super) fn evacuate_copies<A: Arch>(proc: &mut Proc<A>, tid: i32) -> Result<(), BreakpointError>
where
    PtraceTarget: Registers<A::Regs>,
{
    let Rescue::On(area) = &proc.rescue else {
        return Ok(());
    };
    let mut regs = get_regs::<A>(&mut proc.mem, tid)?;
    let pc = A::pc(&regs);
    let Some(&(copy, orig, len)) =
        (area.ranges.iter()).find(|&&(c, _, _)| pc >= c && pc < c + A::SLOT_SIZE)
    else {
        return Ok(());
    };
    A::set_pc(&mut regs, if pc == copy { orig } else { orig + len });
    set_regs::<A>(&mut proc.mem, tid, &regs)
}

/// Writes the rescue copy of simulated point `live` at `slot`: the instruction re-encoded
/// there and a jump back after the original, where the handler sends a thread that meets
/// the breakpoint once tracekit is gone. Without one (it cannot be re-encoded there) the
/// handler puts the original bytes back instead.
pub(super) fn write_copy<A: Arch>(
    proc: &mut Proc<A>,
    pid: i32,
    live: &LivePoint<A>,
    slot: u64,
) -> Result<(), BreakpointError> {
    let Ok(image) = A::prepare_slot(&live.insn, slot, SlotReturn::Jump) else {
        return Ok(());
    };
    (proc.mem.write(slot, &image)).map_err(sys("writing the slot area", pid))?;
    note_copy(proc, live.addr, slot);
    if let Rescue::On(area) = &mut proc.rescue {
        area.ranges
            .push((slot, live.addr, A::len(&live.insn) as u64));
    }
    Ok(())
}

/// Point `addr`'s instruction runs from `copy` (its slot or rescue copy) and then goes on
/// after the original.
pub(super) fn note_copy<A: Arch>(proc: &mut Proc<A>, addr: u64, copy: u64) {
    if let Rescue::On(area) = &mut proc.rescue {
        area.copies.insert(addr, copy);
    }
}

/// Writes a probe point's breakpoint (`orig.len()` bytes, see [`patch_len`]). With a copy
/// of its instruction, the handler sends a thread trapping on any of them to the copy and
/// never writes the code: a thread still stopped past the first int3 when tracekit died
/// may run after another has taken a rescue, and must find the guard still there.
pub(super) fn arm_point<A: Arch>(
    proc: &mut Proc<A>,
    pid: i32,
    warnings: &mut Vec<String>,
    addr: u64,
    orig: &[u8],
) -> Result<(), BreakpointError> {
    let copy = match &proc.rescue {
        Rescue::On(area) => area.copies.get(&addr).copied(),
        _ => None,
    };
    let Some(copy) = copy else {
        return arm_bytes(proc, pid, warnings, addr, orig);
    };
    for i in 0..orig.len() as u64 {
        protect_point(proc, pid, warnings, addr + i, copy, None)?;
    }
    write_breakpoint(proc, pid, addr, orig.len())
}

/// Records the return trampoline's address.
pub(super) fn protect_trampoline<A: Arch>(
    proc: &mut Proc<A>,
    pid: i32,
    tramp: u64,
) -> Result<(), BreakpointError> {
    match &mut proc.rescue {
        Rescue::On(area) => {
            (area.set_trampoline(&mut proc.mem, tramp)).map_err(sys("writing the rescue area", pid))
        }
        _ => Ok(()),
    }
}

/// Before the tracer changes anything for thread `tid`, stopped at a SIGTRAP with `regs`:
/// when the trap is ours, marks the stop's siginfo and records the return address the
/// engine is about to hijack (at the place in the thread's region where the engine puts
/// it: entries above it are stale and left, see [`Area::record_return`]).
pub(super) fn before_trap<A: Arch>(
    proc: &mut Proc<A>,
    table: &ProbeTable<A>,
    state: &ThreadState,
    tid: i32,
    regs: &A::Regs,
) -> Result<(), BreakpointError> {
    let n = state.returns.len();
    let addr = A::breakpoint_address(A::pc(regs));
    if !matches!(proc.rescue, Rescue::On(_)) || !is_ours(proc, addr) {
        return Ok(());
    }
    mark::<A>(tid, regs)?;
    let Some(point) = proc
        .inst
        .trampoline
        .and_then(|_| point_at(&proc.inst, addr))
    else {
        return Ok(());
    };
    let ReturnSlot::Memory(slot) = A::return_slot(regs) else {
        return Ok(());
    };
    if table.points[point].returns.is_empty() {
        return Ok(());
    }
    // Where the engine's pre-handler will push it: after dropping abandoned frames.
    let frame = A::frame_at_entry(regs);
    let mut depth = n;
    while depth > 0 && state.returns[depth - 1].frame <= frame {
        depth -= 1;
    }
    if depth >= MAX_RETURN_DEPTH {
        return Ok(());
    }
    let err = sys("recording a return address", tid);
    let real = proc.mem.read_u64(slot).map_err(&err)?;
    let Rescue::On(area) = &mut proc.rescue else {
        unreachable!("checked above")
    };
    area.record_return(&mut proc.mem, tid, depth, slot, real)
        .map_err(err)?;
    Ok(())
}

/// Whether one of our breakpoints is at `addr` in this process.
fn is_ours<A: Arch>(proc: &Proc<A>, addr: u64) -> bool {
    proc.inst.is_breakpoint(addr)
        || guard_target(proc, addr).is_some()
        || matches!(proc.phase, ProcPhase::AwaitEntry { addr: a, .. } if a == addr)
        || proc.loader.as_ref().is_some_and(|h| h.addr == addr)
}

/// The probe point at `addr`, if one is.
fn point_at<A: Arch>(inst: &Installed<A>, addr: u64) -> Option<usize> {
    (inst.points.iter()).position(|p| p.as_ref().is_some_and(|l| l.addr == addr))
}

/// Overwrites the siginfo of `tid`'s SIGTRAP stop with the mark: `si_errno` = MAGIC, the
/// trap's pc and stack pointer at offsets 16 and 24 (`handler.S` compares them with its
/// signal frame). `si_code` stays `SI_KERNEL`, as for an int3.
fn mark<A: Arch>(tid: i32, regs: &A::Regs) -> Result<(), BreakpointError> {
    let mut info = [0u8; 128];
    info[..4].copy_from_slice(&libc::SIGTRAP.to_ne_bytes());
    info[4..8].copy_from_slice(&area::MAGIC.to_ne_bytes());
    info[8..12].copy_from_slice(&libc::SI_KERNEL.to_ne_bytes());
    info[16..24].copy_from_slice(&A::pc(regs).to_ne_bytes());
    info[24..32].copy_from_slice(&A::sp(regs).to_ne_bytes());
    // SAFETY: PTRACE_SETSIGINFO reads one 128-byte siginfo_t from the pointer, which points
    // to a buffer of that size that we own; tid is in a signal-delivery stop.
    let r = unsafe { libc::ptrace(libc::PTRACE_SETSIGINFO, tid, 0, info.as_ptr()) };
    if r < 0 {
        return Err(BreakpointError::last("PTRACE_SETSIGINFO", tid));
    }
    Ok(())
}
