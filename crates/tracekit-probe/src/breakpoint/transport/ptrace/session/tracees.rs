//! The traced processes and threads: spawning or attaching, new threads, forks and vforks,
//! exec, and the /proc reads they need.

use super::*;

impl<A: Arch> Session<'_, A>
where
    PtraceTarget: Registers<A::Regs>,
{
    pub(super) fn spawn(
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
        let (pid, err_fd, go) =
            fork_stopped_child(program, args, stdin, stdout).map_err(spawn_err)?;
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
        // The child waits for this byte before its exec (or for end of file: if tracekit
        // dies first, the program runs unprobed instead of waiting forever).
        // SAFETY: writing one byte from a local to a pipe we own.
        if unsafe { libc::write(go.as_raw_fd(), [1u8].as_ptr().cast(), 1) } != 1 {
            return Err(spawn_err(io::Error::last_os_error()));
        }
        Ok(())
    }

    pub(super) fn attach(&mut self, pid: i32) -> Result<(), BreakpointError> {
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

    pub(super) fn abort_attach(&mut self, seized: &HashSet<i32>) {
        for &tid in seized {
            // SAFETY: detaching tracees we seized; nothing was changed in them yet.
            unsafe { libc::ptrace(libc::PTRACE_DETACH, tid, 0, 0) };
        }
    }

    pub(super) fn add_proc(&mut self, pid: i32, phase: ProcPhase) -> Result<(), BreakpointError> {
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
                rescue: Default::default(),
                stub: None,
            },
        );
        Ok(())
    }

    pub(super) fn add_thread(&mut self, tid: i32, tgid: i32) {
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
    pub(super) fn wait_stopped(&mut self, tid: i32) -> Result<(), BreakpointError> {
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

    /// A stop from a pid we do not know: a new thread (its clone event may come later) or a
    /// fork child. Returns whether it is now a known thread.
    pub(super) fn claim(&mut self, pid: i32) -> Result<bool, BreakpointError> {
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
    pub(super) fn on_fork_child(&mut self, child: i32) -> Result<bool, BreakpointError> {
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
        if self.procs.contains_key(&parent_tgid) {
            self.jump_fork(parent_tgid, child)?;
        }
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
            let (phase, loader) = (parent.phase.clone(), parent.loader.clone());
            let rescue = parent
                .rescue
                .fork_copy(&mut mem, parent_tid, child)
                .map_err(sys)?;
            let proc = Proc {
                mem,
                inst,
                phase,
                keep_slots: false,
                loader,
                rescue,
                stub: parent.stub,
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
        // The child runs unprobed: its USDT branches go off again.
        for &addr in &parent.inst.semaphores {
            super::install::add_semaphore(&mut mem, addr, -1).map_err(sys)?;
        }
        if let ProcPhase::AwaitEntry { addr, orig } = &parent.phase {
            mem.write(*addr, orig).map_err(sys)?;
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
    pub(super) fn vfork_exec(&mut self, tid: i32) -> Result<bool, BreakpointError> {
        // It ran on its parent's stack: its return entries must not stay in the parent's area.
        if let Some(t) = self.threads.remove(&tid)
            && let Some(parent) = self.procs.get_mut(&t.tgid)
        {
            parent.rescue.release(&mut parent.mem, tid);
        }
        if self.opts.follow_forks {
            self.add_proc(tid, ProcPhase::BeforeExec)?;
            self.add_thread(tid, tid);
            return Ok(true);
        }
        // SAFETY: detaching a tracee that just started a fresh program image.
        unsafe { libc::ptrace(libc::PTRACE_DETACH, tid, 0, 0) };
        Ok(false)
    }

    /// A dynamically linked program: the loader's `r_brk` is set before the loader runs, so the
    /// probes are placed at its first consistent state, when every library is mapped and no
    /// constructor has run (gdb places its breakpoints there too). Returns false when the
    /// program has no loader or it cannot be found (the entry point is used instead).
    fn watch_loader_from_start(&mut self, tgid: i32) -> bool {
        let proc = self.procs.get_mut(&tgid).expect("just added");
        let Ok(Some(hook)) = super::loader::startup_hook::<A>(&mut proc.mem, tgid) else {
            return false;
        };
        let w = &mut self.warnings;
        if super::rescue::arm_bytes(proc, tgid, w, hook.addr, &hook.orig).is_err() {
            return false;
        }
        proc.loader = Some(hook);
        proc.phase = ProcPhase::Live;
        true
    }

    /// After exec the address space is new: forget what was placed, wait for the entry point.
    pub(super) fn on_exec(&mut self, tid: i32) -> Result<(), BreakpointError> {
        let tgid = self.threads[&tid].tgid;
        // The other threads are gone; the exec'ing thread now has the process id.
        self.threads.retain(|&t, th| th.tgid != tgid || t == tgid);
        self.add_thread(tgid, tgid);
        self.threads.get_mut(&tgid).expect("leader").state = ThreadState::default();
        self.add_proc(tgid, ProcPhase::BeforeExec)?;
        self.jump_forget(tgid);
        if tgid == self.main_pid {
            self.exec_error = None;
        }
        // Before any breakpoint is written in the new image.
        self.setup_rescue(tgid, true);
        if self.watch_loader_from_start(tgid) {
            return Ok(());
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
        let mut code = vec![0u8; A::MAX_INSN_LEN];
        proc.mem.read(entry, &mut code).map_err(sys)?;
        let n = A::decode(&code, entry).map_or(A::BREAKPOINT.len(), |insn| {
            super::rescue::patch_len::<A>(&insn, &code)
        });
        let orig = code[..n].to_vec();
        super::rescue::arm_bytes(proc, tgid, &mut self.warnings, entry, &orig)?;
        proc.phase = ProcPhase::AwaitEntry { addr: entry, orig };
        Ok(())
    }
}

pub(super) fn clone_installed<A: Arch>(inst: &Installed<A>, ret: SlotReturn) -> Installed<A> {
    let mut copy = Installed::new(inst.points.len());
    for (i, p) in inst.points.iter().enumerate() {
        if let Some(live) = p {
            copy.add(i, live.clone(), ret);
        }
    }
    copy.trampoline = inst.trampoline;
    copy.areas = inst.areas.clone();
    // The child's copy of each semaphore is incremented too: detach decrements it there.
    copy.semaphores = inst.semaphores.clone();
    copy
}

pub(super) fn seize(tid: i32) -> Result<(), BreakpointError> {
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

pub(super) fn list_tasks(pid: i32) -> io::Result<Vec<i32>> {
    let mut v: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/task"))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    v.sort();
    Ok(v)
}

pub(super) fn read_tgid(pid: i32) -> Option<i32> {
    tracekit_core::process::tgid_of(pid as u32).map(|t| t as i32)
}

/// The program's entry point (AT_ENTRY), already relocated.
pub(super) fn read_entry(pid: i32) -> io::Result<u64> {
    read_auxv(pid, libc::AT_ENTRY)
}

/// One value of the process's auxiliary vector.
pub(super) fn read_auxv(pid: i32, key: u64) -> io::Result<u64> {
    let auxv = std::fs::read(format!("/proc/{pid}/auxv"))?;
    let word = |b: &[u8]| u64::from_ne_bytes(b.try_into().expect("8 bytes"));
    auxv.chunks_exact(16)
        .map(|c| (word(&c[..8]), word(&c[8..])))
        .find(|&(k, _)| k == key)
        .map(|(_, v)| v)
        .ok_or_else(|| io::Error::other(format!("no entry {key} in /proc/{pid}/auxv")))
}

/// Forks a child that waits for a byte on a pipe, then execs the program (also when the
/// pipe's write end closes without one: the tracer died). Returns its pid, a pipe that yields
/// the errno if exec fails, and the write end the child waits on.
pub(super) fn fork_stopped_child(
    program: &Path,
    args: &[OsString],
    stdin: Option<OwnedFd>,
    stdout: Option<OwnedFd>,
) -> io::Result<(i32, OwnedFd, OwnedFd)> {
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
    let mut go = [0; 2];
    // SAFETY: go is a valid 2-int array.
    if unsafe { libc::pipe2(go.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        let e = io::Error::last_os_error();
        // SAFETY: closing the two fds we just opened, once.
        unsafe { (libc::close(fds[0]), libc::close(fds[1])) };
        return Err(e);
    }
    let (in_fd, out_fd) = (
        stdin.as_ref().map(|f| f.as_raw_fd()),
        stdout.as_ref().map(|f| f.as_raw_fd()),
    );
    // SAFETY: after fork the child only calls async-signal-safe functions (dup2, signal,
    // sigprocmask, close, read, execvp, write, _exit) on memory prepared before the fork.
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
            libc::close(go[1]);
            let mut byte = 0u8;
            while libc::read(go[0], (&mut byte as *mut u8).cast(), 1) < 0 {}
            libc::execvp(argv[0], argv.as_ptr());
            let err = *libc::__errno_location();
            libc::write(fds[1], (&err as *const i32).cast(), 4);
            libc::_exit(127);
        }
    }
    // SAFETY: we own fds[1] and go[0] and close each once; fds[0] and go[1] become
    // OwnedFds (open fds we own).
    let (err_fd, go) = unsafe {
        libc::close(fds[1]);
        libc::close(go[0]);
        use std::os::fd::FromRawFd;
        (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(go[1]))
    };
    drop((stdin, stdout));
    Ok((pid, err_fd, go))
}

/// Forks the waker: a child that stops itself (SIGSTOP) for every byte written to its pipe
/// and exits when the pipe is closed. The tracer blocks in waitpid, and the waker's stop or
/// exit is what wakes it: a stop for the end of an interval, the exit when the stop flag is
/// set.
pub(super) fn spawn_waker() -> Result<(i32, OwnedFd), BreakpointError> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid 2-int array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(BreakpointError::last("pipe", 0));
    }
    // SAFETY: the child only calls close, read, kill, getpid and _exit (async-signal-safe).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(BreakpointError::last("fork", 0));
    }
    if pid == 0 {
        // SAFETY: in the child: close the write end; a byte stops us, EOF or an error ends us.
        unsafe {
            libc::close(fds[1]);
            let mut b = 0u8;
            loop {
                match libc::read(fds[0], (&mut b as *mut u8).cast(), 1) {
                    1 => {
                        libc::kill(libc::getpid(), libc::SIGSTOP);
                    }
                    r if r < 0 && *libc::__errno_location() == libc::EINTR => {}
                    _ => libc::_exit(0),
                }
            }
        }
    }
    // SAFETY: we own both fds; close the read end, keep the write end.
    unsafe { libc::close(fds[0]) };
    // SAFETY: fds[1] is an open fd we own.
    Ok((pid, unsafe {
        <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fds[1])
    }))
}

/// Wakes the tracer: a byte to the waker at the end of every interval (`every`; `ticks`
/// counts them, so that the tracer tells these stops from a SIGSTOP someone else sent), and
/// the pipe closed when `stop` is set (or the run is `done`).
pub(super) fn watchdog(
    stop: &AtomicBool,
    done: &AtomicBool,
    waker: OwnedFd,
    every: Option<Duration>,
    ticks: &std::sync::atomic::AtomicU64,
) {
    let mut next = every.map(|d| std::time::Instant::now() + d);
    while !done.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
        if let (Some(every), Some(at)) = (every, next)
            && std::time::Instant::now() >= at
        {
            ticks.fetch_add(1, Ordering::SeqCst);
            // SAFETY: writing one byte from a valid buffer to our pipe.
            unsafe { libc::write(waker.as_raw_fd(), b"x".as_ptr().cast(), 1) };
            next = Some(crate::event::next_tick(at, every));
        }
        let tick = next.map_or(Duration::from_millis(20), |at| {
            at.saturating_duration_since(std::time::Instant::now())
                .min(Duration::from_millis(20))
        });
        // Unparked at the end of the run, so that leaving does not wait for a tick.
        std::thread::park_timeout(tick);
    }
    // Returning closes the pipe: the waker exits and waitpid returns.
}

pub(super) fn reap(pid: i32) {
    if pid > 0 {
        // SAFETY: killing and reaping our own waker child.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), libc::__WNOTHREAD);
        }
    }
}
