//! `trace summary`: per-syscall count, errors and latency statistics, aggregated inside the
//! kernel by BPF.
//!
//! Design (and why it differs from `perf trace -s --bpf-summary`):
//! - `tp_btf/sys_enter` stores a timestamp in the task's local storage, so there is no
//!   fixed-size per-thread map that silently drops threads;
//! - `tp_btf/sys_exit` folds the latency into **per-CPU** statistics: no entry is shared between
//!   CPUs, so there are no atomics and no min/max races;
//! - the statistics keep a 128-bit sum of squares, so the standard deviation is exact;
//! - untraced tasks are filtered at `sys_enter` before any storage is touched;
//! - anything that cannot be recorded (a map full) is counted and reported as `dropped`.
//!
//! Data flows one way: [`Tracer`] (kernel maps) → [`Summary`] (typed statistics) →
//! [`render`] (table or JSON).
//!
//! ```no_run
//! use tracekit_summary::{Mode, Options, Tracer};
//! let mut tracer = Tracer::attach(&Options { mode: Mode::Total, ..Options::default() })?;
//! tracer.trace_tgid(1234)?;
//! std::thread::sleep(std::time::Duration::from_secs(1));
//! let summary = tracer.read()?;
//! print!("{}", tracekit_summary::render::table(&summary, Default::default(), Default::default()));
//! # Ok::<(), tracekit_summary::Error>(())
//! ```
#![deny(missing_docs)]

pub mod diff;
mod kernel;
mod model;
pub mod render;
mod session;
pub mod top;

pub use kernel::{Options, TaskFilter, Tracer, attach_floor};
pub use model::{Dropped, Group, Mode, SortKey, Summary, SyscallRow};
pub use session::{Interval, Outcome, Target, run, run_with_intervals};

use thiserror::Error;

/// Why a summary could not be taken. Each message says what to do about it.
#[derive(Debug, Error)]
pub enum Error {
    /// The BPF object could not be loaded (verifier, missing BTF, no privilege).
    #[error(
        "cannot load the syscall-summary BPF program: {0}\n  hint: run as root (or with CAP_BPF and CAP_PERFMON) on a kernel with BTF (/sys/kernel/btf/vmlinux)"
    )]
    Load(String),
    /// A program could not be attached to its tracepoint.
    #[error(
        "cannot attach to tracepoint {tracepoint}: {reason}\n  hint: this needs tp_btf (BTF-enabled raw tracepoints, Linux 5.5+)"
    )]
    Attach {
        /// The tracepoint name.
        tracepoint: &'static str,
        /// The kernel's answer.
        reason: String,
    },
    /// A map could not be read or written.
    #[error("BPF map {map}: {reason}")]
    Map {
        /// The map name.
        map: &'static str,
        /// The kernel's answer.
        reason: String,
    },
    /// The cgroup to filter on cannot be used.
    #[error(
        "cgroup {path}: {reason}\n  hint: give a directory of the cgroup v2 hierarchy, e.g. /sys/fs/cgroup/system.slice"
    )]
    Cgroup {
        /// The path given.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// `trace top` was asked for without a terminal.
    #[error(
        "trace top needs a terminal on standard output\n  hint: for reports to a pipe or file, use `tracekit trace summary -i SECS` (with --json for one JSON document per line)"
    )]
    NotATerminal,
    /// A report could not be written during the run (an interval report).
    #[error("cannot write the report: {0}")]
    Output(String),
    /// A pid given with `-p` does not exist.
    #[error("no such process: {0}\n  hint: check the pid with `ps -p {0}`")]
    NoSuchProcess(u32),
    /// The command is not on `$PATH` (or the path does not exist).
    #[error("command not found: '{0}' (check the name and $PATH)")]
    CommandNotFound(String),
    /// The command exists but cannot be executed.
    #[error("cannot run '{command}': it {reason}")]
    NotExecutable {
        /// The program name.
        command: String,
        /// Why not.
        reason: String,
    },
    /// The command could not be started.
    #[error("cannot run '{command}': {reason}")]
    Spawn {
        /// The program name.
        command: String,
        /// Why not.
        reason: String,
    },
    /// Two reports could not be compared (`trace diff`).
    #[error(transparent)]
    Diff(#[from] diff::DiffError),
}
