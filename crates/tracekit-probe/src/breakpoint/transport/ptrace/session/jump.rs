//! The jump engine's side of the session ([`crate::breakpoint::jump`]): placing points with
//! jumps instead of int3 (the others stay with the int3 engine, with the reason shown),
//! the shared area's mapping into each process, forks, exec, detach, and the report.
//!
//! The shared area reaches the target as a memfd: tracekit creates it, writes the path
//! `/proc/<tracekit>/fd/<n>` into the trampoline area, and makes a stopped thread run
//! `openat`, `mmap(MAP_SHARED)` and `close` (injected system calls). One area per process
//! lineage: an exec keeps it (the same counters continue), a followed fork child gets a new
//! one (its hits are its own), a child that is not followed gets a private anonymous copy
//! (its hits reach nobody, and its hijacked returns still find their entries).

use super::*;
use crate::breakpoint::jump::area::{self, SharedArea};
use crate::breakpoint::jump::tramp::{self, EntryTramp, TRAMP_SIZE, Tsc};
use crate::breakpoint::jump::{PointPlan, clock};
use crate::report::ProbeReport;
use crate::spec::ProbeKind;

const NR_OPENAT: u64 = 257;
const NR_CLOSE: u64 = 3;
const AT_FDCWD: u64 = -100i64 as u64;
/// How far a trampoline may be from its point, and the shared area from its trampolines.
const REACH: u64 = 0x7000_0000;
/// The first page of each trampoline area: the memfd's path, a scratch syscall.
const HEADER: u64 = 4096;
const SCRATCH: u64 = 0x800;

/// The jump engine's state for a run.
pub(in super::super) struct JumpState {
    plans: Vec<Result<PointPlan, String>>,
    tsc: Result<Tsc, String>,
    areas: Vec<SharedArea>,
    procs: HashMap<i32, JumpProc>,
    warned: HashSet<usize>,
}

#[derive(Debug, Clone, Default)]
struct JumpProc {
    /// Index in [`JumpState::areas`] (`None`: a private copy nobody reads).
    area: Option<usize>,
    /// (trampoline area, shared area mapping) pairs mapped in the process.
    maps: Vec<(u64, u64)>,
    points: Vec<JumpPoint>,
}

#[derive(Debug, Clone)]
struct JumpPoint {
    index: usize,
    addr: u64,
    orig: Vec<u8>,
}

/// A point that can take a jump in this process.
struct Candidate {
    index: usize,
    addr: u64,
    insns: Vec<iced_x86::Instruction>,
    flags_free: bool,
    returns: bool,
    entries: bool,
    /// Threads stopped at a displaced instruction after the first: moved to its copy.
    movers: Vec<(i32, u64)>,
}

impl JumpState {
    /// The state for the per-point `plans` (from [`crate::breakpoint::jump::plan`]).
    pub(in super::super) fn new(plans: Vec<Result<PointPlan, String>>) -> Self {
        JumpState {
            plans,
            tsc: clock::calibrate(),
            areas: vec![],
            procs: HashMap::new(),
            warned: HashSet::new(),
        }
    }

    /// Adds what the trampolines counted (every area, live) to the int3 engine's report;
    /// with `print`, says that jump hits were counted but not streamed.
    pub(super) fn merge<A: Arch>(
        &self,
        report: &mut ProbeReport,
        table: &ProbeTable<A>,
        print: bool,
        warnings: &mut Vec<String>,
    ) {
        report.engine = "jump".into();
        if print && !self.areas.is_empty() {
            warnings.push(
                "the jump engine counts hits in the target without stopping it, so only the \
                 probes placed with int3 were printed one by one; use --engine ptrace to see \
                 every hit"
                    .into(),
            );
        }
        for (def, res) in table.probes.iter().zip(&mut report.probes) {
            for a in &self.areas {
                let c = a.counts(def.point);
                if def.kind == ProbeKind::Uretprobe {
                    res.hits += c.returns;
                    res.missed += c.missed;
                    if let Some(l) = res.latency.as_mut() {
                        l.merge(&c.latency);
                    }
                    if let Some(h) = res.histogram.as_mut() {
                        h.add_buckets(&c.hist.buckets);
                    }
                } else {
                    res.hits += c.entries;
                }
            }
        }
    }
}

/// Whether process `pid` runs with CET shadow stacks enabled.
fn shadow_stack(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("x86_Thread_features:") && l.contains("shstk"))
    })
}

/// Moves each thread of `movers` (tid, pc) stopped at a displaced instruction to its copy in
/// the trampoline (`moved`: original → copy). A thread interrupted in a system call there
/// restarts it from the copy: the instruction before each copy of a `syscall` is its copy.
fn move_threads(
    mem: &mut PtraceTarget,
    movers: &[(i32, u64)],
    moved: &[(u64, u64)],
) -> Result<(), String> {
    for &(tid, pc) in movers {
        let (_, to) = moved
            .iter()
            .find(|(ip, _)| *ip == pc)
            .ok_or_else(|| format!("thread {tid} at {pc:#x} has no place in the trampoline"))?;
        let mut regs: libc::user_regs_struct = mem
            .get_regs(tid)
            .map_err(|e| format!("reading thread {tid}'s registers: {e}"))?;
        regs.rip = *to;
        mem.set_regs(tid, &regs)
            .map_err(|e| format!("moving thread {tid} into the trampoline: {e}"))?;
    }
    Ok(())
}

/// `jmp rel32` from `addr` to `to`, padded with int3 to `len` bytes.
fn jump_bytes(addr: u64, to: u64, len: usize) -> Vec<u8> {
    let rel = to.wrapping_sub(addr + 5) as u32;
    let mut b = vec![0xe9];
    b.extend_from_slice(&rel.to_le_bytes());
    b.resize(len, 0xcc);
    b
}

/// Writes `new` over the instruction bytes at `addr` (every thread is stopped) so that the
/// code is never torn, even if tracekit is killed while writing. Within one page that is a
/// single write to /proc/PID/mem, which the kernel copies whole before a SIGKILL can end
/// tracekit. Across a page boundary that write could stop between the pages, so the bytes go
/// as `text_poke_bp` writes them: int3 on the first byte, the rest, then the first byte;
/// only a tracekit killed between those writes leaves an int3 (see the README).
fn poke(mem: &mut PtraceTarget, addr: u64, new: &[u8]) -> io::Result<()> {
    let last = addr + new.len() as u64 - 1;
    if addr / PAGE == last / PAGE {
        return mem.write(addr, new);
    }
    mem.write(addr, &[0xcc])?;
    mem.write(addr + 1, &new[1..])?;
    mem.write(addr, &new[..1])
}

/// The page size of x86-64, the only architecture of the jump engine.
const PAGE: u64 = 4096;

impl<A: Arch> Session<'_, A>
where
    PtraceTarget: Registers<A::Regs>,
{
    fn jump_warn(&mut self, index: usize, reason: &str) {
        let Some(js) = self.jump.as_mut() else { return };
        if js.warned.insert(index) {
            let spec = &self.engine.table.points[index].spec;
            self.warnings.push(format!(
                "{spec}: placed with int3 (a trap per hit), not a jump: {reason}"
            ));
        }
    }

    /// Places with jumps every point of `lives` the jump can take, and removes them from
    /// `lives` (the others are left to the int3 engine, with a warning saying why). Every
    /// thread of `pid` is stopped.
    pub(super) fn jump_place(
        &mut self,
        pid: i32,
        lives: &mut Vec<(usize, LivePoint<A>)>,
    ) -> Result<(), BreakpointError> {
        let Some(js) = self.jump.as_mut() else {
            return Ok(());
        };
        let jp = js.procs.entry(pid).or_default();
        let done: HashSet<usize> = jp.points.iter().map(|p| p.index).collect();
        lives.retain(|(i, _)| !done.contains(i));
        let cands = self.jump_candidates(pid, lives)?;
        if cands.is_empty() {
            return Ok(());
        }
        let mut clusters: Vec<Vec<Candidate>> = Vec::new();
        for c in cands {
            match clusters
                .iter_mut()
                .find(|cl| cl[0].addr.abs_diff(c.addr) < REACH / 2)
            {
                Some(cl) => cl.push(c),
                None => clusters.push(vec![c]),
            }
        }
        let mut placed = HashSet::new();
        for cl in clusters {
            match self.jump_cluster(pid, lives[0].1.addr, &cl) {
                Ok(()) => placed.extend(cl.iter().map(|c| c.index)),
                Err(reason) => {
                    for c in &cl {
                        self.jump_warn(c.index, &reason);
                    }
                }
            }
        }
        for &i in &placed {
            self.placed[i] = true;
        }
        lives.retain(|(i, _)| !placed.contains(i));
        Ok(())
    }

    /// The points of `lives` a jump can take in `pid` now; warns about the others.
    fn jump_candidates(
        &mut self,
        pid: i32,
        lives: &[(usize, LivePoint<A>)],
    ) -> Result<Vec<Candidate>, BreakpointError> {
        let shstk = shadow_stack(pid);
        let pcs = self.thread_pcs(pid)?;
        let mut out = Vec::new();
        for (i, live) in lives {
            match self.jump_check(pid, *i, live.addr, shstk, &pcs) {
                Ok(c) => out.push(c),
                Err(reason) => self.jump_warn(*i, &reason),
            }
        }
        Ok(out)
    }

    fn thread_pcs(&mut self, pid: i32) -> Result<Vec<(i32, u64)>, BreakpointError> {
        let tids: Vec<i32> = self
            .threads
            .iter()
            .filter(|(_, t)| t.tgid == pid)
            .map(|(&t, _)| t)
            .collect();
        let proc = self.procs.get_mut(&pid).expect("known process");
        tids.into_iter()
            .map(|tid| {
                let regs = proc
                    .mem
                    .get_regs(tid)
                    .map_err(|source| BreakpointError::Sys {
                        what: "PTRACE_GETREGS",
                        pid: tid,
                        error: source,
                    })?;
                Ok((tid, A::pc(&regs)))
            })
            .collect()
    }

    fn jump_check(
        &mut self,
        pid: i32,
        index: usize,
        addr: u64,
        shstk: bool,
        pcs: &[(i32, u64)],
    ) -> Result<Candidate, String> {
        let js = self.jump.as_ref().expect("jump engine");
        let plan = js.plans[index].clone()?;
        if shstk {
            return Err(
                "the process uses CET shadow stacks (a relocated call or a hijacked \
                        return would fault)"
                    .into(),
            );
        }
        let def = &self.engine.table.points[index];
        let returns = !def.returns.is_empty();
        if returns && let Err(e) = &js.tsc {
            return Err(format!("return probes need the TSC: {e}"));
        }
        let len = plan.bytes.len() as u64;
        let proc = self.procs.get_mut(&pid).expect("known process");
        let mut now = vec![0u8; plan.bytes.len()];
        proc.mem
            .read(addr, &mut now)
            .map_err(|e| format!("reading the code: {e}"))?;
        if now != plan.bytes {
            return Err(
                "the code in memory differs from the file (patched by someone else?)".into(),
            );
        }
        let insns: Vec<_> =
            iced_x86::Decoder::with_ip(64, &now, addr, iced_x86::DecoderOptions::NONE)
                .into_iter()
                .collect();
        let mut movers = Vec::new();
        for &(tid, pc) in pcs.iter().filter(|(_, pc)| *pc > addr && *pc < addr + len) {
            if !insns.iter().any(|i| i.ip() == pc) {
                return Err(format!(
                    "thread {tid} is stopped inside the displaced bytes (pc {pc:#x}), not at \
                     an instruction of theirs, so it cannot be moved to the trampoline"
                ));
            }
            movers.push((tid, pc));
        }
        Ok(Candidate {
            index,
            addr,
            insns,
            flags_free: plan.flags_free,
            returns,
            entries: !def.entry.is_empty(),
            movers,
        })
    }

    /// Maps a trampoline area near the cluster and the shared area near it, writes the
    /// trampolines and patches the points.
    fn jump_cluster(&mut self, pid: i32, scratch: u64, cl: &[Candidate]) -> Result<(), String> {
        let n_points = self.engine.table.points.len();
        let len = (HEADER + 2 * TRAMP_SIZE * cl.len() as u64).div_ceil(4096) * 4096;
        let tid = self.any_stopped_thread(pid);
        let code = self
            .map_area(pid, tid, scratch, cl[0].addr, len)
            .map_err(|e| format!("mapping the trampoline area: {e}"))?;
        if cl.iter().any(|c| c.addr.abs_diff(code) > REACH) {
            return Err(format!(
                "the nearest free area was at {code:#x}, too far away"
            ));
        }
        let ai = self
            .jump_area(pid, n_points)
            .map_err(|e| format!("creating the shared area: {e}"))?;
        let (fd, alen) = {
            let a = &self.jump.as_ref().expect("jump engine").areas[ai];
            (a.fd(), a.len())
        };
        let data = self.map_memfd(pid, tid, code, fd, alen, None)?;
        let table = data + area::table_offset(n_points);
        let tsc = self.jump.as_ref().expect("jump engine").tsc.clone();
        let mut points = Vec::new();
        for (m, c) in cl.iter().enumerate() {
            let at = code + HEADER + 2 * TRAMP_SIZE * m as u64;
            let counters = data + area::point_offset(c.index);
            let ret_at = at + TRAMP_SIZE;
            let proc = self.procs.get_mut(&pid).expect("known process");
            let werr = |e: io::Error| format!("writing a trampoline: {e}");
            if c.returns {
                let tsc = tsc.clone()?;
                let bytes = tramp::ret(counters, table, tsc, ret_at)?;
                proc.mem.write(ret_at, &bytes).map_err(werr)?;
            }
            let t = EntryTramp {
                displaced: &c.insns,
                flags_free: c.flags_free,
                count_entry: c.entries,
                counters,
                table,
                ret_tramp: c.returns.then_some(ret_at),
            };
            let entry = tramp::entry(&t, at)?;
            proc.mem.write(at, &entry.bytes).map_err(werr)?;
            move_threads(&mut proc.mem, &c.movers, &entry.moved)?;
            let len = c.insns.iter().map(|i| i.len()).sum::<usize>();
            let mut orig = vec![0u8; len];
            proc.mem.read(c.addr, &mut orig).map_err(werr)?;
            poke(&mut proc.mem, c.addr, &jump_bytes(c.addr, at, len))
                .map_err(|e| format!("patching the code: {e}"))?;
            points.push(JumpPoint {
                index: c.index,
                addr: c.addr,
                orig,
            });
        }
        let jp = self
            .jump
            .as_mut()
            .expect("jump engine")
            .procs
            .entry(pid)
            .or_default();
        jp.maps.push((code, data));
        jp.points.extend(points);
        Ok(())
    }

    /// The shared area of `pid`'s lineage, created on first use.
    fn jump_area(&mut self, pid: i32, n_points: usize) -> io::Result<usize> {
        let js = self.jump.as_mut().expect("jump engine");
        if let Some(a) = js.procs.get(&pid).and_then(|p| p.area) {
            return Ok(a);
        }
        let (mult, shift) = js.tsc.as_ref().map_or((0, 0), |t| (t.mult, t.shift));
        js.areas.push(SharedArea::new(
            n_points,
            u64::from(mult),
            u64::from(shift),
        )?);
        let ai = js.areas.len() - 1;
        js.procs.entry(pid).or_default().area = Some(ai);
        Ok(ai)
    }

    /// Makes `pid` map memfd `fd` (`len` bytes) of tracekit: near trampoline area `code`, or
    /// exactly at `fixed`. Returns the address.
    fn map_memfd(
        &mut self,
        pid: i32,
        tid: i32,
        code: u64,
        fd: i32,
        len: u64,
        fixed: Option<u64>,
    ) -> Result<u64, String> {
        let path = format!("/proc/{}/fd/{fd}\0", std::process::id());
        let proc = self.procs.get_mut(&pid).expect("known process");
        proc.mem
            .write(code, path.as_bytes())
            .map_err(|e| format!("writing the memfd's path: {e}"))?;
        let scratch = code + SCRATCH;
        let sys = |s: &mut Self, nr, args| {
            s.inject_syscall(pid, tid, scratch, nr, args)
                .map_err(|e| e.to_string())
        };
        let flags = (libc::O_RDWR | libc::O_CLOEXEC) as u64;
        let tfd = sys(self, NR_OPENAT, [AT_FDCWD, code, flags, 0, 0, 0])?;
        if tfd < 0 {
            return Err(format!(
                "the target could not open {}: {} (is /proc mounted, and tracekit's fds readable by the target?)",
                path.trim_end_matches('\0'),
                io::Error::from_raw_os_error(-tfd as i32)
            ));
        }
        let prot = (libc::PROT_READ | libc::PROT_WRITE) as u64;
        let hints: Vec<(u64, u64)> = match fixed {
            Some(at) => vec![(at, libc::MAP_FIXED as u64)],
            None => [0x20_0000u64, 0x100_0000, 0x1000_0000]
                .iter()
                .flat_map(|d| [code.wrapping_sub(d + len), code + d])
                .map(|h| (h & !0xfff, libc::MAP_FIXED_NOREPLACE as u64))
                .collect(),
        };
        let mut last = 0;
        for (hint, how) in hints {
            let shared = libc::MAP_SHARED as u64 | how;
            let r = sys(self, A::NR_MMAP, [hint, len, prot, shared, tfd as u64, 0])?;
            if r >= 0 && (r as u64).abs_diff(code) < REACH {
                sys(self, NR_CLOSE, [tfd as u64, 0, 0, 0, 0, 0])?;
                return Ok(r as u64);
            }
            last = r;
        }
        sys(self, NR_CLOSE, [tfd as u64, 0, 0, 0, 0, 0])?;
        Err(format!(
            "mapping the shared area near {code:#x} failed: {}",
            io::Error::from_raw_os_error(-last as i32)
        ))
    }

    /// Puts the original bytes back in `pid` (detach). Trampolines and the shared area stay
    /// mapped: a thread may be in a trampoline, or return through a hijacked address.
    pub(super) fn jump_restore(&mut self, pid: i32) -> Result<(), BreakpointError> {
        let Some(jp) = self.jump.as_mut().and_then(|js| js.procs.get_mut(&pid)) else {
            return Ok(());
        };
        let points = std::mem::take(&mut jp.points);
        let Some(proc) = self.procs.get_mut(&pid) else {
            return Ok(());
        };
        for p in points {
            poke(&mut proc.mem, p.addr, &p.orig).map_err(|source| BreakpointError::Sys {
                what: "restoring code patched with a jump",
                pid,
                error: source,
            })?;
        }
        Ok(())
    }

    /// After exec: nothing of ours is in the new image; the lineage keeps its shared area.
    pub(super) fn jump_forget(&mut self, pid: i32) {
        if let Some(jp) = self.jump.as_mut().and_then(|js| js.procs.get_mut(&pid)) {
            jp.maps.clear();
            jp.points.clear();
        }
    }

    /// A forked child (stopped, not a vfork) of `parent`: its copy of the shared mappings is
    /// replaced, by a new memfd when it is followed (its counts are its own), otherwise by a
    /// private copy (and its code gets the original bytes back). Either way the return table
    /// is copied, so that the child's hijacked returns find their entries.
    pub(super) fn jump_fork(&mut self, parent: i32, child: i32) -> Result<(), BreakpointError> {
        let Some(jp) = self
            .jump
            .as_ref()
            .and_then(|js| js.procs.get(&parent))
            .cloned()
        else {
            return Ok(());
        };
        if jp.maps.is_empty() {
            return Ok(());
        }
        let sys = |source| BreakpointError::Sys {
            what: "giving a forked child its own shared area",
            pid: child,
            error: source,
        };
        let mem = PtraceTarget::open(child).map_err(sys)?;
        let n = self.engine.table.points.len();
        self.procs.insert(
            child,
            Proc {
                mem,
                inst: Installed::new(n),
                phase: ProcPhase::Live,
                keep_slots: false,
                loader: None,
                rescue: Default::default(),
                stub: None,
            },
        );
        self.add_thread(child, child);
        self.threads.get_mut(&child).expect("just added").stopped = true;
        let r = self.jump_fork_inner(child, jp);
        self.procs.remove(&child);
        self.threads.remove(&child);
        r.map_err(|e| sys(io::Error::other(e)))
    }

    fn jump_fork_inner(&mut self, child: i32, mut jp: JumpProc) -> Result<(), String> {
        let n = self.engine.table.points.len();
        let (toff, tlen) = (
            area::table_offset(n),
            area::area_len(n) - area::table_offset(n),
        );
        let js = self.jump.as_mut().expect("jump engine");
        let table = jp
            .area
            .map(|a| js.areas[a].copy_out(toff, tlen))
            .unwrap_or_default();
        let follow = self.opts.follow_forks;
        let new = if follow {
            let (mult, shift) = js.tsc.as_ref().map_or((0, 0), |t| (t.mult, t.shift));
            let a =
                SharedArea::new(n, u64::from(mult), u64::from(shift)).map_err(|e| e.to_string())?;
            for (k, w) in table.chunks_exact(8).enumerate() {
                a.write(
                    toff + 8 * k as u64,
                    u64::from_le_bytes(w.try_into().expect("8 bytes")),
                );
            }
            js.areas.push(a);
            Some(js.areas.len() - 1)
        } else {
            None
        };
        let alen = area::area_len(n);
        for &(code, data) in &jp.maps {
            match new {
                Some(ai) => {
                    let fd = self.jump.as_ref().expect("jump engine").areas[ai].fd();
                    self.map_memfd(child, child, code, fd, alen, Some(data))?;
                }
                None => self.private_copy(child, code, data, alen, &table)?,
            }
        }
        let proc = self.procs.get_mut(&child).expect("known");
        if !follow {
            for p in &jp.points {
                poke(&mut proc.mem, p.addr, &p.orig).map_err(|e| e.to_string())?;
            }
            return Ok(());
        }
        jp.area = new;
        self.jump
            .as_mut()
            .expect("jump engine")
            .procs
            .insert(child, jp);
        Ok(())
    }

    fn private_copy(
        &mut self,
        child: i32,
        code: u64,
        data: u64,
        len: u64,
        table: &[u8],
    ) -> Result<(), String> {
        let prot = (libc::PROT_READ | libc::PROT_WRITE) as u64;
        let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED) as u64;
        let r = self
            .inject_syscall(
                child,
                child,
                code + SCRATCH,
                A::NR_MMAP,
                [data, len, prot, flags, u64::MAX, 0],
            )
            .map_err(|e| e.to_string())?;
        if r < 0 {
            return Err(format!("mmap: {}", io::Error::from_raw_os_error(-r as i32)));
        }
        let n = self.engine.table.points.len();
        let proc = self.procs.get_mut(&child).expect("known");
        proc.mem
            .write(data + area::table_offset(n), table)
            .map_err(|e| e.to_string())
    }
}
