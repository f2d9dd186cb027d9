//! `tracekit exporter`: tracekit's in-kernel syscall statistics as Prometheus metrics.
//!
//! The kernel side is `trace summary`'s (per-CPU statistics, log2 latency histograms, errno
//! counts). Nothing runs on a timer: each scrape reads the cumulative maps, so counters are
//! monotonic and exact, and a scrape costs one read of the maps. Metrics, in base units:
//!
//! - `tracekit_syscall_duration_seconds` histogram (`_bucket{le}`, `_sum`, `_count`: the count
//!   is the number of calls), labelled by `syscall` and the grouping of [`By`];
//! - `tracekit_syscall_errors_total{syscall,errno}`;
//! - with `--probe`: `tracekit_probe_hits_total{probe}`, `tracekit_probe_missed_total{probe}`
//!   and, for return probes, the `tracekit_probe_duration_seconds{probe}` histogram;
//! - `tracekit_dropped_total{cause}` (what the kernel side could not record),
//!   `tracekit_series_dropped_total` (series folded into `other` by the cap),
//!   `tracekit_scrape_duration_seconds` (of the previous scrape) and `tracekit_build_info`.
//!
//! Data flows one way: [`tracekit_summary::Tracer`] (kernel maps) → [`Snapshot`] (series) →
//! Prometheus text or OpenMetrics (by the request's `Accept` header).

mod http;
mod metrics;

pub use http::{Exporter, serve};
pub use metrics::{By, Limits, SeriesBook, Snapshot};

use std::net::SocketAddr;
use thiserror::Error;

/// What to export and where.
#[derive(Debug, Clone)]
pub struct Options {
    /// The address to listen on (default 127.0.0.1:9464; all interfaces only when asked).
    pub listen: SocketAddr,
    /// The labels that split the series besides `syscall`.
    pub by: By,
    /// The kernel side: filters (syscalls, failures, uid, cgroup). Mode, histograms and errno
    /// counts are set by the exporter.
    pub summary: tracekit_summary::Options,
    /// Processes to trace (and their children); empty: the whole system.
    pub pids: Vec<u32>,
    /// The most (group, syscall) series exported; the rest are folded into `other`.
    pub max_series: usize,
    /// Series whose calls have not changed for this long (an exited process) are no longer
    /// exported, and make room under the cap.
    pub expire: Option<std::time::Duration>,
    /// User probes (`uprobe:BINARY:FUNC`, `uretprobe:...`, as `tracekit probe` takes them),
    /// exported as `tracekit_probe_hits_total` and, for return probes,
    /// `tracekit_probe_duration_seconds`.
    pub probes: Vec<String>,
}

/// Why the exporter cannot run.
#[derive(Debug, Error)]
pub enum Error {
    /// The address cannot be listened on.
    #[error("cannot listen on {addr}: {reason}\n  hint: {hint}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The system's answer.
        reason: String,
        /// What to do.
        hint: &'static str,
    },
    /// The kernel side could not be loaded or read.
    #[error(transparent)]
    Summary(#[from] tracekit_summary::Error),
    /// A probe could not be parsed, placed or attached.
    #[error("--probe: {0}")]
    Probe(String),
}
