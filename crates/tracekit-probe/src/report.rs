//! What the engines produce: per-probe hits and latencies.

use tracekit_core::stats::{LatencyStats, Log2Histogram};

use crate::spec::ProbeKind;

/// The outcome of one probe over a run, from either engine.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeResult {
    /// The spec as the user wrote it (or as expanded from the short form).
    pub spec: String,
    /// Entry, return or kernel probe.
    pub kind: ProbeKind,
    /// Times the probe fired.
    pub hits: u64,
    /// Times it could not be handled (return without a recorded entry, stack too deep, map
    /// full), never silently.
    pub missed: u64,
    /// Streamed (`--print`) records of this probe lost because the ring buffer was full; the
    /// hit counts and latencies are complete regardless.
    pub lost: u64,
    /// Entry-to-return latency in ns, for return probes.
    pub latency: Option<LatencyStats>,
    /// Log2 histogram of the same latencies.
    pub histogram: Option<Log2Histogram>,
}

/// The results of every probe of a run, and which engine produced them.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeReport {
    /// `"bpf"` or `"ptrace"`.
    pub engine: String,
    /// One entry per probe, in the order the specs were given.
    pub probes: Vec<ProbeResult>,
}
