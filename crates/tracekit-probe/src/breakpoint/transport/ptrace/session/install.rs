//! Placing the probes in one process: reading and classifying each point, mapping slot areas
//! near the code (with an injected `mmap`), writing slots and breakpoints.

use super::*;
use crate::breakpoint::engine::place;
use crate::breakpoint::transport::inject::mmap_args;

impl<A: Arch> Session<'_, A>
where
    PtraceTarget: Registers<A::Regs>,
{
    /// Places every probe whose binary `pid` maps and that is not placed yet; while some
    /// remain, watches the dynamic loader for them. Every thread of `pid` must be stopped.
    pub(super) fn install(&mut self, pid: i32) -> Result<(), BreakpointError> {
        // Before the first breakpoint (done after exec already; here when attaching).
        self.setup_rescue(pid, false);
        let mut lives = self.decode_points(pid)?;
        self.jump_place(pid, &mut lives)?;
        if !lives.is_empty() {
            self.place_slots(pid, &mut lives)?;
            self.arm(pid, lives)?;
        }
        self.update_loader_hook(pid);
        Ok(())
    }

    /// Writes the breakpoints of decoded, slotted points.
    pub(super) fn arm(
        &mut self,
        pid: i32,
        lives: Vec<(usize, LivePoint<A>)>,
    ) -> Result<(), BreakpointError> {
        let proc = self.procs.get_mut(&pid).expect("known process");
        for (i, live) in lives {
            let w = &mut self.warnings;
            if let (Some(slot), SlotReturn::Breakpoint) = (live.slot, self.engine.slot_return) {
                let back = live.addr + A::len(&live.insn) as u64;
                super::rescue::protect_point(proc, pid, w, slot + live.slot_copy_len, back, None)?;
            }
            super::rescue::arm_point(proc, pid, w, live.addr, &live.orig)?;
            proc.inst.add(i, live, self.engine.slot_return);
            self.placed[i] = true;
            let def = &self.engine.table.points[i];
            if let Some(offset) = def.semaphore {
                let addr = crate::symbols::runtime_address(pid as u32, &def.binary, offset)
                    .map_err(|e| BreakpointError::Sys {
                        what: "finding a USDT semaphore",
                        pid,
                        error: io::Error::other(e.to_string()),
                    })?;
                add_semaphore(&mut proc.mem, addr, 1).map_err(|source| BreakpointError::Sys {
                    what: "incrementing a USDT semaphore",
                    pid,
                    error: source,
                })?;
                proc.inst.semaphores.push(addr);
            }
        }
        Ok(())
    }

    /// Finds, reads and classifies every point mapped in `pid` (decoded at its runtime
    /// address, from the bytes really there).
    pub(super) fn decode_points(
        &mut self,
        pid: i32,
    ) -> Result<Vec<(usize, LivePoint<A>)>, BreakpointError> {
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
            let jump = self.engine.slot_return == SlotReturn::Jump;
            let n = super::rescue::point_patch_len::<A>(&proc.rescue, jump, &insn, &code, addr);
            let orig = code[..n].to_vec();
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
    /// PC-relative reach of its original: `Arch::SLOT_REACH`) and writes the trampoline and
    /// the slots.
    pub(super) fn place_slots(
        &mut self,
        pid: i32,
        lives: &mut [(usize, LivePoint<A>)],
    ) -> Result<(), BreakpointError> {
        let need_tramp = self.procs[&pid].inst.trampoline.is_none()
            && lives
                .iter()
                .any(|(i, _)| !self.engine.table.points[*i].returns.is_empty());
        let mut clusters: Vec<Vec<usize>> = Vec::new();
        // Kill safety gives simulated points a slot too: their rescue copy (rescue.rs).
        let copies = matches!(self.procs[&pid].rescue, super::rescue::Rescue::On(_));
        let slotted = |k: &usize| copies || lives[*k].1.handling == Handling::OutOfLine;
        for k in (0..lives.len()).filter(slotted) {
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
            // A one-byte point with a guard needs a second slot (rescue.rs).
            let slots: Vec<u64> = cluster.iter().map(|&k| slots_for(&lives[k].1)).collect();
            let total: u64 = slots.iter().sum();
            let len = (16 + A::SLOT_SIZE * total).next_multiple_of(A::PAGE_SIZE);
            let area = self.map_area(pid, tid, scratch, near, len)?;
            let proc = self.procs.get_mut(&pid).expect("known process");
            proc.inst.areas.push((area, len));
            let sys = |source| BreakpointError::Sys {
                what: "writing the slot area",
                pid,
                error: source,
            };
            if need_tramp && n == 0 {
                // Two: see rescue.rs (a thread let go past the first traps on the second).
                super::rescue::protect_trampoline(proc, pid, area)?;
                proc.mem
                    .write(area, &A::BREAKPOINT.repeat(2))
                    .map_err(sys)?;
                proc.inst.trampoline = Some(area);
            }
            for (m, &k) in cluster.iter().enumerate() {
                let before: u64 = slots[..m].iter().sum();
                let slot = area + 16 + A::SLOT_SIZE * before;
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
                if slots[m] == 2 {
                    // Its copy is its slot too: the instruction, then a jump to the copy of
                    // the next one (so that the guard on that one is never met).
                    super::rescue::write_guarded_copies(proc, pid, live, slot)?;
                    if live.handling == Handling::OutOfLine {
                        (live.slot, live.slot_copy_len) = (Some(slot), 1);
                    }
                    continue;
                }
                if live.handling != Handling::OutOfLine {
                    super::rescue::write_copy(proc, pid, live, slot)?;
                    continue;
                }
                let image =
                    place::slot_image::<A>(&spec, &live.insn, slot, self.engine.slot_return)?;
                proc.mem.write(slot, &image.bytes).map_err(sys)?;
                live.slot = Some(slot);
                live.slot_copy_len = image.copy_len;
                super::rescue::note_copy(proc, live.addr, slot);
            }
        }
        Ok(())
    }

    /// The thread to inject system calls into: the leader when it is stopped. Not a thread
    /// that has just been created, in its first stop: attaching to a program that was
    /// creating threads, an `rt_sigaction` run there returned 0 without taking effect (the
    /// kill-safety handler was then missing: 22 of 300 kills during such an attach killed
    /// the program; 0 of 300 with the leader). The cause: a new thread blocks every signal
    /// until it has started, and the single step's SIGTRAP, forced on a thread that blocks
    /// it, reset the action to `SIG_DFL`. The leader blocks them too inside
    /// `pthread_create`: injections now run without a step where they can
    /// ([`super::rescue::run_from_stub`]).
    pub(super) fn any_stopped_thread(&self, pid: i32) -> i32 {
        if self
            .threads
            .get(&pid)
            .is_some_and(|t| t.tgid == pid && t.stopped)
        {
            return pid;
        }
        self.threads
            .iter()
            .find(|(_, t)| t.tgid == pid && t.stopped)
            .map(|(&tid, _)| tid)
            .expect("install runs with the process stopped")
    }

    /// Maps an executable area near `near` by making thread `tid` run `mmap` from `scratch`.
    /// The hints go from near to far (x86-64: 16 MiB below to 1 GiB below); those beyond a
    /// slot's reach are not tried.
    pub(super) fn map_area(
        &mut self,
        pid: i32,
        tid: i32,
        scratch: u64,
        near: u64,
        len: u64,
    ) -> Result<u64, BreakpointError> {
        let base = near & !(A::PAGE_SIZE - 1);
        let hints = [
            base.wrapping_sub(0x100_0000),
            base.wrapping_sub(0x1000_0000),
            base + 0x1000_0000,
            base.wrapping_sub(0x4000_0000),
        ];
        let mut last = String::new();
        for hint in hints
            .into_iter()
            .filter(|h| h.abs_diff(base) < A::SLOT_REACH)
        {
            let prot = libc::PROT_READ | libc::PROT_EXEC;
            let args = mmap_args(hint, len, prot, libc::MAP_FIXED_NOREPLACE as u64);
            let r = self.inject_syscall(pid, tid, scratch, A::NR_MMAP, args)?;
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
}

/// Adds `delta` to the 2-byte USDT semaphore at `addr` (the program runs a probe's argument
/// code only while it is non-zero), saturating as the kernel's reference counters do.
pub(super) fn add_semaphore(mem: &mut PtraceTarget, addr: u64, delta: i16) -> io::Result<()> {
    let mut b = [0u8; 2];
    mem.read(addr, &mut b)?;
    let v = u16::from_le_bytes(b).saturating_add_signed(delta);
    mem.write(addr, &v.to_le_bytes())
}

/// Slots a point takes: its slot or rescue copy, and for a one-byte instruction with a guard
/// the copy of the instruction after it too.
fn slots_for<A: Arch>(live: &LivePoint<A>) -> u64 {
    if live.orig.len() > A::BREAKPOINT.len() && A::len(&live.insn) == 1 {
        2
    } else {
        1
    }
}
