//! Typed statistics built from the kernel maps: what a report is made of.

use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;
use tracekit_core::stats::{LatencyStats, Log2Histogram};
use tracekit_core::syscalls::Arch;

/// How statistics are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// One table for every traced task.
    Total = 0,
    /// One table per process (tgid).
    Process = 1,
    /// One table per thread (tid).
    Thread = 2,
    /// One table per cgroup (v2), named by its path.
    Cgroup = 3,
    /// One table per process, each with its cgroup's path (for views that regroup either
    /// way, like `trace top`).
    #[cfg_attr(feature = "clap", value(skip))]
    ProcessInCgroup = 4,
}

/// The column a table is sorted by (descending, except by name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum SortKey {
    /// Total time spent in the syscall.
    #[default]
    Total,
    /// Number of calls.
    Calls,
    /// Number of failed calls.
    Errors,
    /// Mean latency.
    Avg,
    /// Largest latency.
    Max,
    /// Syscall name, alphabetically.
    Name,
}

/// Events the kernel side could not record, by cause. All zero in a complete summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Dropped {
    /// Syscalls not timed because the task's storage could not be allocated.
    pub start: u64,
    /// Syscalls not recorded because the per-process/thread statistics map was full.
    pub stats: u64,
    /// Errors not broken down by errno because that map was full.
    pub errno: u64,
    /// Forked children not followed because the traced-process map was full.
    pub fork: u64,
    /// Tasks whose name could not be remembered.
    pub comm: u64,
    /// Calls with a syscall number beyond the table (they fail with ENOSYS): counted, not itemised.
    pub bad_nr: u64,
    /// Latencies not put in a histogram because the per-task histogram map was full.
    pub hist: u64,
    /// Program runs the kernel skipped because the program was already running on the CPU.
    pub recursion: u64,
}

impl Dropped {
    /// Total of every cause.
    pub fn total(&self) -> u64 {
        self.start
            + self.stats
            + self.errno
            + self.fork
            + self.comm
            + self.bad_nr
            + self.hist
            + self.recursion
    }
}

impl Dropped {
    fn minus(&self, o: &Dropped) -> Dropped {
        Dropped {
            start: self.start.saturating_sub(o.start),
            stats: self.stats.saturating_sub(o.stats),
            errno: self.errno.saturating_sub(o.errno),
            fork: self.fork.saturating_sub(o.fork),
            comm: self.comm.saturating_sub(o.comm),
            bad_nr: self.bad_nr.saturating_sub(o.bad_nr),
            hist: self.hist.saturating_sub(o.hist),
            recursion: self.recursion.saturating_sub(o.recursion),
        }
    }
}

impl SyscallRow {
    /// Leaves what happened after `earlier`; min and max become 0 (unknown per interval).
    fn subtract(&mut self, earlier: Option<&SyscallRow>) {
        self.stats.min = 0;
        self.stats.max = 0;
        let Some(old) = earlier else {
            return;
        };
        // Saturating: the kernel's per-CPU entries are read while they change, so a read can
        // catch a 128-bit sum of squares between its two halves.
        self.stats.count = self.stats.count.saturating_sub(old.stats.count);
        self.stats.total = self.stats.total.saturating_sub(old.stats.total);
        self.stats.sum_sq = self.stats.sum_sq.saturating_sub(old.stats.sum_sq);
        self.errors = self.errors.saturating_sub(old.errors);
        for (err, n) in &old.errnos {
            if let Some(count) = self.errnos.get_mut(err) {
                *count = count.saturating_sub(*n);
            }
        }
        self.errnos.retain(|_, n| *n > 0);
        if let (Some(hist), Some(old)) = (&mut self.hist, &old.hist) {
            for (bucket, n) in hist.buckets.iter_mut().zip(&old.buckets) {
                *bucket = bucket.saturating_sub(*n);
            }
        }
    }
}

/// One syscall's statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct SyscallRow {
    /// Syscall number on this architecture.
    pub nr: u32,
    /// Syscall name.
    pub name: String,
    /// Number of calls and their latencies in ns.
    pub stats: LatencyStats,
    /// Number of calls that returned an error.
    pub errors: u64,
    /// Failed calls by errno (positive values), when the breakdown was asked for.
    pub errnos: BTreeMap<i32, u64>,
    /// Latencies in ns by power of two, when histograms were asked for.
    pub hist: Option<Log2Histogram>,
}

/// The statistics of one process or thread (or of everything, in total mode).
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// pid (process mode) or tid (thread mode); `None` in total mode.
    pub id: Option<u32>,
    /// The process id (tgid): the same as `id` in process mode, the thread's process in
    /// thread mode, `None` in total mode or when unknown.
    pub pid: Option<u32>,
    /// The task's name (empty in total mode); in cgroup mode, the cgroup's path below the
    /// cgroup v2 mount (`/system.slice/ssh.service`), or `cgroup <id>` if it is gone.
    pub comm: String,
    /// One row per syscall seen, unsorted.
    pub syscalls: Vec<SyscallRow>,
    /// The cgroup's path, in [`Mode::ProcessInCgroup`].
    pub cgroup: Option<String>,
    /// The kernel's key of the group: pid, tid, cgroup id, or 0 in total mode, and the pid in
    /// [`Mode::ProcessInCgroup`]. Stable across reads, so interval reports match groups by it.
    pub key: (u64, u32),
}

impl Group {
    /// The row of the syscall called `name`, if it was seen.
    pub fn syscall(&self, name: &str) -> Option<&SyscallRow> {
        self.syscalls.iter().find(|r| r.name == name)
    }

    /// Number of events (calls) in the group.
    pub fn events(&self) -> u64 {
        self.syscalls.iter().map(|r| r.stats.count).sum()
    }

    /// Sorts the rows by `key`.
    pub fn sort(&mut self, key: SortKey) {
        let by = |r: &SyscallRow| -> f64 {
            match key {
                SortKey::Total => r.stats.total as f64,
                SortKey::Calls => r.stats.count as f64,
                SortKey::Errors => r.errors as f64,
                SortKey::Avg => r.stats.mean(),
                SortKey::Max => r.stats.max as f64,
                SortKey::Name => 0.0,
            }
        };
        if key == SortKey::Name {
            self.syscalls.sort_by(|a, b| a.name.cmp(&b.name));
        } else {
            self.syscalls
                .sort_by(|a, b| by(b).total_cmp(&by(a)).then_with(|| a.name.cmp(&b.name)));
        }
    }
}

/// A complete summary: every group, what was dropped, how long it ran.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// The grouping.
    pub mode: Mode,
    /// Groups in pid/tid order (a single group in total mode).
    pub groups: Vec<Group>,
    /// What could not be recorded.
    pub dropped: Dropped,
    /// Syscalls still in progress when the summary was read (no exit yet, so not in the
    /// statistics), by name; `None` if the kernel could not count them.
    pub in_flight: Option<BTreeMap<String, u64>>,
    /// Time from attach to read (for an interval: the interval's length).
    pub elapsed: Duration,
    /// For an interval report: its number, from 1. Its rows hold the calls of the interval
    /// only; min and max are not known per interval and are 0.
    pub interval: Option<u32>,
    /// Whether calls were timed (`false`: counts and errors only).
    pub latency: bool,
}

/// Failed calls per (task id, syscall number), by errno, as read from the kernel.
pub(crate) type ErrnoCounts = BTreeMap<(u64, u32), BTreeMap<i32, u64>>;

/// One (task, syscall) entry as read from the kernel, before naming and grouping.
pub(crate) struct RawRow {
    pub id: u64,
    /// The process, in [`Mode::ProcessInCgroup`] (where `id` is the cgroup); else 0.
    pub tgid: u32,
    pub nr: u32,
    pub stats: LatencyStats,
    pub errors: u64,
}

/// The path of every cgroup v2 directory (below the mount point), by cgroup id: on cgroup v2
/// a cgroup's id is its directory's inode number.
fn cgroup_paths() -> BTreeMap<u64, String> {
    use std::os::unix::fs::MetadataExt;
    let mut out = BTreeMap::new();
    let Some(root) = tracekit_core::process::cgroup2_mount() else {
        return out;
    };
    let mut pending = vec![root.clone()];
    while let Some(dir) = pending.pop() {
        if let Ok(meta) = std::fs::metadata(&dir) {
            let path = dir.strip_prefix(&root).unwrap_or(&dir);
            out.insert(meta.ino(), format!("/{}", path.display()));
        }
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        pending.extend(
            entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path()),
        );
    }
    out
}

/// Where the kernel side keeps the syscalls of 32-bit (ia32) tasks: at `COMPAT_BASE + nr`
/// (COMPAT_BASE in summary.bpf.c).
pub(crate) const COMPAT_BASE: u32 = 512;

/// The name of a syscall as the kernel side numbers them: ia32 calls are named from the
/// i386 table and marked.
pub(crate) fn syscall_name(index: u32) -> String {
    let host = Arch::host();
    if host == Arch::X86_64 && index >= COMPAT_BASE {
        let nr = index - COMPAT_BASE;
        return format!("{} (ia32)", Arch::I386.display_name(nr));
    }
    host.display_name(index)
}

impl Summary {
    pub(crate) fn build(
        mode: Mode,
        rows: Vec<RawRow>,
        mut errnos: ErrnoCounts,
        mut hists: BTreeMap<(u64, u32, u32), Log2Histogram>,
        comms: BTreeMap<u32, (String, u32)>,
        dropped: Dropped,
        elapsed: Duration,
    ) -> Summary {
        let mut groups: BTreeMap<(u64, u32), Group> = BTreeMap::new();
        let cgroups = if matches!(mode, Mode::Cgroup | Mode::ProcessInCgroup) {
            cgroup_paths()
        } else {
            BTreeMap::new()
        };
        for row in rows {
            let key = (row.id, row.tgid);
            // In ProcessInCgroup mode errors are keyed by the process alone.
            let errno_key = if mode == Mode::ProcessInCgroup {
                u64::from(row.tgid)
            } else {
                row.id
            };
            let path = || {
                cgroups
                    .get(&row.id)
                    .cloned()
                    .unwrap_or_else(|| format!("cgroup {}", row.id))
            };
            let group = groups.entry(key).or_insert_with(|| {
                if mode == Mode::ProcessInCgroup {
                    let (comm, _) = comms.get(&row.tgid).cloned().unwrap_or_default();
                    return Group {
                        id: Some(row.tgid),
                        pid: Some(row.tgid),
                        comm,
                        syscalls: Vec::new(),
                        cgroup: Some(path()),
                        key,
                    };
                }
                if mode == Mode::Cgroup {
                    return Group {
                        id: None,
                        pid: None,
                        comm: path(),
                        syscalls: Vec::new(),
                        cgroup: None,
                        key,
                    };
                }
                let id = row.id as u32;
                let (comm, pid) = comms
                    .get(&id)
                    .cloned()
                    .map_or((String::new(), None), |(c, p)| (c, Some(p)));
                Group {
                    id: (mode != Mode::Total).then_some(id),
                    pid,
                    comm,
                    syscalls: Vec::new(),
                    cgroup: None,
                    key,
                }
            });
            group.syscalls.push(SyscallRow {
                nr: row.nr,
                name: syscall_name(row.nr),
                stats: row.stats,
                errors: row.errors,
                errnos: errnos.remove(&(errno_key, row.nr)).unwrap_or_default(),
                hist: hists.remove(&(row.id, row.tgid, row.nr)),
            });
        }
        let mut groups: Vec<Group> = groups.into_values().collect();
        if mode == Mode::Total && groups.is_empty() {
            groups.push(Group {
                id: None,
                pid: None,
                comm: String::new(),
                syscalls: Vec::new(),
                cgroup: None,
                key: (0, 0),
            });
        }
        Summary {
            mode,
            groups,
            dropped,
            elapsed,
            in_flight: None,
            interval: None,
            latency: true,
        }
    }

    /// What happened since `earlier` (a read of the same tracer; `None`: since the start), as
    /// interval report number `index`. Counts, totals, sums of squares, errnos and
    /// histograms are cumulative in the kernel, so their differences are exact.
    pub fn since(&self, earlier: Option<&Summary>, index: u32) -> Summary {
        let mut delta = self.clone();
        delta.interval = Some(index);
        delta.elapsed = self
            .elapsed
            .saturating_sub(earlier.map_or(Duration::ZERO, |e| e.elapsed));
        if let Some(earlier) = earlier {
            delta.dropped = self.dropped.minus(&earlier.dropped);
        }
        for group in &mut delta.groups {
            let before = earlier.and_then(|e| e.groups.iter().find(|g| g.key == group.key));
            for row in &mut group.syscalls {
                let old = before.and_then(|g| g.syscalls.iter().find(|r| r.nr == row.nr));
                row.subtract(old);
            }
            group.syscalls.retain(|r| r.stats.count > 0);
        }
        if delta.mode != Mode::Total {
            delta.groups.retain(|g| !g.syscalls.is_empty());
        }
        delta
    }

    pub(crate) fn name_counts(&self, counts: BTreeMap<u32, u64>) -> BTreeMap<String, u64> {
        counts
            .into_iter()
            .map(|(nr, n)| (syscall_name(nr), n))
            .collect()
    }

    /// The single group of a total-mode summary (the first group otherwise).
    pub fn total(&self) -> &Group {
        &self.groups[0]
    }

    /// The group of process/thread `id`.
    pub fn group(&self, id: u32) -> Option<&Group> {
        self.groups.iter().find(|g| g.id == Some(id))
    }

    /// Sorts every group's rows.
    pub fn sort(&mut self, key: SortKey) {
        self.groups.iter_mut().for_each(|g| g.sort(key));
    }
}
