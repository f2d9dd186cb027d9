//! The BPF engine: uprobes and uretprobes through aya, aggregated in the kernel.
//!
//! One entry program and one return program (`bpf/uprobe.bpf.c`) serve every probe; each
//! attachment carries a BPF cookie naming its probe. Entry and return probes on the same
//! function share one entry attachment (it counts the hit and stamps the entry time), so the
//! short form `BINARY:SYMBOL` costs one uprobe plus one uretprobe per call. The kernel keeps
//! per-CPU statistics; user space reads them once at the end. `--print` adds a ring buffer.

pub mod kernel;
pub mod launch;
mod usdt;

use std::collections::HashMap;
use std::io;
use std::num::NonZeroU32;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aya::maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::UProbe;
use aya::programs::uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeScope};
use aya::{Ebpf, EbpfLoader, Pod};
use tracekit_core::stats::{LatencyStats, Log2Histogram};

use crate::event::{ExitStatus, HitEvent, Outcome, Sink, Target, Ticker};
use crate::report::{ProbeReport, ProbeResult, ThreadResult};
use crate::spec::ProbeKind;
use crate::symbols::ResolvedProbe;

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../bpf/obj/uprobe.bpf.o"
));

/// Probes one run can hold (the size of the kernel's statistics array).
pub const MAX_PROBES: usize = 4096;
const HIST_BUCKETS: usize = 64;
const RING_BYTES: u32 = 1 << 22;

/// Why the BPF engine could not run.
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    /// The kernel refused to load the program or create its maps.
    #[error("cannot load the uprobe BPF program: {reason}{}", if *.refused { "; run as root or grant CAP_BPF and CAP_PERFMON, or use --engine ptrace" } else { "" })]
    Load {
        /// The loader's error chain.
        reason: String,
        /// Whether this was a permission refusal (EPERM/EACCES): `--engine auto` falls back.
        refused: bool,
    },
    /// A uprobe could not be attached.
    #[error("cannot attach `{spec}` ({binary} at file offset {offset:#x}): {reason}{}", if *.refused { "; run as root or grant CAP_BPF and CAP_PERFMON, or use --engine ptrace" } else { "" })]
    Attach {
        /// The probe.
        spec: String,
        /// Its binary.
        binary: PathBuf,
        /// Its file offset.
        offset: u64,
        /// The kernel's answer.
        reason: String,
        /// Whether this was a permission refusal.
        refused: bool,
    },
    /// Kernel probes on a kernel without what they need.
    #[error(transparent)]
    Kernel(#[from] kernel::KernelProbeError),
    /// Too many probes for the kernel's statistics array.
    #[error("{0} probes given; at most {MAX_PROBES} per run")]
    TooMany(usize),
    /// Reading a map failed.
    #[error("cannot read the BPF map `{map}`: {reason}")]
    Map {
        /// The map.
        map: &'static str,
        /// Why.
        reason: String,
    },
    /// The command could not be started.
    #[error("cannot run {program}: {error}; check the path and that it is executable")]
    Spawn {
        /// The program.
        program: PathBuf,
        /// The OS error (shown in the message, so not a `source`).
        error: io::Error,
    },
    /// The process to trace does not exist.
    #[error("no process with pid {0}; check the pid with `ps` (the process may have exited)")]
    NoSuchProcess(u32),
    /// A probe on an AVX-512 (EVEX) instruction, which kernel uprobes single-step out of line
    /// in every process that runs it, not only the traced one.
    #[error(
        "`{spec}` is on an AVX-512 instruction ({insn}); a kernel uprobe single-steps it out of line in every process that runs the code, and on the machine tracekit is tested on that corrupted the result in other processes (a multi-threaded program's child could no longer exec); use --engine ptrace (which runs it in the traced process only), or probe a later instruction with +OFFSET"
    )]
    Avx512 {
        /// The probe.
        spec: String,
        /// The instruction.
        insn: String,
    },
}

impl BpfError {
    /// Whether the kernel refused BPF for lack of privilege (the case where `--engine auto`
    /// falls back to ptrace).
    pub fn is_refused(&self) -> bool {
        matches!(
            self,
            BpfError::Load { refused: true, .. }
                | BpfError::Attach { refused: true, .. }
                | BpfError::Avx512 { .. }
        )
    }
}

/// Refuses a probe on an EVEX-encoded (AVX-512) instruction: glibc's string functions start
/// with one on AVX-512 machines (`__strchr_evex`: `vpbroadcastb %esi,%ymm17`).
fn refuse_avx512(probes: &[ResolvedProbe]) -> Result<(), BpfError> {
    use crate::breakpoint::arch::{Arch, x86_64::X86_64};
    for p in probes
        .iter()
        .filter(|p| p.machine == crate::symbols::Machine::X86_64)
    {
        let at = usize::try_from(p.vaddr - p.symbol_vaddr).unwrap_or(usize::MAX);
        let Some(insn) = p
            .code
            .get(at..)
            .and_then(|code| X86_64::decode(code, p.vaddr))
        else {
            continue;
        };
        if is_avx512(&insn) {
            return Err(BpfError::Avx512 {
                spec: p.spec.text.clone(),
                insn: X86_64::text(&insn),
            });
        }
    }
    Ok(())
}

/// Whether an x86-64 instruction is AVX-512 (EVEX-encoded), which this engine refuses to probe.
pub(crate) fn is_avx512(insn: &iced_x86::Instruction) -> bool {
    insn.encoding() == iced_x86::EncodingKind::EVEX
}

/// The error chain as one line, and whether any OS error in it is EPERM/EACCES.
fn describe(err: &(dyn std::error::Error + 'static)) -> (String, bool) {
    let mut refused = false;
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            refused |= matches!(io.raw_os_error(), Some(libc::EPERM | libc::EACCES));
        }
        cur = e.source();
    }
    (tracekit_core::errors::chain(err), refused)
}

/// Mirror of `struct latency_sums` in uprobe.bpf.c.
#[repr(C)]
#[derive(Clone, Copy)]
struct KernelLatency {
    count: u64,
    total: u64,
    min: u64,
    max: u64,
    sum_sq_lo: u64,
    sum_sq_hi: u64,
}

impl KernelLatency {
    fn stats(&self) -> LatencyStats {
        LatencyStats {
            count: self.count,
            total: self.total,
            min: self.min,
            max: self.max,
            sum_sq: (u128::from(self.sum_sq_hi) << 64) | u128::from(self.sum_sq_lo),
        }
    }
}

/// Mirror of `struct probe_stats` in uprobe.bpf.c.
#[repr(C)]
#[derive(Clone, Copy)]
struct KernelStats {
    hits: u64,
    missed: u64,
    lost: u64,
    lat: KernelLatency,
    hist: [u64; HIST_BUCKETS],
    unattributed: u64,
}

/// Mirror of `struct thread_key` in uprobe.bpf.c.
#[repr(C)]
#[derive(Clone, Copy)]
struct ThreadKey {
    probe: u32,
    tid: u32,
}

/// Mirror of `struct thread_stats` in uprobe.bpf.c.
#[repr(C)]
#[derive(Clone, Copy)]
struct KernelThreadStats {
    hits: u64,
    missed: u64,
    lat: KernelLatency,
}

/// Mirror of `struct event` in uprobe.bpf.c.
#[repr(C)]
#[derive(Clone, Copy)]
struct KernelEvent {
    ts: u64,
    tgid: u32,
    tid: u32,
    probe: u32,
    kind: u32,
    args: [u64; 6],
    latency: u64,
}

// SAFETY: these are plain repr(C) structs of integers with no padding; any bit pattern is
// valid.
unsafe impl Pod for KernelStats {}
// SAFETY: as above.
unsafe impl Pod for KernelEvent {}
// SAFETY: as above.
unsafe impl Pod for ThreadKey {}
// SAFETY: as above.
unsafe impl Pod for KernelThreadStats {}

/// Engine options.
#[derive(Debug, Clone, Default)]
pub struct BpfOptions {
    /// Stream every hit through a ring buffer (see [`Session::poll`]).
    pub print: bool,
    /// Called by [`run`] once every probe is attached (before a command starts), with the
    /// number of probes: the moment a user (or a test) can start the workload.
    pub on_attached: Option<fn(usize)>,
    /// Also count hits and latencies per thread ([`ProbeResult::threads`]).
    pub by_thread: bool,
    /// (probe, thread) pairs the per-thread counts hold; 0: [`MAX_THREAD_ENTRIES`]. Hits of
    /// further threads are counted as [`ProbeResult::unattributed`].
    pub thread_entries: u32,
}

/// (probe, thread) pairs the per-thread statistics hold by default; hits beyond are counted
/// as [`ProbeResult::unattributed`].
pub const MAX_THREAD_ENTRIES: u32 = 65536;

/// One entry attachment: the hit it counts and the return probe whose entry it stamps.
#[derive(Debug, Clone, PartialEq, Eq)]
struct EntryAttach {
    probe_index: usize,
    hit: Option<usize>,
    stamp: Option<usize>,
}

impl EntryAttach {
    fn cookie(&self) -> u64 {
        let id = |o: Option<usize>| o.map_or(0, |i| i as u64 + 1);
        id(self.hit) | (id(self.stamp) << 16)
    }
}

/// Entry attachments for `probes`: entry and return probes at the same place share one.
fn plan_entries(probes: &[ResolvedProbe]) -> Vec<EntryAttach> {
    let mut plan: Vec<EntryAttach> = Vec::new();
    let mut by_place: HashMap<(PathBuf, u64), Vec<usize>> = HashMap::new();
    for (i, p) in probes.iter().enumerate() {
        let is_return = p.spec.kind == ProbeKind::Uretprobe;
        let slots = by_place
            .entry((p.binary.clone(), p.file_offset))
            .or_default();
        let free = slots.iter().copied().find(|&k| {
            if is_return {
                plan[k].stamp.is_none()
            } else {
                plan[k].hit.is_none()
            }
        });
        let k = free.unwrap_or_else(|| {
            plan.push(EntryAttach {
                probe_index: i,
                hit: None,
                stamp: None,
            });
            slots.push(plan.len() - 1);
            plan.len() - 1
        });
        if is_return {
            plan[k].stamp = Some(i)
        } else {
            plan[k].hit = Some(i)
        }
    }
    plan
}

/// Loaded programs with every probe attached. Dropping it detaches everything.
pub struct Session {
    ebpf: Ebpf,
    probes: Vec<ResolvedProbe>,
    events: Option<RingBuf<MapData>>,
    by_thread: bool,
    /// Uprobes with a semaphore (attached here, not through aya).
    _ref_ctr: Vec<usdt::RefCtrProbe>,
}

impl Session {
    /// Loads the programs and attaches every probe, firing only in process `pid` (all its
    /// threads). Probes must be user probes from [`crate::symbols::resolve_with`].
    pub fn attach(
        probes: &[ResolvedProbe],
        pid: u32,
        opts: &BpfOptions,
    ) -> Result<Session, BpfError> {
        if probes.len() > MAX_PROBES {
            return Err(BpfError::TooMany(probes.len()));
        }
        refuse_avx512(probes)?;
        if let Some(k) = probes.iter().find(|p| p.spec.kind == ProbeKind::Kprobe) {
            return Err(kernel::unavailable(&k.spec.text).into());
        }
        let load_err = |e: &(dyn std::error::Error + 'static)| {
            let (reason, refused) = describe(e);
            BpfError::Load { reason, refused }
        };
        let print = u32::from(opts.print);
        let by_thread = u32::from(opts.by_thread);
        // Without --print the ring buffer is never written; keep it one page.
        let ring = if opts.print { RING_BYTES } else { 4096 };
        let threads = match (opts.by_thread, opts.thread_entries) {
            (false, _) => 1,
            (true, 0) => MAX_THREAD_ENTRIES,
            (true, n) => n,
        };
        let mut ebpf = EbpfLoader::new()
            .override_global("cfg_print", &print, true)
            .override_global("cfg_by_thread", &by_thread, true)
            .map_max_entries("events", ring)
            .map_max_entries("thread_stats", threads)
            .map_max_entries("usdt_specs", probes.len().max(1) as u32)
            .load(OBJECT)
            .map_err(|e| load_err(&e))?;
        fill_usdt_specs(&mut ebpf, probes)?;
        let mut ref_ctr = Vec::new();
        let scope = NonZeroU32::new(pid).map_or(UProbeScope::AllProcesses, UProbeScope::OneProcess);
        for (name, is_return) in [("tk_return", true), ("tk_entry", false)] {
            let prog: &mut UProbe = ebpf
                .program_mut(name)
                .expect("program in object")
                .try_into()
                .map_err(|e: aya::programs::ProgramError| load_err(&e))?;
            prog.load().map_err(|e| load_err(&e))?;
            // Return probes first: a call in flight during attach then shows up as one missed
            // latency rather than as a stale entry time.
            let attachments: Vec<(usize, u64)> = if is_return {
                (probes.iter().enumerate())
                    .filter(|(_, p)| p.spec.kind == ProbeKind::Uretprobe)
                    .map(|(i, _)| (i, i as u64 + 1))
                    .collect()
            } else {
                plan_entries(probes)
                    .iter()
                    .map(|a| (a.probe_index, a.cookie() | usdt_flag(probes, a.hit)))
                    .collect()
            };
            for (i, cookie) in attachments {
                let p = &probes[i];
                let attach_err = |e: &(dyn std::error::Error + 'static)| {
                    let (reason, refused) = describe(e);
                    BpfError::Attach {
                        spec: p.spec.text.clone(),
                        binary: p.binary.clone(),
                        offset: p.file_offset,
                        reason,
                        refused,
                    }
                };
                if let Some(sema) = p.usdt.as_ref().and_then(|u| u.semaphore) {
                    let fd = prog.fd().map_err(|e| load_err(&e))?;
                    let probe =
                        usdt::attach_with_ref_ctr(fd, &p.binary, p.file_offset, sema, pid, cookie)
                            .map_err(|e| attach_err(&e))?;
                    ref_ctr.push(probe);
                    continue;
                }
                let point = UProbeAttachPoint {
                    location: UProbeAttachLocation::AbsoluteOffset(p.file_offset),
                    cookie: Some(cookie),
                };
                prog.attach(point, &p.binary, scope)
                    .map_err(|e| attach_err(&e))?;
            }
        }
        let events = if opts.print {
            let map = ebpf.take_map("events").expect("map in object");
            Some(RingBuf::try_from(map).map_err(|e| BpfError::Map {
                map: "events",
                reason: e.to_string(),
            })?)
        } else {
            None
        };
        Ok(Session {
            ebpf,
            probes: probes.to_vec(),
            events,
            by_thread: opts.by_thread,
            _ref_ctr: ref_ctr,
        })
    }

    /// Waits up to `timeout` for streamed hits and passes each to `sink`; returns how many.
    /// Without [`BpfOptions::print`] it just sleeps.
    pub fn poll(&mut self, timeout: Duration, sink: &mut dyn Sink) -> usize {
        let Some(ring) = self.events.as_mut() else {
            std::thread::sleep(timeout);
            return 0;
        };
        let mut n = drain(ring, sink);
        if n == 0 {
            let mut pfd = libc::pollfd {
                fd: ring.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd, and its count.
            unsafe {
                libc::poll(
                    &mut pfd,
                    1,
                    timeout.as_millis().min(i32::MAX as u128) as i32,
                )
            };
            n = drain(ring, sink);
        }
        n
    }

    /// Polls for streamed hits for one tick of the run loop (50 ms, or until the interval
    /// ends), then hands `sink` the counts so far if an interval ended.
    fn wait(&mut self, ticker: &mut Ticker, sink: &mut dyn Sink) -> Result<(), BpfError> {
        const TICK: Duration = Duration::from_millis(50);
        self.poll(ticker.remaining().map_or(TICK, |r| r.min(TICK)), sink);
        if ticker.due() {
            sink.interval(&self.report()?);
        }
        Ok(())
    }

    /// Reads the kernel's statistics (the probes stay attached).
    pub fn report(&self) -> Result<ProbeReport, BpfError> {
        let map_err = |e: aya::maps::MapError| BpfError::Map {
            map: "stats",
            reason: e.to_string(),
        };
        let map: PerCpuArray<&MapData, KernelStats> =
            PerCpuArray::try_from(self.ebpf.map("stats").expect("map in object"))
                .map_err(map_err)?;
        let mut probes = Vec::with_capacity(self.probes.len());
        for (i, p) in self.probes.iter().enumerate() {
            let per_cpu = map.get(&(i as u32), 0).map_err(map_err)?;
            probes.push(result_of(p, per_cpu.iter()));
        }
        if self.by_thread {
            self.add_threads(&mut probes)?;
        }
        let mut report = ProbeReport {
            engine: "bpf".into(),
            probes,
            by_thread: self.by_thread,
        };
        report.fold_sites(&self.probes);
        Ok(report)
    }

    /// Adds each probe's per-thread statistics, by thread id.
    fn add_threads(&self, probes: &mut [ProbeResult]) -> Result<(), BpfError> {
        let map_err = |e: aya::maps::MapError| BpfError::Map {
            map: "thread_stats",
            reason: e.to_string(),
        };
        let map: BpfHashMap<&MapData, ThreadKey, KernelThreadStats> =
            BpfHashMap::try_from(self.ebpf.map("thread_stats").expect("map in object"))
                .map_err(map_err)?;
        for entry in map.iter() {
            let (key, s) = entry.map_err(map_err)?;
            let Some(p) = probes.get_mut(key.probe as usize) else {
                continue;
            };
            let latency = p.latency.map(|_| s.lat.stats());
            let t = ThreadResult {
                tid: key.tid as i32,
                hits: s.hits,
                missed: s.missed,
                latency,
            };
            p.threads.push(t);
        }
        probes
            .iter_mut()
            .for_each(|p| p.threads.sort_by_key(|t| t.tid));
        Ok(())
    }
}

/// Bit 32 of an entry cookie: the probe is a USDT site whose arguments the program decodes.
fn usdt_flag(probes: &[ResolvedProbe], hit: Option<usize>) -> u64 {
    let is_usdt = hit.is_some_and(|i| probes[i].usdt.is_some());
    u64::from(is_usdt) << 32
}

/// Gives the BPF program each USDT probe's argument recipe, by probe index.
fn fill_usdt_specs(ebpf: &mut Ebpf, probes: &[ResolvedProbe]) -> Result<(), BpfError> {
    let map_err = |e: aya::maps::MapError| BpfError::Map {
        map: "usdt_specs",
        reason: e.to_string(),
    };
    let mut specs: Array<&mut MapData, usdt::KernelSpec> =
        Array::try_from(ebpf.map_mut("usdt_specs").expect("map in object")).map_err(map_err)?;
    for (i, p) in probes.iter().enumerate() {
        if let Some(u) = &p.usdt {
            specs
                .set(i as u32, usdt::kernel_spec(&u.args), 0)
                .map_err(map_err)?;
        }
    }
    Ok(())
}

fn drain(ring: &mut RingBuf<MapData>, sink: &mut dyn Sink) -> usize {
    let mut n = 0;
    while let Some(item) = ring.next() {
        if item.len() >= size_of::<KernelEvent>() {
            // SAFETY: the item holds at least one KernelEvent written by the BPF program; the
            // read is unaligned-safe.
            let e: KernelEvent = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
            sink.hit(&event_of(&e));
            n += 1;
        }
    }
    n
}

fn event_of(e: &KernelEvent) -> HitEvent {
    let ret = e.kind == 1;
    HitEvent {
        probe: e.probe as usize,
        // Thread ids are pid_t values; the kernel hands them over as u32.
        tid: e.tid as i32,
        kind: if ret {
            ProbeKind::Uretprobe
        } else {
            ProbeKind::Uprobe
        },
        args: if ret { [0; 6] } else { e.args },
        retval: ret.then_some(e.args[0]),
        latency_ns: (ret && e.latency > 0).then_some(e.latency),
    }
}

/// Merges the per-CPU statistics of one probe.
fn result_of<'a>(p: &ResolvedProbe, per_cpu: impl Iterator<Item = &'a KernelStats>) -> ProbeResult {
    let mut hits = 0;
    let mut missed = 0;
    let mut lost = 0;
    let mut unattributed = 0;
    let mut latency = LatencyStats::new();
    let mut histogram = Log2Histogram::default();
    for s in per_cpu {
        hits += s.hits;
        missed += s.missed;
        lost += s.lost;
        unattributed += s.unattributed;
        latency.merge(&s.lat.stats());
        histogram.add_buckets(&s.hist);
    }
    let is_return = p.spec.kind == ProbeKind::Uretprobe;
    ProbeResult {
        spec: p.spec.text.clone(),
        kind: p.spec.kind,
        hits,
        missed,
        lost,
        latency: is_return.then_some(latency),
        histogram: is_return.then_some(histogram),
        threads: Vec::new(),
        unattributed,
    }
}

/// Runs `probes` on `target` until it exits or `stop` becomes true, then detaches.
/// `on_hit` sees every hit when [`BpfOptions::print`] is set.
pub fn run(
    probes: &[ResolvedProbe],
    target: &Target,
    opts: &BpfOptions,
    stop: &AtomicBool,
    mut on_hit: &mut dyn FnMut(&HitEvent),
) -> Result<Outcome, BpfError> {
    run_with_sink(probes, target, opts, stop, &mut on_hit)
}

/// [`run`], handing `sink` every hit when [`BpfOptions::print`] is set and the counts so far
/// every [`Sink::every`] (interval reports).
pub fn run_with_sink(
    probes: &[ResolvedProbe],
    target: &Target,
    opts: &BpfOptions,
    stop: &AtomicBool,
    sink: &mut dyn Sink,
) -> Result<Outcome, BpfError> {
    match target {
        Target::Pid(pid) => {
            if !tracekit_core::process::alive(*pid) {
                return Err(BpfError::NoSuchProcess(*pid));
            }
            let warnings: Vec<String> = probes
                .iter()
                .filter(|p| p.runtime_address(*pid).is_err())
                .map(|p| {
                    format!(
                        "`{}`: {} is not mapped by process {pid}; the probe fires only if the process loads it",
                        p.spec.text,
                        p.binary.display()
                    )
                })
                .collect();
            let mut session = Session::attach(probes, *pid, opts)?;
            if let Some(f) = opts.on_attached {
                f(probes.len());
            }
            sink.started();
            let mut ticker = Ticker::new(sink);
            while !stop.load(Ordering::Relaxed) && tracekit_core::process::alive(*pid) {
                session.wait(&mut ticker, sink)?;
            }
            let mut out = finish(session, *pid, None, sink)?;
            out.warnings = warnings;
            Ok(out)
        }
        Target::Command { program, args } => {
            let spawn_err = |error| BpfError::Spawn {
                program: program.clone(),
                error,
            };
            let gated = launch::GatedChild::spawn(program, args).map_err(spawn_err)?;
            // On error the gate closes and the command never runs.
            let pid = gated.pid();
            let mut session = Session::attach(probes, pid, opts)?;
            if let Some(f) = opts.on_attached {
                f(probes.len());
            }
            let mut child = gated.release().map_err(spawn_err)?;
            let mut status = None;
            sink.started();
            let mut ticker = Ticker::new(sink);
            while !stop.load(Ordering::Relaxed) {
                session.wait(&mut ticker, sink)?;
                if let Some(s) = child.try_wait().map_err(spawn_err)? {
                    status = Some(s);
                    break;
                }
            }
            if status.is_none() {
                // Stopped (Ctrl-C reaches the command too): give it a moment to end.
                std::thread::sleep(Duration::from_millis(100));
                status = child.try_wait().ok().flatten();
            }
            finish(session, pid, status.map(ExitStatus::from), sink)
        }
    }
}

fn finish(
    mut session: Session,
    pid: u32,
    exit: Option<ExitStatus>,
    sink: &mut dyn Sink,
) -> Result<Outcome, BpfError> {
    while session.poll(Duration::ZERO, sink) > 0 {}
    let report = session.report()?;
    Ok(Outcome {
        lost_events: report.probes.iter().map(|p| p.lost).sum(),
        report,
        pid: pid as i32,
        exit,
        warnings: Vec::new(),
    })
}

#[cfg(test)]
mod tests;
