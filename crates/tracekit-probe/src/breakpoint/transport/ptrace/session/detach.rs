//! Stopping every thread and detaching cleanly: original bytes and hijacked return addresses
//! back, slot areas unmapped.

use super::*;

impl<A: Arch> Session<'_, A>
where
    PtraceTarget: Registers<A::Regs>,
{
    /// Stops every thread, puts everything back, and lets go.
    pub(super) fn detach_all(
        &mut self,
        on_hit: &mut dyn FnMut(&HitEvent),
    ) -> Result<(), BreakpointError> {
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
    pub(super) fn stop_all(
        &mut self,
        on_hit: &mut dyn FnMut(&HitEvent),
    ) -> Result<(), BreakpointError> {
        self.holding = true;
        let r = self.stop_all_inner(on_hit);
        self.holding = false;
        r
    }

    pub(super) fn stop_all_inner(
        &mut self,
        on_hit: &mut dyn FnMut(&HitEvent),
    ) -> Result<(), BreakpointError> {
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
                    self.on_waker(status);
                    continue;
                }
                self.on_status(pid, status, on_hit, true)?;
            }
        }
    }

    pub(super) fn restore_proc(&mut self, pid: i32) -> Result<(), BreakpointError> {
        self.jump_restore(pid)?;
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
        for addr in std::mem::take(&mut proc.inst.semaphores) {
            super::install::add_semaphore(&mut proc.mem, addr, -1).map_err(sys)?;
        }
        if let ProcPhase::AwaitEntry { addr, orig } = &proc.phase {
            proc.mem.write(*addr, orig).map_err(sys)?;
        }
        if let Some(hook) = proc.loader.take() {
            proc.mem.write(hook.addr, &hook.orig).map_err(sys)?;
        }
        let mut unrestored = false;
        for &tid in &tids {
            let t = self.threads.get_mut(&tid).expect("listed");
            Engine::<A>::evacuate(&proc.inst, &mut t.state, tid, &mut proc.mem).map_err(sys)?;
            super::rescue::evacuate_copies(proc, tid)?;
            let restored =
                Engine::<A>::restore_returns(&proc.inst, &t.state, &mut proc.mem).map_err(sys)?;
            unrestored |= restored != t.state.returns.len();
            t.state.returns.clear();
        }
        // Slot areas first: their munmap runs from the rescue area's stub.
        let r = self.unmap_slot_areas(pid, &tids, unrestored);
        if let Err(e) = self.release_rescue(pid) {
            self.warnings.push(format!(
                "could not empty the rescue area of process {pid}: {e}"
            ));
        }
        r
    }

    /// Unmaps `pid`'s slot areas, unless a frame may still point into them.
    fn unmap_slot_areas(
        &mut self,
        pid: i32,
        tids: &[i32],
        unrestored: bool,
    ) -> Result<(), BreakpointError> {
        let proc = self.procs.get_mut(&pid).expect("known process");
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
