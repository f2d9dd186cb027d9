//! The arch-independent core: probe table, per-thread state, pre/post handlers, counts.
//!
//! Structure as in kprobes: a *probe point* is one breakpoint (entry and return probes on the
//! same address share it); a trap on it runs the pre-handler (count, stream, hijack the return
//! address), then the displaced instruction is simulated or sent out of line; a trap on a
//! slot's breakpoint runs the post-handler and resumes after the original instruction; a trap
//! on the return trampoline pops the thread's saved return address and records the latency.

pub mod place;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use tracekit_core::stats::{LatencyStats, Log2Histogram};

use super::BreakpointError;
use super::arch::{self, Arch, Boundary, Handling, ReturnSlot, SlotReturn};
use super::transport::{Memory, Registers};
use crate::event::HitEvent;
use crate::report::{ProbeReport, ProbeResult, ThreadResult};
use crate::spec::ProbeKind;
use crate::symbols::ResolvedProbe;

/// Return addresses kept per thread before further return probes count as missed (uretprobes
/// use the same limit).
pub const MAX_RETURN_DEPTH: usize = 64;

/// One probe as the user asked for it.
#[derive(Debug, Clone)]
pub struct ProbeDef {
    /// The spec text.
    pub spec: String,
    /// Entry or return.
    pub kind: ProbeKind,
    /// Index of its breakpoint in [`ProbeTable::points`].
    pub point: usize,
    /// A USDT probe's arguments: hits show these instead of the argument registers.
    pub usdt_args: Option<Vec<crate::usdt::UsdtArg>>,
}

/// One breakpoint location, shared by the probes at that address.
#[derive(Debug, Clone)]
pub struct PointDef {
    /// The binary.
    pub binary: PathBuf,
    /// File offset of the instruction (how the runtime address is found).
    pub file_offset: u64,
    /// Spec of the first probe here (for messages).
    pub spec: String,
    /// Entry probes here.
    pub entry: Vec<usize>,
    /// Return probes here.
    pub returns: Vec<usize>,
    /// File offset of a USDT probe's semaphore, incremented while the point is placed.
    pub semaphore: Option<u64>,
}

/// Every probe of a run, validated before the tracee is touched.
#[derive(Debug)]
pub struct ProbeTable<A: Arch> {
    /// The probes, in the order given.
    pub probes: Vec<ProbeDef>,
    /// The breakpoints.
    pub points: Vec<PointDef>,
    _arch: std::marker::PhantomData<A>,
}

impl<A: Arch> ProbeTable<A> {
    /// Checks every probe (architecture, instruction boundary, a handleable instruction,
    /// return probes at entry) and groups them by address.
    pub fn new(resolved: &[ResolvedProbe]) -> Result<Self, BreakpointError> {
        let mut probes = Vec::new();
        let mut points: Vec<PointDef> = Vec::new();
        for r in resolved {
            let spec = r.spec.text.clone();
            check::<A>(r)?;
            let key = |p: &PointDef| p.binary == r.binary && p.file_offset == r.file_offset;
            let point = match points.iter().position(key) {
                Some(i) => i,
                None => {
                    points.push(PointDef {
                        binary: r.binary.clone(),
                        file_offset: r.file_offset,
                        spec: spec.clone(),
                        entry: vec![],
                        returns: vec![],
                        semaphore: r.usdt.as_ref().and_then(|u| u.semaphore),
                    });
                    points.len() - 1
                }
            };
            let idx = probes.len();
            match r.spec.kind {
                ProbeKind::Uretprobe => points[point].returns.push(idx),
                _ => points[point].entry.push(idx),
            }
            probes.push(ProbeDef {
                spec,
                kind: r.spec.kind,
                point,
                usdt_args: r.usdt.as_ref().map(|u| u.args.clone()),
            });
        }
        Ok(ProbeTable {
            probes,
            points,
            _arch: std::marker::PhantomData,
        })
    }
}

fn check<A: Arch>(r: &ResolvedProbe) -> Result<(), BreakpointError> {
    let spec = r.spec.text.clone();
    if r.machine != A::MACHINE {
        return Err(BreakpointError::WrongArch {
            spec,
            binary: r.binary.clone(),
            found: r.machine.clone(),
            expected: A::MACHINE,
        });
    }
    if r.spec.kind == ProbeKind::Uretprobe && r.vaddr != r.symbol_vaddr {
        return Err(BreakpointError::ReturnNotAtEntry { spec });
    }
    match arch::boundary::<A>(&r.code, r.symbol_vaddr, r.vaddr) {
        Boundary::Inside { text, start, next } => {
            return Err(BreakpointError::MidInstruction {
                spec,
                addr: r.vaddr,
                insn: text,
                start,
                next,
            });
        }
        Boundary::Unknown | Boundary::Exact => {}
    }
    let off = (r.vaddr - r.symbol_vaddr) as usize;
    let insn = r
        .code
        .get(off..)
        .and_then(|c| A::decode(c, r.vaddr))
        .ok_or(BreakpointError::Undecodable {
            spec: spec.clone(),
            addr: r.vaddr,
        })?;
    place::handling::<A>(&spec, &insn, false).map(drop)
}

/// The raw values of a USDT probe's first six arguments at a hit (0 where unreadable).
fn usdt_values<A: Arch>(
    usdt: &[crate::usdt::UsdtArg],
    regs: &A::Regs,
    mem: &mut dyn Memory,
) -> [u64; 6] {
    let mut out = [0u64; 6];
    let reg = |r| A::usdt_register(regs, r);
    let mut read = |addr, buf: &mut [u8]| mem.read(addr, buf).is_ok();
    for (v, a) in out.iter_mut().zip(usdt) {
        *v = a.read(&reg, &mut read).unwrap_or(0);
    }
    out
}

/// A breakpoint as placed in one process.
#[derive(Debug, Clone)]
pub struct LivePoint<A: Arch> {
    /// Runtime address.
    pub addr: u64,
    /// The bytes the breakpoint replaced.
    pub orig: Vec<u8>,
    /// The displaced instruction, decoded at its runtime address.
    pub insn: A::Insn,
    /// Simulate or out of line (never Refuse here).
    pub handling: Handling,
    /// The slot, for out-of-line points.
    pub slot: Option<u64>,
    /// Length of the slot's copy of the instruction (where its way back starts).
    pub slot_copy_len: u64,
}

/// The probes placed in one process (its address space).
#[derive(Debug)]
pub struct Installed<A: Arch> {
    /// Per point of the table: where it is in this process, if placed.
    pub points: Vec<Option<LivePoint<A>>>,
    by_addr: HashMap<u64, usize>,
    slot_breakpoints: HashMap<u64, usize>,
    /// Address of the return trampoline (a breakpoint in the slot area).
    pub trampoline: Option<u64>,
    /// Slot areas (address, length) mapped into the process.
    pub areas: Vec<(u64, u64)>,
    /// Runtime addresses of the USDT semaphores incremented in this process, once per point
    /// (decremented as many times at detach).
    pub semaphores: Vec<u64>,
}

impl<A: Arch> Installed<A> {
    /// Nothing placed.
    pub fn new(n_points: usize) -> Self {
        Installed {
            points: (0..n_points).map(|_| None).collect(),
            by_addr: HashMap::new(),
            slot_breakpoints: HashMap::new(),
            trampoline: None,
            areas: vec![],
            semaphores: vec![],
        }
    }

    /// Records a placed point (the caller wrote the breakpoint and the slot).
    pub fn add(&mut self, index: usize, live: LivePoint<A>, ret: SlotReturn) {
        self.by_addr.insert(live.addr, index);
        if let (Some(slot), SlotReturn::Breakpoint) = (live.slot, ret) {
            self.slot_breakpoints
                .insert(slot + live.slot_copy_len, index);
        }
        self.points[index] = Some(live);
    }

    /// Whether any point is placed.
    pub fn any(&self) -> bool {
        !self.by_addr.is_empty()
    }

    /// Where a thread stopped in a slot must go so that the slot can disappear: the same
    /// progress, but at the original instruction.
    pub fn pc_outside_slots(&self, pc: u64) -> Option<u64> {
        self.points.iter().flatten().find_map(|p| {
            let slot = p.slot?;
            if pc == slot {
                Some(p.addr)
            } else if pc > slot && pc < slot + A::SLOT_SIZE {
                // Past the copy (its way back, or after a completed syscall in it).
                Some(p.addr + (pc - slot).min(A::len(&p.insn) as u64))
            } else {
                None
            }
        })
    }

    /// Whether one of our breakpoints (probe point, slot return, trampoline) is at `addr`.
    pub fn is_breakpoint(&self, addr: u64) -> bool {
        self.by_addr.contains_key(&addr)
            || self.slot_breakpoints.contains_key(&addr)
            || self.trampoline == Some(addr)
    }

    /// Whether `addr` is inside a slot area.
    pub fn in_areas(&self, addr: u64) -> bool {
        self.areas.iter().any(|&(a, l)| addr >= a && addr < a + l)
    }
}

/// Where one thread is in the probe protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Phase {
    /// Running its own code.
    #[default]
    Running,
    /// Executing point `.0`'s copy in its slot, waiting for the slot's breakpoint.
    OutOfLine(usize),
}

/// A hijacked return address.
#[derive(Debug, Clone, Copy)]
pub struct PendingReturn {
    /// The point whose return probes fire.
    pub point: usize,
    /// The real return address.
    pub real: u64,
    /// The function's frame ([`Arch::frame_at_entry`]).
    pub frame: u64,
    /// Where the return address was (the trampoline's address is there now, or was: a
    /// return register may have been saved anywhere since).
    pub slot: ReturnSlot,
    /// When the function was entered.
    pub entered: Instant,
    /// The arguments at entry.
    pub args: [u64; 6],
}

/// Per-thread state (the kprobe control block, one per thread instead of per CPU).
#[derive(Debug, Clone, Default)]
pub struct ThreadState {
    /// Protocol phase.
    pub phase: Phase,
    /// Hijacked return addresses, innermost last.
    pub returns: Vec<PendingReturn>,
}

#[derive(Debug, Clone, Default)]
struct ProbeStats {
    hits: u64,
    missed: u64,
    latency: LatencyStats,
    hist: Log2Histogram,
}

/// One thread's share of a probe.
#[derive(Debug, Clone, Copy, Default)]
struct ThreadStats {
    hits: u64,
    missed: u64,
    latency: LatencyStats,
}

/// Handlers and counts for a run.
pub struct Engine<A: Arch> {
    /// The probes.
    pub table: ProbeTable<A>,
    stats: Vec<ProbeStats>,
    /// Per (probe, thread) counts, when asked for ([`Engine::count_per_thread`]).
    threads: Option<std::collections::BTreeMap<(usize, i32), ThreadStats>>,
    /// Build hit events for the callback.
    pub print: bool,
    /// How slots come back.
    pub slot_return: SlotReturn,
}

/// What a trap was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trap {
    /// One of ours, handled: resume the thread with the registers as modified.
    Handled,
    /// Not ours (the program's own breakpoint or SIGTRAP): pass the signal through.
    Foreign,
}

impl<A: Arch> Engine<A> {
    /// A fresh engine.
    pub fn new(table: ProbeTable<A>, print: bool, slot_return: SlotReturn) -> Self {
        let stats = vec![ProbeStats::default(); table.probes.len()];
        Engine {
            table,
            stats,
            threads: None,
            print,
            slot_return,
        }
    }

    /// Also counts hits and latencies per thread, for [`ProbeResult::threads`].
    pub fn count_per_thread(&mut self) {
        self.threads.get_or_insert_default();
    }

    /// Counts a hit of probe `p` by thread `tid`, with its latency for returns.
    fn count_hit(&mut self, p: usize, tid: i32, latency: Option<u64>) {
        let s = &mut self.stats[p];
        s.hits += 1;
        if let Some(ns) = latency {
            s.latency.record(ns);
            s.hist.record(ns);
        }
        if let Some(threads) = &mut self.threads {
            let t = threads.entry((p, tid)).or_default();
            t.hits += 1;
            if let Some(ns) = latency {
                t.latency.record(ns);
            }
        }
    }

    /// Handles a breakpoint trap of thread `tid` at `A::pc(regs)`.
    pub fn on_trap(
        &mut self,
        inst: &Installed<A>,
        thread: &mut ThreadState,
        tid: i32,
        regs: &mut A::Regs,
        mem: &mut dyn Memory,
        on_hit: &mut dyn FnMut(&HitEvent),
    ) -> Result<Trap, BreakpointError> {
        let addr = A::breakpoint_address(A::pc(regs));
        // The kprobe control block's states map onto this: HIT (pre-handler) and SS (out of
        // line, `Phase::OutOfLine`) happen here; SSDONE is the slot's breakpoint below (or
        // nothing at all for simulated and boosted instructions); REENTER counts as missed.
        if let Some(&point) = inst.by_addr.get(&addr) {
            let live = inst.points[point]
                .as_ref()
                .expect("indexed points are placed");
            if let Phase::OutOfLine(_) = thread.phase {
                // Re-entered (a signal handler hit a probe while a copy was in flight): run the
                // instruction but do not count it as a hit, as kprobes do.
                self.count_missed(point, tid);
            } else {
                self.pre_handler(inst, point, thread, tid, regs, mem, on_hit)?;
            }
            self.execute(live, point, thread, regs, mem, tid)?;
            return Ok(Trap::Handled);
        }
        if let Some(&point) = inst.slot_breakpoints.get(&addr) {
            let live = inst.points[point]
                .as_ref()
                .expect("indexed points are placed");
            // Post-handler: the copy ran; continue after the original instruction.
            A::set_pc(regs, live.addr + A::len(&live.insn) as u64);
            thread.phase = Phase::Running;
            return Ok(Trap::Handled);
        }
        if inst.trampoline == Some(addr) {
            self.on_return(thread, tid, regs, on_hit)?;
            return Ok(Trap::Handled);
        }
        Ok(Trap::Foreign)
    }

    #[allow(clippy::too_many_arguments)]
    fn pre_handler(
        &mut self,
        inst: &Installed<A>,
        point: usize,
        thread: &mut ThreadState,
        tid: i32,
        regs: &mut A::Regs,
        mem: &mut dyn Memory,
        on_hit: &mut dyn FnMut(&HitEvent),
    ) -> Result<(), BreakpointError> {
        let args = A::args(regs);
        // By index: the counting borrows the engine mutably (no copy on the hit path).
        for i in 0..self.table.points[point].entry.len() {
            let p = self.table.points[point].entry[i];
            self.count_hit(p, tid, None);
            if self.print {
                let args = match &self.table.probes[p].usdt_args {
                    Some(usdt) => usdt_values::<A>(usdt, regs, mem),
                    None => args,
                };
                on_hit(&HitEvent {
                    probe: p,
                    tid,
                    kind: ProbeKind::Uprobe,
                    args,
                    retval: None,
                    latency_ns: None,
                });
            }
        }
        if self.table.points[point].returns.is_empty() {
            return Ok(());
        }
        let tramp = inst.trampoline.expect("return probes get a trampoline");
        let frame = A::frame_at_entry(regs);
        // A pending return whose frame is at or below this new one cannot be live any more:
        // the stack was unwound past it without returning (longjmp, exceptions, a thread's
        // stack switch). Drop such frames now, as the kernel's uretprobes do, so they cannot
        // fill the stack and make every later return probe on this thread a miss.
        while thread.returns.last().is_some_and(|r| r.frame <= frame) {
            thread.returns.pop();
        }
        if thread.returns.len() >= MAX_RETURN_DEPTH {
            for i in 0..self.table.points[point].returns.len() {
                let p = self.table.points[point].returns[i];
                self.count_miss(p, tid);
            }
            return Ok(());
        }
        let sys = |source| BreakpointError::Sys {
            what: "hijacking a return address",
            pid: tid,
            error: source,
        };
        let slot = A::return_slot(regs);
        let real = match slot {
            ReturnSlot::Memory(addr) => {
                let real = mem.read_u64(addr).map_err(sys)?;
                mem.write_u64(addr, tramp).map_err(sys)?;
                real
            }
            ReturnSlot::Register => {
                let real = A::return_register(regs);
                A::set_return_register(regs, tramp);
                real
            }
        };
        thread.returns.push(PendingReturn {
            point,
            real,
            frame,
            slot,
            entered: Instant::now(),
            args,
        });
        Ok(())
    }

    fn execute(
        &mut self,
        live: &LivePoint<A>,
        point: usize,
        thread: &mut ThreadState,
        regs: &mut A::Regs,
        mem: &mut dyn Memory,
        tid: i32,
    ) -> Result<(), BreakpointError> {
        match (&live.handling, live.slot) {
            (Handling::Simulate, _) => {
                A::simulate(&live.insn, regs, mem).map_err(|source| BreakpointError::Sys {
                    what: "simulating an instruction",
                    pid: tid,
                    error: source,
                })?;
            }
            (_, Some(slot)) => {
                A::set_pc(regs, slot);
                if self.slot_return == SlotReturn::Breakpoint {
                    thread.phase = Phase::OutOfLine(point);
                }
            }
            (_, None) => unreachable!("out-of-line points get a slot when placed"),
        }
        Ok(())
    }

    fn on_return(
        &mut self,
        thread: &mut ThreadState,
        tid: i32,
        regs: &mut A::Regs,
        on_hit: &mut dyn FnMut(&HitEvent),
    ) -> Result<(), BreakpointError> {
        let popped = A::frame_at_return(regs);
        // Frames deeper than this one were abandoned (longjmp, exceptions): drop them.
        while thread.returns.last().is_some_and(|r| r.frame < popped) {
            thread.returns.pop();
        }
        let Some(ret) = thread.returns.pop() else {
            return Err(BreakpointError::LostReturn { tid });
        };
        let ns = ret.entered.elapsed().as_nanos() as u64;
        A::set_pc(regs, ret.real);
        let retval = A::return_value(regs);
        for i in 0..self.table.points[ret.point].returns.len() {
            let p = self.table.points[ret.point].returns[i];
            self.count_hit(p, tid, Some(ns));
            if self.print {
                on_hit(&HitEvent {
                    probe: p,
                    tid,
                    kind: ProbeKind::Uretprobe,
                    args: ret.args,
                    retval: Some(retval),
                    latency_ns: Some(ns),
                });
            }
        }
        Ok(())
    }

    fn count_missed(&mut self, point: usize, tid: i32) {
        let def = &self.table.points[point];
        let probes: Vec<usize> = def.entry.iter().chain(&def.returns).copied().collect();
        for p in probes {
            self.count_miss(p, tid);
        }
    }

    /// Counts a miss of probe `p` in thread `tid` (per thread too, when counting per thread).
    fn count_miss(&mut self, p: usize, tid: i32) {
        self.stats[p].missed += 1;
        if let Some(threads) = &mut self.threads {
            threads.entry((p, tid)).or_default().missed += 1;
        }
    }

    /// Puts back every return address a thread still has hijacked on the stack
    /// ([`ReturnSlot::Memory`]; detach, fork child). Addresses whose stack slot no longer
    /// holds the trampoline are left alone.
    pub fn restore_returns(
        inst: &Installed<A>,
        thread: &ThreadState,
        mem: &mut dyn Memory,
    ) -> std::io::Result<usize> {
        let Some(tramp) = inst.trampoline else {
            return Ok(0);
        };
        let mut restored = 0;
        for r in &thread.returns {
            if let ReturnSlot::Memory(addr) = r.slot
                && mem.read_u64(addr)? == tramp
            {
                mem.write_u64(addr, r.real)?;
                restored += 1;
            }
        }
        Ok(restored)
    }

    /// Puts back the return addresses a thread still has hijacked in a return register
    /// ([`ReturnSlot::Register`] architectures): the innermost may still be in that register;
    /// the others were saved by their functions on the stack, innermost lowest, so the stack
    /// is scanned upwards from the stack pointer (1 MiB at most, or to its top). Returns how
    /// many were put back.
    pub fn restore_register_returns(
        inst: &Installed<A>,
        thread: &ThreadState,
        regs: &mut A::Regs,
        mem: &mut dyn Memory,
    ) -> std::io::Result<usize> {
        let Some(tramp) = inst.trampoline else {
            return Ok(0);
        };
        // Innermost last: pop() yields it first.
        let mut pending: Vec<u64> = thread
            .returns
            .iter()
            .filter(|r| r.slot == ReturnSlot::Register)
            .map(|r| r.real)
            .collect();
        let total = pending.len();
        if total == 0 {
            return Ok(0);
        }
        if A::return_register(regs) == tramp {
            let real = pending.pop().expect("non-empty");
            A::set_return_register(regs, real);
        }
        let mut addr = A::sp(regs);
        let limit = addr + (1 << 20);
        let mut chunk = [0u8; 4096];
        while !pending.is_empty() && addr < limit {
            if mem.read(addr, &mut chunk).is_err() {
                break; // the top of the stack
            }
            for (i, w) in chunk.chunks_exact(8).enumerate() {
                if u64::from_le_bytes(w.try_into().expect("8 bytes")) == tramp
                    && let Some(real) = pending.pop()
                {
                    mem.write_u64(addr + 8 * i as u64, real)?;
                }
            }
            addr += chunk.len() as u64;
        }
        Ok(total - pending.len())
    }

    /// If a stopped thread sits on the trampoline or in a slot, moves it to the equivalent
    /// place in the original code, so that slots and trampoline can go away.
    pub fn evacuate<T: Registers<A::Regs> + ?Sized>(
        inst: &Installed<A>,
        thread: &mut ThreadState,
        tid: i32,
        target: &mut T,
    ) -> std::io::Result<()> {
        let mut regs = target.get_regs(tid)?;
        let pc = A::pc(&regs);
        let new_pc = if inst
            .trampoline
            .is_some_and(|t| pc == t || pc == t + A::BREAKPOINT.len() as u64)
        {
            thread.returns.pop().map(|r| r.real)
        } else if inst.in_areas(pc) {
            inst.pc_outside_slots(pc)
        } else {
            None
        };
        if let Some(new_pc) = new_pc {
            A::set_pc(&mut regs, new_pc);
            target.set_regs(tid, &regs)?;
        }
        thread.phase = Phase::Running;
        Ok(())
    }

    /// Probe `p`'s per-thread results, by thread id (empty unless counted per thread).
    fn threads_of(&self, p: usize, ret: bool) -> Vec<ThreadResult> {
        let Some(threads) = &self.threads else {
            return Vec::new();
        };
        threads
            .range((p, i32::MIN)..=(p, i32::MAX))
            .map(|(&(_, tid), t)| ThreadResult {
                tid,
                hits: t.hits,
                missed: t.missed,
                latency: ret.then_some(t.latency),
            })
            .collect()
    }

    /// The report: one result per probe, in the order given.
    pub fn report(&self) -> ProbeReport {
        let probes = self
            .table
            .probes
            .iter()
            .zip(&self.stats)
            .enumerate()
            .map(|(p, (def, s))| {
                let ret = def.kind == ProbeKind::Uretprobe;
                ProbeResult {
                    spec: def.spec.clone(),
                    kind: def.kind,
                    hits: s.hits,
                    missed: s.missed,
                    // The ptrace engine streams from the tracer itself: nothing can be lost.
                    lost: 0,
                    latency: ret.then_some(s.latency),
                    histogram: ret.then(|| s.hist.clone()),
                    threads: self.threads_of(p, ret),
                    unattributed: 0,
                }
            })
            .collect();
        ProbeReport {
            engine: "ptrace".into(),
            probes,
            by_thread: self.threads.is_some(),
        }
    }
}
