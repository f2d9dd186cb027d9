//! The ptrace side: starting or attaching, following threads and forks, passing signals
//! through, placing probes (with an injected `mmap` for the slot area) and detaching cleanly.

use std::collections::{HashMap, HashSet};
use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::target::PtraceTarget;
use super::{PtraceOptions, Target};
use crate::breakpoint::BreakpointError;
use crate::breakpoint::arch::x86_64::X86_64;
use crate::breakpoint::arch::{Arch, Handling, SlotReturn};
use crate::breakpoint::engine::{
    Engine, Installed, LivePoint, ProbeTable, ThreadState, Trap, place,
};
use crate::breakpoint::transport::{Memory, Registers};
use crate::event::{ExitStatus, HitEvent, Outcome};

type A = X86_64;

const OPTIONS: libc::c_int = libc::PTRACE_O_TRACECLONE
    | libc::PTRACE_O_TRACEFORK
    | libc::PTRACE_O_TRACEVFORK
    | libc::PTRACE_O_TRACEEXEC;
const WAIT_FLAGS: libc::c_int = libc::__WALL | libc::__WNOTHREAD;
const MAP_FIXED_NOREPLACE: u64 = 0x10_0000;

/// How long the tracer polls for the next stop before sleeping, when not pinned.
const DEFAULT_SPIN: Duration = Duration::from_micros(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProcPhase {
    /// Spawned, before its exec: nothing to place yet.
    BeforeExec,
    /// After exec: a breakpoint at the entry point waits for the libraries to be loaded.
    AwaitEntry { addr: u64, orig: u8 },
    /// Probes placed (as far as their binaries are mapped).
    Live,
}

struct Proc {
    mem: PtraceTarget,
    inst: Installed<A>,
    phase: ProcPhase,
    /// A signal was delivered while a thread was in a slot: its frame may return there, so
    /// the slot area must stay mapped after detach.
    keep_slots: bool,
    /// The dynamic loader's breakpoint (r_brk), while some probe waits for its library.
    loader: Option<LoaderHook>,
}

/// glibc's `r_debug.r_brk`: the function the dynamic loader calls after changing the list of
/// loaded objects (as gdb uses it). A breakpoint there lets probes go into `dlopen`ed libraries.
#[derive(Debug, Clone)]
struct LoaderHook {
    r_debug: u64,
    addr: u64,
    orig: Vec<u8>,
    insn: <A as Arch>::Insn,
}

#[derive(Debug, Default)]
struct Thread {
    tgid: i32,
    state: ThreadState,
    /// In a ptrace stop we have not resumed from.
    stopped: bool,
    /// A signal to deliver when resuming (suppressed while we needed the thread).
    pending_sig: i32,
    /// A vfork child: runs in its parent's memory until it execs.
    vfork_child: bool,
    /// In a group-stop (resumed with PTRACE_LISTEN, not PTRACE_CONT).
    group_stop: bool,
}

/// One run of the engine.
pub(super) struct Session<'a> {
    engine: Engine<A>,
    opts: &'a PtraceOptions,
    procs: HashMap<i32, Proc>,
    threads: HashMap<i32, Thread>,
    main_pid: i32,
    spawned: bool,
    exit: Option<ExitStatus>,
    warnings: Vec<String>,
    /// fork child → the thread that forked it.
    fork_parents: HashMap<i32, i32>,
    /// Stopped pids we do not know yet (a fork child whose parent's event is still queued).
    unclaimed: HashSet<i32>,
    /// Children announced by a vfork event (they share the parent's memory).
    vforks: HashSet<i32>,
    /// Per point: placed in some process at some time.
    placed: Vec<bool>,
    /// Every thread is being brought to a stop (detach, or placing probes after dlopen).
    holding: bool,
    waker_pid: i32,
    exec_error: Option<OwnedFd>,
    program: PathBuf,
    saved_affinity: Option<libc::cpu_set_t>,
}

impl<'a> Session<'a> {
    pub(super) fn run(
        table: ProbeTable<A>,
        target: Target,
        opts: &'a PtraceOptions,
        stop: &AtomicBool,
        on_hit: &mut dyn FnMut(&HitEvent),
    ) -> Result<Outcome, BreakpointError> {
        let slot_return = if opts.slot_breakpoint {
            SlotReturn::Breakpoint
        } else {
            SlotReturn::Jump
        };
        let n_points = table.points.len();
        let engine = Engine::new(table, opts.print, slot_return);
        let (waker_pid, waker_fd) = spawn_waker()?;
        let tracer_affinity = match opts.pin_cpu.map(pin_self).transpose() {
            Ok(mask) => mask,
            Err(e) => {
                reap(waker_pid);
                return Err(e);
            }
        };
        let mut s = Session {
            engine,
            opts,
            procs: HashMap::new(),
            threads: HashMap::new(),
            main_pid: 0,
            spawned: false,
            exit: None,
            warnings: vec![],
            fork_parents: HashMap::new(),
            unclaimed: HashSet::new(),
            vforks: HashSet::new(),
            placed: vec![false; n_points],
            holding: false,
            waker_pid,
            exec_error: None,
            program: PathBuf::new(),
            saved_affinity: None,
        };
        let done = AtomicBool::new(false);
        let result = std::thread::scope(|scope| {
            let dog = scope.spawn(|| watchdog(stop, &done, waker_fd));
            if !matches!(target, Target::Attach(_)) {
                // A spawned program inherits the pinned tracer's mask; give it back the original.
                s.saved_affinity = tracer_affinity;
            }
            let r = s.start(target).and_then(|()| s.event_loop(stop, on_hit));
            let r = match r {
                Ok(()) => s.detach_all(on_hit),
                Err(e) => {
                    let _ = s.detach_all(on_hit);
                    Err(e)
                }
            };
            done.store(true, Ordering::Relaxed);
            dog.thread().unpark();
            r
        });
        reap(s.waker_pid);
        if let Some(mask) = tracer_affinity {
            // SAFETY: mask is a valid cpu_set_t of the right size; 0 means this thread.
            unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &mask) };
        }
        result?;
        for (def, placed) in s.engine.table.points.iter().zip(&s.placed) {
            if !placed {
                s.warnings.push(format!(
                    "{}: {} was never mapped by the traced program; the probe was not placed \
                     (check that the program really uses this binary)",
                    def.spec,
                    def.binary.display()
                ));
            }
        }
        Ok(Outcome {
            report: s.engine.report(),
            pid: s.main_pid,
            exit: s.exit,
            lost_events: 0,
            warnings: s.warnings,
        })
    }

    fn start(&mut self, target: Target) -> Result<(), BreakpointError> {
        match target {
            Target::Spawn { program, args } => self.spawn(&program, &args, None, None),
            Target::SpawnRedirected {
                program,
                args,
                stdin,
                stdout,
            } => self.spawn(&program, &args, stdin, stdout),
            Target::Attach(pid) => self.attach(pid),
        }
    }

    fn spawn(
        &mut self,
        program: &Path,
        args: &[OsString],
        stdin: Option<OwnedFd>,
        stdout: Option<OwnedFd>,
    ) -> Result<(), BreakpointError> {
        let spawn_err = |source| BreakpointError::Spawn {
            program: program.into(),
            error: source,
        };
        let (pid, err_fd) = fork_stopped_child(program, args, stdin, stdout).map_err(spawn_err)?;
        self.main_pid = pid;
        self.spawned = true;
        self.exec_error = Some(err_fd);
        self.program = program.into();
        if let Err(e) = seize(pid) {
            // SAFETY: plain kill of the child we just forked.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            return Err(e);
        }
        self.add_proc(pid, ProcPhase::BeforeExec)?;
        self.add_thread(pid, pid);
        // SAFETY: plain kill; the child stopped itself before exec and this lets it go on.
        unsafe { libc::kill(pid, libc::SIGCONT) };
        Ok(())
    }

    fn attach(&mut self, pid: i32) -> Result<(), BreakpointError> {
        if pid <= 0 || !Path::new(&format!("/proc/{pid}")).exists() {
            return Err(BreakpointError::NoSuchProcess(pid));
        }
        self.main_pid = pid;
        let mut seized = HashSet::new();
        // Threads may be created while we attach: repeat until the task list is stable.
        loop {
            let tids = list_tasks(pid).map_err(|_| BreakpointError::NoSuchProcess(pid))?;
            let new: Vec<i32> = tids.into_iter().filter(|t| !seized.contains(t)).collect();
            if new.is_empty() {
                break;
            }
            for tid in new {
                match seize(tid) {
                    Ok(()) => {}
                    Err(BreakpointError::NoSuchProcess(_)) if tid != pid => continue, // exited meanwhile
                    Err(e) => {
                        self.abort_attach(&seized);
                        return Err(e);
                    }
                }
                seized.insert(tid);
                // SAFETY: PTRACE_INTERRUPT on a tracee we seized; no pointers.
                unsafe { libc::ptrace(libc::PTRACE_INTERRUPT, tid, 0, 0) };
            }
        }
        for &tid in &seized {
            self.add_thread(tid, pid);
        }
        for &tid in &seized {
            self.wait_stopped(tid)?;
        }
        // Only now: /proc/PID/mem holds on to the address space it was opened on, and a
        // process caught in the middle of an exec has its new one only once it has stopped.
        self.add_proc(pid, ProcPhase::Live)?;
        self.install(pid)?;
        self.resume_held(0)
    }

    fn abort_attach(&mut self, seized: &HashSet<i32>) {
        for &tid in seized {
            // SAFETY: detaching tracees we seized; nothing was changed in them yet.
            unsafe { libc::ptrace(libc::PTRACE_DETACH, tid, 0, 0) };
        }
    }

    fn add_proc(&mut self, pid: i32, phase: ProcPhase) -> Result<(), BreakpointError> {
        let mem = PtraceTarget::open(pid).map_err(|source| BreakpointError::Sys {
            what: "opening /proc/PID/mem",
            pid,
            error: source,
        })?;
        let inst = Installed::new(self.engine.table.points.len());
        self.procs.insert(
            pid,
            Proc {
                mem,
                inst,
                phase,
                keep_slots: false,
                loader: None,
            },
        );
        Ok(())
    }

    fn add_thread(&mut self, tid: i32, tgid: i32) {
        self.threads.entry(tid).or_insert_with(|| Thread {
            tgid,
            ..Default::default()
        });
        if let Some(cpu) = self.opts.pin_cpu {
            let saved = pin(tid, cpu);
            if self.saved_affinity.is_none() {
                self.saved_affinity = saved;
            }
        }
    }

    /// Waits until `tid` is in a ptrace stop (after PTRACE_INTERRUPT), keeping any signal
    /// it reports meanwhile for later delivery.
    fn wait_stopped(&mut self, tid: i32) -> Result<(), BreakpointError> {
        let status = waitpid(tid, libc::__WALL)?;
        if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
            self.threads.remove(&tid);
            return Ok(());
        }
        let sig = libc::WSTOPSIG(status);
        let t = self.threads.get_mut(&tid).expect("known thread");
        t.stopped = true;
        if status >> 16 == 0 && sig != libc::SIGTRAP {
            t.pending_sig = sig;
        }
        t.group_stop = status >> 16 == libc::PTRACE_EVENT_STOP && is_stop_signal(sig);
        Ok(())
    }

    fn resume(&mut self, tid: i32, sig: i32) -> Result<(), BreakpointError> {
        if let Some(t) = self.threads.get_mut(&tid) {
            t.stopped = false;
            t.group_stop = false;
        }
        // SAFETY: PTRACE_CONT on a stopped tracee; no pointers.
        let r = unsafe { libc::ptrace(libc::PTRACE_CONT, tid, 0, sig as libc::c_long) };
        if r < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH) {
            return Err(BreakpointError::last("PTRACE_CONT", tid));
        }
        Ok(())
    }

    fn event_loop(
        &mut self,
        stop: &AtomicBool,
        on_hit: &mut dyn FnMut(&HitEvent),
    ) -> Result<(), BreakpointError> {
        let spin = match (self.opts.spin, self.opts.pin_cpu) {
            (Some(d), _) => d,
            // Pinned, the tracee needs this very CPU: never spin there.
            (None, Some(_)) => Duration::ZERO,
            (None, None) => DEFAULT_SPIN,
        };
        while !self.threads.is_empty() && !stop.load(Ordering::Relaxed) {
            let (pid, status) = waitpid_any(spin)?;
            if pid == self.waker_pid {
                self.waker_pid = 0;
                continue;
            }
            self.on_status(pid, status, on_hit, false)?;
        }
        Ok(())
    }

    /// Handles one wait status. In `detaching` mode stopped threads are left stopped.
    fn on_status(
        &mut self,
        tid: i32,
        status: i32,
        on_hit: &mut dyn FnMut(&HitEvent),
        detaching: bool,
    ) -> Result<(), BreakpointError> {
        if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
            self.on_exit(tid, status)?;
            return Ok(());
        }
        if !self.threads.contains_key(&tid) && !self.claim(tid)? {
            return Ok(());
        }
        self.threads.get_mut(&tid).expect("claimed").stopped = true;
        let sig = libc::WSTOPSIG(status);
        let (resume_sig, keep_stopped) = match status >> 16 {
            0 => self.on_signal(tid, sig, on_hit)?,
            libc::PTRACE_EVENT_CLONE => {
                let child = event_msg(tid)? as i32;
                let tgid = self.threads[&tid].tgid;
                self.add_thread(child, tgid);
                (0, false)
            }
            libc::PTRACE_EVENT_FORK | libc::PTRACE_EVENT_VFORK => {
                let child = event_msg(tid)? as i32;
                self.fork_parents.insert(child, tid);
                if status >> 16 == libc::PTRACE_EVENT_VFORK {
                    self.vforks.insert(child);
                }
                if self.unclaimed.remove(&child) && self.on_fork_child(child)? {
                    self.resume(child, 0)?;
                }
                (0, false)
            }
            libc::PTRACE_EVENT_EXEC => {
                if self.threads[&tid].vfork_child && !self.vfork_exec(tid)? {
                    return Ok(());
                }
                self.on_exec(tid)?;
                (0, false)
            }
            libc::PTRACE_EVENT_STOP => {
                if is_stop_signal(sig) {
                    // Group-stop: stay stopped as the signal asked, but keep reporting events.
                    self.threads.get_mut(&tid).expect("claimed").group_stop = true;
                    if !detaching {
                        // SAFETY: PTRACE_LISTEN on a tracee in group-stop; no pointers.
                        unsafe { libc::ptrace(libc::PTRACE_LISTEN, tid, 0, 0) };
                        self.threads.get_mut(&tid).expect("claimed").stopped = false;
                    }
                    return Ok(());
                }
                if detaching && self.trap_pending(tid)? {
                    // Interrupted right after executing one of our int3s: its SIGTRAP is
                    // still queued. Let it come (and be handled) before holding the thread.
                    return self.resume(tid, 0);
                }
                (0, false)
            }
            _ => (0, false),
        };
        if detaching || keep_stopped {
            if let Some(t) = self.threads.get_mut(&tid).filter(|_| resume_sig != 0) {
                t.pending_sig = resume_sig;
            }
            return Ok(());
        }
        self.resume(tid, resume_sig)
    }

    /// Whether stopped thread `tid` sits just past one of our breakpoints: a trap that the
    /// kernel has queued but not yet reported (PTRACE_INTERRUPT is reported first).
    fn trap_pending(&mut self, tid: i32) -> Result<bool, BreakpointError> {
        let tgid = self.threads[&tid].tgid;
        let Some(proc) = self.procs.get_mut(&tgid) else {
            return Ok(false);
        };
        let regs = proc
            .mem
            .get_regs(tid)
            .map_err(|source| BreakpointError::Sys {
                what: "PTRACE_GETREGS",
                pid: tid,
                error: source,
            })?;
        let addr = A::breakpoint_address(A::pc(&regs));
        let entry = matches!(proc.phase, ProcPhase::AwaitEntry { addr: a, .. } if a == addr);
        let loader = proc.loader.as_ref().is_some_and(|h| h.addr == addr);
        Ok(proc.inst.is_breakpoint(addr) || entry || loader)
    }

    /// A signal-delivery stop: ours (a breakpoint) or the program's (passed through).
    /// Returns the signal to deliver and whether to keep the thread stopped.
    fn on_signal(
        &mut self,
        tid: i32,
        sig: i32,
        on_hit: &mut dyn FnMut(&HitEvent),
    ) -> Result<(i32, bool), BreakpointError> {
        let tgid = self.threads[&tid].tgid;
        let proc = self
            .procs
            .get_mut(&tgid)
            .expect("thread of a known process");
        let mut regs = proc
            .mem
            .get_regs(tid)
            .map_err(|source| BreakpointError::Sys {
                what: "PTRACE_GETREGS",
                pid: tid,
                error: source,
            })?;
        if sig != libc::SIGTRAP {
            if proc.inst.in_areas(A::pc(&regs)) {
                proc.keep_slots = true;
            }
            return Ok((sig, false));
        }
        if let ProcPhase::AwaitEntry { addr, orig } = proc.phase
            && A::breakpoint_address(A::pc(&regs)) == addr
        {
            let sys = |source| BreakpointError::Sys {
                what: "removing the entry breakpoint",
                pid: tid,
                error: source,
            };
            proc.mem.write(addr, &[orig]).map_err(sys)?;
            A::set_pc(&mut regs, addr);
            proc.mem.set_regs(tid, &regs).map_err(sys)?;
            proc.phase = ProcPhase::Live;
            self.install(tgid)?;
            return Ok((0, false));
        }
        if proc
            .loader
            .as_ref()
            .is_some_and(|h| h.addr == A::breakpoint_address(A::pc(&regs)))
        {
            self.on_loader(tid, tgid, regs, on_hit)?;
            return Ok((0, false));
        }
        let thread = self.threads.get_mut(&tid).expect("known");
        let trap = self.engine.on_trap(
            &proc.inst,
            &mut thread.state,
            tid,
            &mut regs,
            &mut proc.mem,
            on_hit,
        )?;
        match trap {
            Trap::Handled => {
                proc.mem
                    .set_regs(tid, &regs)
                    .map_err(|source| BreakpointError::Sys {
                        what: "PTRACE_SETREGS",
                        pid: tid,
                        error: source,
                    })?;
                Ok((0, false))
            }
            Trap::Foreign => Ok((sig, false)),
        }
    }

    fn on_exit(&mut self, tid: i32, status: i32) -> Result<(), BreakpointError> {
        let Some(t) = self.threads.remove(&tid) else {
            return Ok(());
        };
        if tid == self.main_pid {
            self.exit = ExitStatus::from_wait_status(status);
            if self
                .procs
                .get(&tid)
                .is_some_and(|p| p.phase == ProcPhase::BeforeExec)
                && self.spawned
                && let Some(err) = self.exec_failure()
            {
                return Err(err);
            }
        }
        if tid == t.tgid {
            self.procs.remove(&tid);
        }
        Ok(())
    }

    fn exec_failure(&mut self) -> Option<BreakpointError> {
        let fd = self.exec_error.take()?;
        let mut buf = [0u8; 4];
        // SAFETY: reading into a 4-byte buffer we own from a pipe we own.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), 4) };
        (n == 4).then(|| BreakpointError::Spawn {
            program: self.program.clone(),
            error: io::Error::from_raw_os_error(i32::from_ne_bytes(buf)),
        })
    }

    /// A stop from a pid we do not know: a new thread (its clone event may come later) or a
    /// fork child. Returns whether it is now a known thread.
    fn claim(&mut self, pid: i32) -> Result<bool, BreakpointError> {
        let tgid = read_tgid(pid).unwrap_or(pid);
        if tgid != pid && self.procs.contains_key(&tgid) {
            self.add_thread(pid, tgid);
            return Ok(true);
        }
        if self.fork_parents.contains_key(&pid) {
            return self.on_fork_child(pid);
        }
        self.unclaimed.insert(pid);
        Ok(false)
    }

    /// A forked child, stopped: either follow it with the same probes, or take the
    /// breakpoints and hijacked return addresses out of its copy of memory and let it go.
    /// A vfork child shares its parent's memory, so it is traced as one of the parent's
    /// threads until it execs or exits. Returns whether the child is now a traced thread
    /// (still stopped: the caller resumes it).
    fn on_fork_child(&mut self, child: i32) -> Result<bool, BreakpointError> {
        let parent_tid = self.fork_parents.remove(&child).expect("known fork");
        if self.vforks.remove(&child) {
            let tgid = self
                .threads
                .get(&parent_tid)
                .map_or(self.main_pid, |t| t.tgid);
            self.add_thread(child, tgid);
            self.threads
                .get_mut(&child)
                .expect("just added")
                .vfork_child = true;
            return Ok(true);
        }
        let parent_tgid = self
            .threads
            .get(&parent_tid)
            .map_or(self.main_pid, |t| t.tgid);
        let parent_state = self
            .threads
            .get(&parent_tid)
            .map(|t| t.state.clone())
            .unwrap_or_default();
        let Some(parent) = self.procs.get(&parent_tgid) else {
            // SAFETY: detaching an untouched tracee.
            unsafe { libc::ptrace(libc::PTRACE_DETACH, child, 0, 0) };
            return Ok(false);
        };
        let sys = |source| BreakpointError::Sys {
            what: "cleaning a forked child",
            pid: child,
            error: source,
        };
        let mut mem = PtraceTarget::open(child).map_err(sys)?;
        if self.opts.follow_forks {
            // The child's memory is a copy: the same breakpoints, slots and loader hook.
            let inst = clone_installed(&parent.inst, self.engine.slot_return);
            let (phase, loader) = (parent.phase, parent.loader.clone());
            let proc = Proc {
                mem,
                inst,
                phase,
                keep_slots: false,
                loader,
            };
            self.procs.insert(child, proc);
            self.add_thread(child, child);
            self.threads.get_mut(&child).expect("just added").state = parent_state;
            return Ok(true);
        }
        Engine::<A>::restore_returns(&parent.inst, &parent_state, &mut mem).map_err(sys)?;
        for live in parent.inst.points.iter().flatten() {
            mem.write(live.addr, &live.orig).map_err(sys)?;
        }
        if let ProcPhase::AwaitEntry { addr, orig } = parent.phase {
            mem.write(addr, &[orig]).map_err(sys)?;
        }
        if let Some(hook) = &parent.loader {
            mem.write(hook.addr, &hook.orig).map_err(sys)?;
        }
        if let Some(mask) = self.saved_affinity {
            // SAFETY: valid cpu_set_t; the child inherited the pinned mask.
            unsafe { libc::sched_setaffinity(child, size_of::<libc::cpu_set_t>(), &mask) };
        }
        // SAFETY: detaching the child; its memory no longer holds anything of ours that runs.
        unsafe { libc::ptrace(libc::PTRACE_DETACH, child, 0, 0) };
        Ok(false)
    }

    /// A vfork child execs: it gets its own address space. Followed, it becomes a process
    /// of its own (returns true); otherwise it is let go (nothing of ours is in its new image).
    fn vfork_exec(&mut self, tid: i32) -> Result<bool, BreakpointError> {
        self.threads.remove(&tid);
        if self.opts.follow_forks {
            self.add_proc(tid, ProcPhase::BeforeExec)?;
            self.add_thread(tid, tid);
            return Ok(true);
        }
        // SAFETY: detaching a tracee that just started a fresh program image.
        unsafe { libc::ptrace(libc::PTRACE_DETACH, tid, 0, 0) };
        Ok(false)
    }

    /// After exec the address space is new: forget what was placed, wait for the entry point.
    fn on_exec(&mut self, tid: i32) -> Result<(), BreakpointError> {
        let tgid = self.threads[&tid].tgid;
        // The other threads are gone; the exec'ing thread now has the process id.
        self.threads.retain(|&t, th| th.tgid != tgid || t == tgid);
        self.add_thread(tgid, tgid);
        self.threads.get_mut(&tgid).expect("leader").state = ThreadState::default();
        self.add_proc(tgid, ProcPhase::BeforeExec)?;
        if tgid == self.main_pid {
            self.exec_error = None;
        }
        let entry = read_entry(tgid).map_err(|source| BreakpointError::Sys {
            what: "reading /proc/PID/auxv",
            pid: tgid,
            error: source,
        })?;
        let proc = self.procs.get_mut(&tgid).expect("just added");
        let sys = |source| BreakpointError::Sys {
            what: "placing the entry breakpoint",
            pid: tgid,
            error: source,
        };
        let mut orig = [0u8];
        proc.mem.read(entry, &mut orig).map_err(sys)?;
        proc.mem.write(entry, A::BREAKPOINT).map_err(sys)?;
        proc.phase = ProcPhase::AwaitEntry {
            addr: entry,
            orig: orig[0],
        };
        Ok(())
    }

    /// Places every probe whose binary `pid` maps and that is not placed yet; while some
    /// remain, watches the dynamic loader for them. Every thread of `pid` must be stopped.
    fn install(&mut self, pid: i32) -> Result<(), BreakpointError> {
        let mut lives = self.decode_points(pid)?;
        if !lives.is_empty() {
            self.place_slots(pid, &mut lives)?;
            self.arm(pid, lives)?;
        }
        self.update_loader_hook(pid);
        Ok(())
    }

    /// Writes the breakpoints of decoded, slotted points.
    fn arm(&mut self, pid: i32, lives: Vec<(usize, LivePoint<A>)>) -> Result<(), BreakpointError> {
        let proc = self.procs.get_mut(&pid).expect("known process");
        for (i, live) in lives {
            proc.mem
                .write(live.addr, A::BREAKPOINT)
                .map_err(|source| BreakpointError::Sys {
                    what: "writing a breakpoint",
                    pid,
                    error: source,
                })?;
            proc.inst.add(i, live, self.engine.slot_return);
            self.placed[i] = true;
        }
        Ok(())
    }

    /// Sets the loader breakpoint while some probe is not placed in `pid`, removes it once
    /// every probe is. Failing to find the loader only costs `dlopen` support: a warning.
    fn update_loader_hook(&mut self, pid: i32) {
        let proc = self.procs.get_mut(&pid).expect("known process");
        let missing = proc.inst.points.iter().any(Option::is_none);
        match (&proc.loader, missing) {
            (None, true) => match find_loader_hook(&mut proc.mem, pid) {
                Ok(Some(hook)) => {
                    if proc.mem.write(hook.addr, A::BREAKPOINT).is_ok() {
                        proc.loader = Some(hook);
                    }
                }
                Ok(None) => {} // statically linked: nothing will ever be loaded
                Err(e) => self.warnings.push(format!(
                    "cannot watch the dynamic loader of {pid} ({e}); probes in libraries \
                     loaded later with dlopen will not be placed"
                )),
            },
            (Some(hook), false) => {
                let _ = proc.mem.write(hook.addr, &hook.orig);
                proc.loader = None;
            }
            _ => {}
        }
    }

    /// The loader changed the list of objects: once it is consistent again, stop every
    /// thread, place what is now mapped, and let everyone go.
    fn on_loader(
        &mut self,
        tid: i32,
        tgid: i32,
        mut regs: <A as Arch>::Regs,
        on_hit: &mut dyn FnMut(&HitEvent),
    ) -> Result<(), BreakpointError> {
        let sys = |source| BreakpointError::Sys {
            what: "following the dynamic loader",
            pid: tid,
            error: source,
        };
        let proc = self.procs.get_mut(&tgid).expect("known process");
        let hook = proc.loader.clone().expect("checked by the caller");
        A::simulate(&hook.insn, &mut regs, &mut proc.mem).map_err(sys)?;
        proc.mem.set_regs(tid, &regs).map_err(sys)?;
        // struct r_debug { int r_version; link_map *r_map; ElfW(Addr) r_brk; r_state; ... }
        let state = proc.mem.read_u64(hook.r_debug + 24).map_err(sys)? as u32;
        const RT_CONSISTENT: u32 = 0;
        if state != RT_CONSISTENT || self.holding {
            return Ok(());
        }
        self.stop_all(on_hit)?;
        let result = self.install(tgid);
        self.resume_held(tid)?;
        result
    }

    /// Resumes every thread `stop_all` held, except `except` (resumed by the caller).
    fn resume_held(&mut self, except: i32) -> Result<(), BreakpointError> {
        let held: Vec<(i32, i32, bool)> = self
            .threads
            .iter_mut()
            .filter(|(t, th)| **t != except && th.stopped)
            .map(|(&t, th)| (t, std::mem::take(&mut th.pending_sig), th.group_stop))
            .collect();
        for (t, sig, group_stop) in held {
            if group_stop {
                // SAFETY: PTRACE_LISTEN on a tracee in group-stop; no pointers.
                unsafe { libc::ptrace(libc::PTRACE_LISTEN, t, 0, 0) };
                self.threads.get_mut(&t).expect("listed").stopped = false;
            } else {
                self.resume(t, sig)?;
            }
        }
        Ok(())
    }

    /// Finds, reads and classifies every point mapped in `pid` (decoded at its runtime
    /// address, from the bytes really there).
    fn decode_points(&mut self, pid: i32) -> Result<Vec<(usize, LivePoint<A>)>, BreakpointError> {
        let proc = self.procs.get_mut(&pid).expect("known process");
        let mut lives = Vec::new();
        for (i, def) in self.engine.table.points.iter().enumerate() {
            if proc.inst.points[i].is_some() {
                continue;
            }
            let Ok(addr) =
                crate::symbols::runtime_address(pid as u32, &def.binary, def.file_offset)
            else {
                continue; // Not mapped in this image (yet): a later exec may map it.
            };
            let spec = || def.spec.clone();
            let mut code = vec![0u8; A::MAX_INSN_LEN];
            if proc.mem.read(addr, &mut code).is_err() {
                // The function ends near the end of its mapping: the instruction is shorter.
                code.truncate(1);
                proc.mem
                    .read(addr, &mut code)
                    .map_err(|source| BreakpointError::Sys {
                        what: "reading the probed code",
                        pid,
                        error: source,
                    })?;
            }
            if code.starts_with(A::BREAKPOINT) {
                return Err(BreakpointError::AlreadyBreakpoint { spec: spec(), addr });
            }
            let insn = A::decode(&code, addr)
                .ok_or_else(|| BreakpointError::Undecodable { spec: spec(), addr })?;
            let handling = place::handling::<A>(&def.spec, &insn, self.opts.no_simulate)?;
            let orig = code[..A::BREAKPOINT.len()].to_vec();
            let live = LivePoint {
                addr,
                orig,
                insn,
                handling,
                slot: None,
                slot_copy_len: 0,
            };
            lives.push((i, live));
        }
        Ok(lives)
    }

    /// Maps slot areas (one per cluster of out-of-line points, so that each slot is within
    /// RIP-relative reach of its original) and writes the trampoline and the slots.
    fn place_slots(
        &mut self,
        pid: i32,
        lives: &mut [(usize, LivePoint<A>)],
    ) -> Result<(), BreakpointError> {
        let need_tramp = self.procs[&pid].inst.trampoline.is_none()
            && lives
                .iter()
                .any(|(i, _)| !self.engine.table.points[*i].returns.is_empty());
        let mut clusters: Vec<Vec<usize>> = Vec::new();
        for k in (0..lives.len()).filter(|&k| lives[k].1.handling == Handling::OutOfLine) {
            let addr = lives[k].1.addr;
            match clusters
                .iter_mut()
                .find(|c| lives[c[0]].1.addr.abs_diff(addr) < A::SLOT_REACH / 2)
            {
                Some(c) => c.push(k),
                None => clusters.push(vec![k]),
            }
        }
        if need_tramp && clusters.is_empty() {
            clusters.push(vec![]);
        }
        let tid = self.any_stopped_thread(pid);
        let scratch = lives[0].1.addr;
        for (n, cluster) in clusters.iter().enumerate() {
            let near = cluster.first().map_or(scratch, |&k| lives[k].1.addr);
            let len = (16 + A::SLOT_SIZE * cluster.len() as u64).div_ceil(4096) * 4096;
            let area = self.map_area(pid, tid, scratch, near, len)?;
            let proc = self.procs.get_mut(&pid).expect("known process");
            proc.inst.areas.push((area, len));
            let sys = |source| BreakpointError::Sys {
                what: "writing the slot area",
                pid,
                error: source,
            };
            if need_tramp && n == 0 {
                proc.mem.write(area, A::BREAKPOINT).map_err(sys)?;
                proc.inst.trampoline = Some(area);
            }
            for (m, &k) in cluster.iter().enumerate() {
                let slot = area + 16 + A::SLOT_SIZE * m as u64;
                let spec = self.engine.table.points[lives[k].0].spec.clone();
                let live = &mut lives[k].1;
                if slot.abs_diff(live.addr) > A::SLOT_REACH {
                    let reason = format!("the nearest free area was at {area:#x}, too far away");
                    return Err(BreakpointError::SlotArea {
                        pid,
                        addr: live.addr,
                        reason,
                    });
                }
                let image =
                    place::slot_image::<A>(&spec, &live.insn, slot, self.engine.slot_return)?;
                proc.mem.write(slot, &image.bytes).map_err(sys)?;
                live.slot = Some(slot);
                live.slot_copy_len = image.copy_len;
            }
        }
        Ok(())
    }

    fn any_stopped_thread(&self, pid: i32) -> i32 {
        self.threads
            .iter()
            .find(|(_, t)| t.tgid == pid && t.stopped)
            .map(|(&tid, _)| tid)
            .expect("install runs with the process stopped")
    }

    /// Maps an executable area near `near` by making thread `tid` run `mmap` from `scratch`.
    fn map_area(
        &mut self,
        pid: i32,
        tid: i32,
        scratch: u64,
        near: u64,
        len: u64,
    ) -> Result<u64, BreakpointError> {
        let prot = (libc::PROT_READ | libc::PROT_EXEC) as u64;
        let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
        let base = near & !0xfff;
        let hints = [
            base.wrapping_sub(0x100_0000),
            base.wrapping_sub(0x1000_0000),
            base + 0x1000_0000,
            base.wrapping_sub(0x4000_0000),
        ];
        let mut last = String::new();
        for hint in hints {
            let r = self.inject_syscall(
                pid,
                tid,
                scratch,
                A::NR_MMAP,
                [hint, len, prot, flags | MAP_FIXED_NOREPLACE, u64::MAX, 0],
            )?;
            if r >= 0 {
                return Ok(r as u64);
            }
            last = io::Error::from_raw_os_error(-r as i32).to_string();
        }
        Err(BreakpointError::SlotArea {
            pid,
            addr: near,
            reason: format!("mmap failed: {last}"),
        })
    }

    /// Runs one system call in stopped thread `tid`, from a syscall instruction written
    /// temporarily at `at` (every thread of the process is stopped, so none can run it).
    fn inject_syscall(
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

    /// Stops every thread, puts everything back, and lets go.
    fn detach_all(&mut self, on_hit: &mut dyn FnMut(&HitEvent)) -> Result<(), BreakpointError> {
        self.stop_all(on_hit)?;
        let mut first_err = None;
        let pids: Vec<i32> = self.procs.keys().copied().collect();
        for pid in pids {
            if let Err(e) = self.restore_proc(pid) {
                first_err.get_or_insert(e);
            }
        }
        let saved = self.saved_affinity;
        for (&tid, t) in &self.threads {
            if let Some(mask) = saved {
                // SAFETY: valid cpu_set_t; tid is a thread we trace.
                unsafe { libc::sched_setaffinity(tid, size_of::<libc::cpu_set_t>(), &mask) };
            }
            // SAFETY: detaching a stopped tracee, delivering the signal it was due.
            unsafe { libc::ptrace(libc::PTRACE_DETACH, tid, 0, t.pending_sig as libc::c_long) };
        }
        self.threads.clear();
        for pid in std::mem::take(&mut self.unclaimed) {
            // SAFETY: detaching an untouched tracee.
            unsafe { libc::ptrace(libc::PTRACE_DETACH, pid, 0, 0) };
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Brings every traced thread into a ptrace stop, handling what they report meanwhile.
    fn stop_all(&mut self, on_hit: &mut dyn FnMut(&HitEvent)) -> Result<(), BreakpointError> {
        self.holding = true;
        let r = self.stop_all_inner(on_hit);
        self.holding = false;
        r
    }

    fn stop_all_inner(&mut self, on_hit: &mut dyn FnMut(&HitEvent)) -> Result<(), BreakpointError> {
        loop {
            let running: Vec<i32> = self
                .threads
                .iter()
                .filter(|(_, t)| !t.stopped)
                .map(|(&t, _)| t)
                .collect();
            if running.is_empty() {
                return Ok(());
            }
            for &tid in &running {
                // SAFETY: PTRACE_INTERRUPT on a tracee; no pointers.
                unsafe { libc::ptrace(libc::PTRACE_INTERRUPT, tid, 0, 0) };
            }
            for _ in 0..running.len() {
                if self.threads.values().all(|t| t.stopped) {
                    break;
                }
                let (pid, status) = waitpid_any(Duration::ZERO)?;
                if pid == self.waker_pid {
                    self.waker_pid = 0;
                    continue;
                }
                self.on_status(pid, status, on_hit, true)?;
            }
        }
    }

    fn restore_proc(&mut self, pid: i32) -> Result<(), BreakpointError> {
        let tids: Vec<i32> = self
            .threads
            .iter()
            .filter(|(_, t)| t.tgid == pid)
            .map(|(&t, _)| t)
            .collect();
        let Some(proc) = self.procs.get_mut(&pid) else {
            return Ok(());
        };
        let sys = |source| BreakpointError::Sys {
            what: "restoring the tracee",
            pid,
            error: source,
        };
        for live in proc.inst.points.iter().flatten() {
            proc.mem.write(live.addr, &live.orig).map_err(sys)?;
        }
        if let ProcPhase::AwaitEntry { addr, orig } = proc.phase {
            proc.mem.write(addr, &[orig]).map_err(sys)?;
        }
        if let Some(hook) = proc.loader.take() {
            proc.mem.write(hook.addr, &hook.orig).map_err(sys)?;
        }
        let mut unrestored = false;
        for &tid in &tids {
            let t = self.threads.get_mut(&tid).expect("listed");
            Engine::<A>::evacuate(&proc.inst, &mut t.state, tid, &mut proc.mem).map_err(sys)?;
            let restored =
                Engine::<A>::restore_returns(&proc.inst, &t.state, &mut proc.mem).map_err(sys)?;
            unrestored |= restored != t.state.returns.len();
            t.state.returns.clear();
        }
        let areas = std::mem::take(&mut proc.inst.areas);
        if areas.is_empty() || tids.is_empty() {
            return Ok(());
        }
        if proc.keep_slots || unrestored {
            self.warnings.push(format!(
                "left the {} byte slot area mapped in process {pid}: a signal frame or an abandoned stack frame may still point into it",
                areas.iter().map(|a| a.1).sum::<u64>()
            ));
            return Ok(());
        }
        let scratch = proc.inst.points.iter().flatten().next().map(|l| l.addr);
        let Some(scratch) = scratch else {
            return Ok(());
        };
        for (addr, len) in areas {
            let r =
                self.inject_syscall(pid, tids[0], scratch, A::NR_MUNMAP, [addr, len, 0, 0, 0, 0])?;
            if r < 0 {
                self.warnings.push(format!(
                    "munmap of the slot area in {pid} failed: {}",
                    io::Error::from_raw_os_error(-r as i32)
                ));
            }
        }
        Ok(())
    }
}

fn clone_installed(inst: &Installed<A>, ret: SlotReturn) -> Installed<A> {
    let mut copy = Installed::new(inst.points.len());
    for (i, p) in inst.points.iter().enumerate() {
        if let Some(live) = p {
            copy.add(i, live.clone(), ret);
        }
    }
    copy.trampoline = inst.trampoline;
    copy.areas = inst.areas.clone();
    copy
}

fn is_stop_signal(sig: i32) -> bool {
    matches!(
        sig,
        libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU
    )
}

fn seize(tid: i32) -> Result<(), BreakpointError> {
    // SAFETY: PTRACE_SEIZE takes the options as data; no pointers.
    let r = unsafe { libc::ptrace(libc::PTRACE_SEIZE, tid, 0, OPTIONS as libc::c_long) };
    if r == 0 {
        return Ok(());
    }
    let source = io::Error::last_os_error();
    Err(match source.raw_os_error() {
        Some(libc::ESRCH) => BreakpointError::NoSuchProcess(tid),
        Some(libc::EPERM) => BreakpointError::PermissionDenied {
            pid: tid,
            scope: match std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope") {
                Ok(v) if v.trim() != "0" => format!(
                    " with /proc/sys/kernel/yama/ptrace_scope set to 0 (it is {})",
                    v.trim()
                ),
                _ => String::new(),
            },
            error: source,
        },
        _ => BreakpointError::Sys {
            what: "PTRACE_SEIZE",
            pid: tid,
            error: source,
        },
    })
}

fn waitpid(pid: i32, flags: libc::c_int) -> Result<i32, BreakpointError> {
    let mut status = 0;
    loop {
        // SAFETY: status is a valid out pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, flags) };
        if r >= 0 {
            return Ok(status);
        }
        if io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return Err(BreakpointError::last("waitpid", pid));
        }
    }
}

/// Waits for any tracee event, first polling for up to `spin`: a tracer that is still on CPU
/// when the next stop comes saves the wake-up of an idle CPU (measured: 55 → 22 µs per hit on
/// an idle 2-CPU VM, unpinned).
fn waitpid_any(spin: Duration) -> Result<(i32, i32), BreakpointError> {
    let mut status = 0;
    if !spin.is_zero() {
        let t0 = Instant::now();
        while t0.elapsed() < spin {
            // SAFETY: status is a valid out pointer; WNOHANG returns at once.
            let r = unsafe { libc::waitpid(-1, &mut status, WAIT_FLAGS | libc::WNOHANG) };
            if r > 0 {
                return Ok((r, status));
            }
            if r < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                return Err(BreakpointError::last("waitpid", -1));
            }
            std::hint::spin_loop();
        }
    }
    loop {
        // SAFETY: status is a valid out pointer. __WNOTHREAD keeps other threads' children
        // (and other engines running in this process) out of our way.
        let r = unsafe { libc::waitpid(-1, &mut status, WAIT_FLAGS) };
        if r > 0 {
            return Ok((r, status));
        }
        if io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return Err(BreakpointError::last("waitpid", -1));
        }
    }
}

fn event_msg(tid: i32) -> Result<u64, BreakpointError> {
    let mut msg: libc::c_ulong = 0;
    // SAFETY: PTRACE_GETEVENTMSG writes one c_ulong to the pointer.
    if unsafe {
        libc::ptrace(
            libc::PTRACE_GETEVENTMSG,
            tid,
            0,
            &mut msg as *mut libc::c_ulong,
        )
    } < 0
    {
        return Err(BreakpointError::last("PTRACE_GETEVENTMSG", tid));
    }
    Ok(msg)
}

fn list_tasks(pid: i32) -> io::Result<Vec<i32>> {
    let mut v: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/task"))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    v.sort();
    Ok(v)
}

fn read_tgid(pid: i32) -> Option<i32> {
    tracekit_core::process::tgid_of(pid as u32).map(|t| t as i32)
}

/// The program's entry point (AT_ENTRY), already relocated.
fn read_entry(pid: i32) -> io::Result<u64> {
    read_auxv(pid, libc::AT_ENTRY)
}

/// One value of the process's auxiliary vector.
fn read_auxv(pid: i32, key: u64) -> io::Result<u64> {
    let auxv = std::fs::read(format!("/proc/{pid}/auxv"))?;
    let word = |b: &[u8]| u64::from_ne_bytes(b.try_into().expect("8 bytes"));
    auxv.chunks_exact(16)
        .map(|c| (word(&c[..8]), word(&c[8..])))
        .find(|&(k, _)| k == key)
        .map(|(_, v)| v)
        .ok_or_else(|| io::Error::other(format!("no entry {key} in /proc/{pid}/auxv")))
}

/// Finds glibc's `r_debug` through the program's `DT_DEBUG` entry (AT_PHDR, then PT_DYNAMIC,
/// in memory) and the loader's `r_brk` in it. `None` for a program without a dynamic section.
fn find_loader_hook(mem: &mut PtraceTarget, pid: i32) -> io::Result<Option<LoaderHook>> {
    const PT_DYNAMIC: u32 = 2;
    const PT_PHDR: u32 = 6;
    const DT_DEBUG: u64 = 21;
    let phdr = read_auxv(pid, libc::AT_PHDR)?;
    let phnum = read_auxv(pid, libc::AT_PHNUM)?;
    let mut headers = vec![0u8; 56 * phnum as usize];
    mem.read(phdr, &mut headers)?;
    let field = |h: &[u8], off: usize| u64::from_le_bytes(h[off..off + 8].try_into().expect("8"));
    let kind = |h: &[u8]| u32::from_le_bytes(h[..4].try_into().expect("4"));
    let phdrs: Vec<&[u8]> = headers.chunks_exact(56).collect();
    // Load bias: where the headers are minus where the file says they are (0 if not PIE).
    let bias = phdrs
        .iter()
        .find(|h| kind(h) == PT_PHDR)
        .map_or(0, |h| phdr.wrapping_sub(field(h, 16)));
    let Some(dynamic) = phdrs.iter().find(|h| kind(h) == PT_DYNAMIC) else {
        return Ok(None);
    };
    let (start, size) = (bias.wrapping_add(field(dynamic, 16)), field(dynamic, 40));
    let mut r_debug = 0;
    for k in 0..size / 16 {
        match mem.read_u64(start + 16 * k)? {
            DT_DEBUG => {
                r_debug = mem.read_u64(start + 16 * k + 8)?;
                break;
            }
            0 => break,
            _ => {}
        }
    }
    if r_debug == 0 {
        return Ok(None);
    }
    let addr = mem.read_u64(r_debug + 16)?;
    let mut code = vec![0u8; A::MAX_INSN_LEN];
    mem.read(addr, &mut code)?;
    let Some(insn) = A::decode(&code, addr).filter(A::can_simulate) else {
        return Err(io::Error::other(
            "the loader's r_brk starts with an instruction the engine does not simulate",
        ));
    };
    let orig = code[..A::BREAKPOINT.len()].to_vec();
    Ok(Some(LoaderHook {
        r_debug,
        addr,
        orig,
        insn,
    }))
}

fn cpu_set(cpu: usize) -> libc::cpu_set_t {
    // SAFETY: all-zero is an empty cpu_set_t; CPU_SET only sets a bit inside it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        set
    }
}

/// Pins `tid` to `cpu`, returning its previous mask.
fn pin(tid: i32, cpu: usize) -> Option<libc::cpu_set_t> {
    // SAFETY: zeroed cpu_set_t is valid; the calls read/write exactly one set.
    unsafe {
        let mut old: libc::cpu_set_t = std::mem::zeroed();
        let got = libc::sched_getaffinity(tid, size_of::<libc::cpu_set_t>(), &mut old) == 0;
        let set = cpu_set(cpu);
        libc::sched_setaffinity(tid, size_of::<libc::cpu_set_t>(), &set);
        got.then_some(old)
    }
}

fn pin_self(cpu: usize) -> Result<libc::cpu_set_t, BreakpointError> {
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

/// Forks a child that stops itself, then execs the program once continued. Returns its pid
/// and a pipe that yields the errno if exec fails.
fn fork_stopped_child(
    program: &Path,
    args: &[OsString],
    stdin: Option<OwnedFd>,
    stdout: Option<OwnedFd>,
) -> io::Result<(i32, OwnedFd)> {
    let cstr = |s: &[u8]| {
        CString::new(s)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in argument"))
    };
    let prog = cstr(program.as_os_str().as_bytes())?;
    let mut argv_c = vec![prog.clone()];
    for a in args {
        argv_c.push(cstr(a.as_bytes())?);
    }
    let mut argv: Vec<*const libc::c_char> = argv_c.iter().map(|c| c.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut fds = [0; 2];
    // SAFETY: fds is a valid 2-int array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let (in_fd, out_fd) = (
        stdin.as_ref().map(|f| f.as_raw_fd()),
        stdout.as_ref().map(|f| f.as_raw_fd()),
    );
    // SAFETY: after fork the child only calls async-signal-safe functions (dup2, signal,
    // sigprocmask, kill, execvp, write, _exit) on memory prepared before the fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: see above; we are in the child and never return.
        unsafe {
            if let Some(fd) = in_fd {
                libc::dup2(fd, 0);
            }
            if let Some(fd) = out_fd {
                libc::dup2(fd, 1);
            }
            // Rust ignores SIGPIPE; the program must get the default back.
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            libc::kill(libc::getpid(), libc::SIGSTOP);
            libc::execvp(argv[0], argv.as_ptr());
            let err = *libc::__errno_location();
            libc::write(fds[1], (&err as *const i32).cast(), 4);
            libc::_exit(127);
        }
    }
    // SAFETY: we own fds[1] and close it once; fds[0] becomes an OwnedFd.
    unsafe { libc::close(fds[1]) };
    // SAFETY: fds[0] is an open fd we own.
    let err_fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fds[0]) };
    // Wait for the child's self-stop so that the seize finds it stopped before exec.
    let mut status = 0;
    // SAFETY: status is a valid out pointer.
    unsafe { libc::waitpid(pid, &mut status, libc::WUNTRACED | libc::__WNOTHREAD) };
    drop((stdin, stdout));
    Ok((pid, err_fd))
}

/// Forks a child that exits as soon as its pipe is written or closed: the tracer blocks in
/// waitpid, and this child's exit is what wakes it when the stop flag is set.
fn spawn_waker() -> Result<(i32, OwnedFd), BreakpointError> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid 2-int array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(BreakpointError::last("pipe", 0));
    }
    // SAFETY: the child only calls read and _exit (async-signal-safe).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(BreakpointError::last("fork", 0));
    }
    if pid == 0 {
        // SAFETY: in the child: close the write end, block until a byte or EOF, exit.
        unsafe {
            libc::close(fds[1]);
            let mut b = 0u8;
            while libc::read(fds[0], (&mut b as *mut u8).cast(), 1) < 0 {}
            libc::_exit(0);
        }
    }
    // SAFETY: we own both fds; close the read end, keep the write end.
    unsafe { libc::close(fds[0]) };
    // SAFETY: fds[1] is an open fd we own.
    Ok((pid, unsafe {
        <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fds[1])
    }))
}

fn watchdog(stop: &AtomicBool, done: &AtomicBool, waker: OwnedFd) {
    while !done.load(Ordering::Relaxed) {
        if stop.load(Ordering::Relaxed) {
            // SAFETY: writing one byte from a valid buffer to our pipe.
            unsafe { libc::write(waker.as_raw_fd(), b"x".as_ptr().cast(), 1) };
            return;
        }
        // Unparked at the end of the run, so that leaving does not wait for a tick.
        std::thread::park_timeout(Duration::from_millis(20));
    }
}

fn reap(pid: i32) {
    if pid > 0 {
        // SAFETY: killing and reaping our own waker child.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), libc::__WNOTHREAD);
        }
    }
}
