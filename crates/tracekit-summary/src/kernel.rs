//! The kernel side: load `bpf/summary.bpf.c`, attach it, and read its maps into typed rows.

use aya::maps::{Array, CgroupArray, HashMap, MapData, PerCpuArray, PerCpuHashMap, PerCpuValues};
use aya::programs::{BtfTracePoint, Iter};
use aya::{Btf, Ebpf, EbpfLoader, Pod};
use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::time::Instant;
use tracekit_core::errors::chain;
use tracekit_core::stats::{LatencyStats, Log2Histogram};

use crate::Error;
use crate::model::{COMPAT_BASE, Dropped, ErrnoCounts, Mode, RawRow, Summary};

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../bpf/obj/summary.bpf.o"
));

/// Must match MAX_SYSCALLS in summary.bpf.c.
const MAX_SYSCALLS: u32 = 1024;
const DROP_REASONS: u32 = 7;
/// Must match HIST_BUCKETS in summary.bpf.c.
const HIST_BUCKETS: usize = 64;

/// Mirrors `struct hist` in summary.bpf.c.
#[repr(C)]
#[derive(Clone, Copy)]
struct KernelHist {
    buckets: [u64; HIST_BUCKETS],
}

/// Mirrors `struct syscall_stats` in summary.bpf.c.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct KernelStats {
    count: u64,
    errors: u64,
    total_ns: u64,
    min_ns: u64,
    max_ns: u64,
    sum_sq_lo: u64,
    sum_sq_hi: u64,
    pad: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct IdKey {
    id: u64,
    nr: u32,
    tgid: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct ErrnoKey {
    id: u64,
    nr: u32,
    err: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Comm {
    name: [u8; 16],
    tgid: u32,
    pad: u32,
}

// SAFETY: all four are repr(C) plain integers/bytes with no padding the kernel could leave
// uninitialised (explicit `pad` fields), matching the C definitions byte for byte.
unsafe impl Pod for KernelStats {}
// SAFETY: as above (a u64 and two u32, no padding).
unsafe impl Pod for IdKey {}
// SAFETY: as above (a u64 and two u32).
unsafe impl Pod for ErrnoKey {}
// SAFETY: as above (16 bytes and two u32, `pad` explicit).
unsafe impl Pod for Comm {}
// SAFETY: as above (an array of u64).
unsafe impl Pod for KernelHist {}

/// Mirrors `struct cpu_call` in summary.bpf.c.
#[repr(C)]
#[derive(Clone, Copy)]
struct CpuCall {
    task: u64,
    ts: u64,
    nr: u32,
    pad: u32,
}

// SAFETY: plain integers, `pad` explicit, as in the C definition.
unsafe impl Pod for CpuCall {}

/// Which tasks are traced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskFilter {
    /// Every task but tracekit.
    All,
    /// The processes given to [`Tracer::trace_tgid`], their threads and descendants.
    Processes,
    /// Only the threads given to [`Tracer::trace_tid`] (not their children).
    Threads,
}

/// What to collect; fixed when the program is loaded. Every filter is applied in the kernel,
/// before anything is stored or timed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// One table for everything, or one per process or thread.
    pub mode: Mode,
    /// Which tasks are traced ([`crate::run`] derives it from the target).
    pub filter: TaskFilter,
    /// Keep a per-errno breakdown of failed calls.
    pub errno: bool,
    /// Capacity of the per-process/thread statistics map (entries of (task, syscall)).
    pub max_entries: u32,
    /// Only these syscall numbers (`None`: all).
    pub syscalls: Option<Vec<u32>>,
    /// Only calls that return an error.
    pub failed: bool,
    /// Time each call; `false` counts calls and errors only, with no clock read at all.
    pub latency: bool,
    /// Keep a log2 latency histogram per syscall (for percentiles and `--hist`).
    pub hist: bool,
    /// Only tasks running as this uid.
    pub uid: Option<u32>,
    /// Only tasks in this cgroup (v2) or below it.
    pub cgroup: Option<std::path::PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            mode: Mode::Total,
            filter: TaskFilter::Processes,
            errno: false,
            max_entries: 65536,
            syscalls: None,
            failed: false,
            latency: true,
            hist: false,
            uid: None,
            cgroup: None,
        }
    }
}

/// A loaded and attached syscall-summary program. Dropping it detaches everything.
pub struct Tracer {
    ebpf: Ebpf,
    btf: Btf,
    options: Options,
    started: Instant,
}

impl Tracer {
    /// Loads the BPF program with `options` and attaches it to the syscall tracepoints.
    pub fn attach(options: &Options) -> Result<Tracer, Error> {
        let load_err = |e: &dyn std::fmt::Display| Error::Load(e.to_string());
        let btf = Btf::from_sys_fs().map_err(|e| load_err(&e))?;
        // Opened first: a missing cgroup is the user's error, not a load failure.
        let cgroup = options.cgroup.as_deref().map(open_cgroup).transpose()?;
        let flag = |on: bool| u32::from(on);
        let globals: [(&str, u32); 11] = [
            ("cfg_mode", options.mode as u32),
            ("cfg_filter", options.filter as u32),
            ("cfg_errno", flag(options.errno)),
            ("cfg_self_tgid", std::process::id()),
            ("cfg_syscalls", flag(options.syscalls.is_some())),
            ("cfg_failed", flag(options.failed)),
            ("cfg_latency", flag(options.latency)),
            ("cfg_hist", flag(options.hist && options.latency)),
            ("cfg_uid", flag(options.uid.is_some())),
            ("cfg_uid_value", options.uid.unwrap_or(0)),
            ("cfg_cgroup", flag(cgroup.is_some())),
        ];
        let mut loader = EbpfLoader::new();
        loader.allow_unsupported_maps().btf(Some(&btf));
        for (name, value) in &globals {
            loader.override_global(name, value, true);
        }
        let mut ebpf = loader
            .map_max_entries("task_stats", options.max_entries.max(1))
            .map_max_entries("task_hists", options.max_entries.max(1))
            .load(OBJECT)
            .map_err(|e| load_err(&chain(&e)))?;
        if let Some(numbers) = &options.syscalls {
            mark_wanted(&mut ebpf, numbers)?;
        }
        if let Some(fd) = &cgroup {
            let map_err = map_error("cgroups");
            let mut map: CgroupArray<&mut MapData> =
                CgroupArray::try_from(ebpf.map_mut("cgroups").expect("map in object"))
                    .map_err(map_err)?;
            map.set(0, fd.as_raw_fd(), 0).map_err(map_err)?;
        }
        // sys_enter last: once it fills a CPU's slot, sched_switch and sys_exit must already
        // be there to move and close the call.
        let mut hooks = vec![("sched_switch", "sched_switch")];
        if options.filter == TaskFilter::Processes {
            hooks.push(("sched_process_fork", "sched_process_fork"));
        }
        if options.mode != Mode::Total {
            hooks.push(("sched_process_exec", "sched_process_exec"));
        }
        hooks.extend([("sys_exit", "sys_exit"), ("sys_enter", "sys_enter")]);
        for (prog, tracepoint) in hooks {
            attach_tp_btf(&mut ebpf, &btf, prog, tracepoint)?;
        }
        Ok(Tracer {
            ebpf,
            btf,
            options: options.clone(),
            started: Instant::now(),
        })
    }

    /// Starts tracing the thread `tid` alone (with [`TaskFilter::Threads`]).
    pub fn trace_tid(&mut self, tid: u32) -> Result<(), Error> {
        let map_err = map_error("traced_tids");
        let mut map: HashMap<&mut MapData, u32, u32> =
            HashMap::try_from(self.ebpf.map_mut("traced_tids").expect("map in object"))
                .map_err(map_err)?;
        map.insert(tid, 1, 0).map_err(map_err)
    }

    /// Starts tracing the process `tgid` (all its threads, and every child it forks later).
    pub fn trace_tgid(&mut self, tgid: u32) -> Result<(), Error> {
        let map_err = map_error("traced_tgids");
        let mut map: HashMap<&mut MapData, u32, u32> =
            HashMap::try_from(self.ebpf.map_mut("traced_tgids").expect("map in object"))
                .map_err(map_err)?;
        map.insert(tgid, 1, 0).map_err(map_err)
    }

    /// A way for a child process to start its own tracing just before it execs (see
    /// [`SelfRegistration::register`]), so that nothing tracekit does between fork and exec
    /// is counted as the command's.
    pub(crate) fn self_registration(&self) -> SelfRegistration {
        let map = self.ebpf.map("traced_tgids").expect("map in object");
        let aya::maps::Map::HashMap(data) = map else {
            unreachable!("traced_tgids is a hash map")
        };
        SelfRegistration {
            map_fd: data.fd().as_fd().as_raw_fd(),
        }
    }

    /// Reads the statistics collected so far (the programs stay attached), with the calls
    /// still in flight.
    pub fn read(&mut self) -> Result<Summary, Error> {
        // A kernel without task iterators only loses this remark, not the summary.
        let in_flight = self.count_in_flight().ok();
        let mut summary = self.read_counts()?;
        summary.in_flight = in_flight.map(|counts| summary.name_counts(counts));
        Ok(summary)
    }

    /// [`Tracer::read`] without the calls in flight (`in_flight` is `None`): no task walk and
    /// no read of the per-syscall in-flight array, for readers that poll often and do not
    /// report them (the exporter).
    pub fn read_counts(&self) -> Result<Summary, Error> {
        let rows = match self.options.mode {
            Mode::Total => self.read_total()?,
            Mode::Process | Mode::Thread | Mode::Cgroup | Mode::ProcessInCgroup => {
                self.read_per_task()?
            }
        };
        let errnos = if self.options.errno {
            self.read_errnos()?
        } else {
            BTreeMap::new()
        };
        let hists = if self.options.hist && self.options.latency {
            self.read_hists()?
        } else {
            BTreeMap::new()
        };
        let comms = if matches!(self.options.mode, Mode::Total | Mode::Cgroup) {
            BTreeMap::new()
        } else {
            self.read_comms()?
        };
        let mut summary = Summary::build(
            self.options.mode,
            rows,
            errnos,
            hists,
            comms,
            self.read_dropped()?,
            self.started.elapsed(),
        );
        summary.latency = self.options.latency;
        Ok(summary)
    }

    /// Runs the task iterator that counts traced tasks still inside a syscall, by number.
    fn count_in_flight(&mut self) -> Result<BTreeMap<u32, u64>, String> {
        let program: &mut Iter = self
            .ebpf
            .program_mut("count_in_flight")
            .expect("program in object")
            .try_into()
            .map_err(|e| chain(&e))?;
        if program.fd().is_err() {
            program.load("task", &self.btf).map_err(|e| chain(&e))?;
        }
        let link = program.attach().map_err(|e| chain(&e))?;
        let link = program.take_link(link).map_err(|e| chain(&e))?;
        let mut file = link.into_file().map_err(|e| chain(&e))?;
        // The iterator runs while its file is read; it prints nothing.
        std::io::Read::read_to_end(&mut file, &mut Vec::new()).map_err(|e| e.to_string())?;
        let mut map: Array<&mut MapData, u64> =
            Array::try_from(self.ebpf.map_mut("in_flight").expect("map in object"))
                .map_err(|e| e.to_string())?;
        let mut counts = BTreeMap::new();
        for nr in 0..MAX_SYSCALLS {
            let n = map.get(&nr, 0).map_err(|e| e.to_string())?;
            if n > 0 {
                counts.insert(nr, n);
                map.set(nr, 0, 0).map_err(|e| e.to_string())?;
            }
        }
        // Calls of tasks running right now are in their CPU's slot, not in a task's storage.
        let slots: PerCpuArray<&MapData, CpuCall> =
            PerCpuArray::try_from(self.ebpf.map("cpu_calls").expect("map in object"))
                .map_err(|e| e.to_string())?;
        for call in slots.get(&0, 0).map_err(|e| e.to_string())?.iter() {
            if call.ts != 0 {
                *counts.entry(call.nr).or_default() += 1;
            }
        }
        Ok(counts)
    }

    /// The map `name` of the object as the typed aya map `M`.
    fn typed_map<'a, M>(&'a self, name: &'static str) -> Result<M, Error>
    where
        M: TryFrom<&'a aya::maps::Map, Error = aya::maps::MapError>,
    {
        M::try_from(self.ebpf.map(name).expect("map in object")).map_err(map_error(name))
    }

    fn read_total(&self) -> Result<Vec<RawRow>, Error> {
        let map_err = map_error("total_stats");
        let map: PerCpuArray<&MapData, KernelStats> = self.typed_map("total_stats")?;
        let mut rows = Vec::new();
        for nr in 0..MAX_SYSCALLS {
            let (stats, errors) = merge_cpus(&map.get(&nr, 0).map_err(map_err)?);
            if stats.count > 0 {
                rows.push(RawRow {
                    id: 0,
                    tgid: 0,
                    nr,
                    stats,
                    errors,
                });
            }
        }
        Ok(rows)
    }

    fn read_per_task(&self) -> Result<Vec<RawRow>, Error> {
        let map_err = map_error("task_stats");
        let map: PerCpuHashMap<&MapData, IdKey, KernelStats> = self.typed_map("task_stats")?;
        let mut rows = Vec::new();
        for entry in map.iter() {
            let (key, values) = entry.map_err(map_err)?;
            let (stats, errors) = merge_cpus(&values);
            rows.push(RawRow {
                id: key.id,
                tgid: key.tgid,
                nr: key.nr,
                stats,
                errors,
            });
        }
        Ok(rows)
    }

    fn read_errnos(&self) -> Result<ErrnoCounts, Error> {
        let map_err = map_error("errno_counts");
        let map: PerCpuHashMap<&MapData, ErrnoKey, u64> = self.typed_map("errno_counts")?;
        let mut out = ErrnoCounts::new();
        for entry in map.iter() {
            let (key, values) = entry.map_err(map_err)?;
            *out.entry((key.id, key.nr))
                .or_default()
                .entry(key.err as i32)
                .or_default() += values.iter().sum::<u64>();
        }
        Ok(out)
    }

    /// The latency histograms, by (task id, syscall number).
    fn read_hists(&self) -> Result<BTreeMap<(u64, u32, u32), Log2Histogram>, Error> {
        let mut out = BTreeMap::new();
        let mut add = |key: (u64, u32, u32), values: &PerCpuValues<KernelHist>| {
            let mut hist = Log2Histogram::default();
            for cpu in values.iter() {
                hist.add_buckets(&cpu.buckets);
            }
            if hist.total() > 0 {
                out.insert(key, hist);
            }
        };
        if self.options.mode == Mode::Total {
            let map_err = map_error("total_hists");
            let map: PerCpuArray<&MapData, KernelHist> = self.typed_map("total_hists")?;
            for nr in 0..MAX_SYSCALLS {
                add((0, 0, nr), &map.get(&nr, 0).map_err(map_err)?);
            }
        } else {
            let map_err = map_error("task_hists");
            let map: PerCpuHashMap<&MapData, IdKey, KernelHist> = self.typed_map("task_hists")?;
            for entry in map.iter() {
                let (key, values) = entry.map_err(map_err)?;
                add((key.id, key.tgid, key.nr), &values);
            }
        }
        Ok(out)
    }

    /// Task names and their process ids, by pid (process mode) or tid (thread mode).
    fn read_comms(&self) -> Result<BTreeMap<u32, (String, u32)>, Error> {
        let map_err = map_error("comms");
        let map: HashMap<&MapData, u32, Comm> = self.typed_map("comms")?;
        let mut out = BTreeMap::new();
        for entry in map.iter() {
            let (id, comm) = entry.map_err(map_err)?;
            let len = comm
                .name
                .iter()
                .position(|&b| b == 0)
                .unwrap_or(comm.name.len());
            out.insert(
                id,
                (
                    String::from_utf8_lossy(&comm.name[..len]).into_owned(),
                    comm.tgid,
                ),
            );
        }
        Ok(out)
    }

    fn read_dropped(&self) -> Result<Dropped, Error> {
        let map_err = map_error("dropped");
        let map: PerCpuArray<&MapData, u64> = self.typed_map("dropped")?;
        let mut counts = [0u64; DROP_REASONS as usize];
        for (reason, slot) in counts.iter_mut().enumerate() {
            *slot = map.get(&(reason as u32), 0).map_err(map_err)?.iter().sum();
        }
        let [start, stats, errno, fork, comm, bad_nr, hist] = counts;
        // Runs the kernel skipped because the program was already running on that CPU.
        let recursion = ["sys_enter", "sys_exit", "sched_switch"]
            .iter()
            .filter_map(|name| self.ebpf.program(name)?.fd().ok())
            .filter_map(|fd| recursion_misses(fd.as_fd()).ok())
            .sum();
        Ok(Dropped {
            start,
            stats,
            errno,
            fork,
            comm,
            bad_nr,
            hist,
            recursion,
        })
    }
}

/// Marks the syscalls to keep in `wanted_syscalls`: each by its number, and on x86-64 by its
/// ia32 number too (the same name in the i386 table), so 32-bit tasks are filtered alike.
fn mark_wanted(ebpf: &mut Ebpf, numbers: &[u32]) -> Result<(), Error> {
    use tracekit_core::syscalls::Arch;
    let map_err = map_error("wanted_syscalls");
    let mut map: Array<&mut MapData, u32> =
        Array::try_from(ebpf.map_mut("wanted_syscalls").expect("map in object"))
            .map_err(map_err)?;
    let compat = |nr: u32| {
        let name = Arch::host().name(nr)?;
        (Arch::host() == Arch::X86_64)
            .then(|| Arch::I386.number(name))
            .flatten()
            .map(|n| COMPAT_BASE + n)
    };
    for &nr in numbers {
        for index in [Some(nr), compat(nr)].into_iter().flatten() {
            if index < MAX_SYSCALLS {
                map.set(index, 1, 0).map_err(map_err)?;
            }
        }
    }
    Ok(())
}

/// Opens a cgroup v2 directory for the cgroup filter.
fn open_cgroup(path: &std::path::Path) -> Result<std::fs::File, Error> {
    let bad = |reason: String| Error::Cgroup {
        path: path.to_path_buf(),
        reason,
    };
    if !path.is_dir() {
        return Err(bad("no such cgroup directory".into()));
    }
    if !path.join("cgroup.procs").exists() {
        return Err(bad(
            "not a cgroup v2 directory (it has no cgroup.procs)".into()
        ));
    }
    std::fs::File::open(path).map_err(|e| bad(e.to_string()))
}

/// Turns an aya map error into the summary's, naming the map.
fn map_error(map: &'static str) -> impl Fn(aya::maps::MapError) -> Error + Copy {
    move |e| Error::Map {
        map,
        reason: e.to_string(),
    }
}

/// Adds the calling process to the traced set with one raw `bpf(BPF_MAP_UPDATE_ELEM)` call,
/// which is async-signal-safe and so may run between fork and exec.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SelfRegistration {
    map_fd: RawFd,
}

/// The map-element member of `union bpf_attr` (linux/bpf.h): fd, then 8-byte aligned
/// key and value pointers and the flags.
#[repr(C)]
struct MapElemAttr {
    map_fd: u32,
    pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

impl SelfRegistration {
    /// Registers the calling process. Only async-signal-safe calls: usable in `pre_exec`.
    pub(crate) fn register(&self) -> std::io::Result<()> {
        // SAFETY: getpid has no preconditions.
        let tgid = unsafe { libc::getpid() } as u32;
        let one: u32 = 1;
        let attr = MapElemAttr {
            map_fd: self.map_fd as u32,
            pad: 0,
            key: &tgid as *const u32 as u64,
            value: &one as *const u32 as u64,
            flags: 0, // BPF_ANY
        };
        // SAFETY: attr points to live key and value of the map's key and value sizes (u32
        // each); the kernel reads size_of::<MapElemAttr>() bytes of attr and writes nothing.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                2, /* BPF_MAP_UPDATE_ELEM */
                &attr as *const MapElemAttr,
                size_of::<MapElemAttr>(),
            )
        };
        if rc < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

/// The kernel's count of runs of a program it skipped because the program was already running
/// on that CPU (`recursion_misses` of `bpf_prog_info`; aya 0.14 does not expose the field).
fn recursion_misses(fd: std::os::fd::BorrowedFd<'_>) -> std::io::Result<u64> {
    use aya_obj::generated::bpf_prog_info;
    // SAFETY: bpf_prog_info is plain integers and pointers; all-zero is valid and asks the
    // kernel for no variable-length arrays.
    let mut info: bpf_prog_info = unsafe { std::mem::zeroed() };
    #[repr(C)]
    struct InfoAttr {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    let attr = InfoAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: size_of::<bpf_prog_info>() as u32,
        info: &mut info as *mut bpf_prog_info as u64,
    };
    // SAFETY: the kernel writes at most info_len bytes into `info`, which lives for the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            15, /* BPF_OBJ_GET_INFO_BY_FD */
            &attr as *const InfoAttr,
            size_of::<InfoAttr>(),
        )
    };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(info.recursion_misses)
    }
}

fn attach_tp_btf(
    ebpf: &mut Ebpf,
    btf: &Btf,
    prog: &'static str,
    tracepoint: &'static str,
) -> Result<(), Error> {
    let err = |e: &dyn std::fmt::Display| Error::Attach {
        tracepoint,
        reason: e.to_string(),
    };
    let program: &mut BtfTracePoint = ebpf
        .program_mut(prog)
        .expect("program in object")
        .try_into()
        .map_err(|e| err(&e))?;
    program.load(tracepoint, btf).map_err(|e| err(&chain(&e)))?;
    program.attach().map_err(|e| err(&chain(&e)))?;
    Ok(())
}

/// Loads and attaches the empty `sys_enter`/`sys_exit` pair, the cost floor of any in-kernel
/// syscall tracer, or with `clock` the pair that only reads the clock (`bpf_ktime_get_ns`),
/// the floor of any tracer that measures latency. For benchmarks: keep the returned value
/// alive while measuring.
pub fn attach_floor(clock: bool) -> Result<Ebpf, Error> {
    let btf = Btf::from_sys_fs().map_err(|e| Error::Load(e.to_string()))?;
    let mut ebpf = EbpfLoader::new()
        .allow_unsupported_maps()
        .load(OBJECT)
        .map_err(|e| Error::Load(chain(&e)))?;
    let (enter, exit) = if clock {
        ("floor_clock_enter", "floor_clock_exit")
    } else {
        ("floor_enter", "floor_exit")
    };
    attach_tp_btf(&mut ebpf, &btf, enter, "sys_enter")?;
    attach_tp_btf(&mut ebpf, &btf, exit, "sys_exit")?;
    Ok(ebpf)
}

fn merge_cpus(values: &PerCpuValues<KernelStats>) -> (LatencyStats, u64) {
    let mut stats = LatencyStats::new();
    let mut errors = 0;
    for v in values.iter().filter(|v| v.count > 0) {
        stats.merge(&LatencyStats {
            count: v.count,
            total: v.total_ns,
            min: v.min_ns,
            max: v.max_ns,
            sum_sq: (u128::from(v.sum_sq_hi) << 64) | u128::from(v.sum_sq_lo),
        });
        errors += v.errors;
    }
    (stats, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recursion_misses_are_read_from_the_kernel() {
        let tracer = Tracer::attach(&Options::default()).expect("root and BTF");
        let fd = tracer.ebpf.program("sys_enter").unwrap().fd().unwrap();
        // No syscall tracepoint recurses into itself: the kernel answers, with zero.
        assert_eq!(recursion_misses(fd.as_fd()).unwrap(), 0);
    }
}
