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

impl ProbeReport {
    /// Folds the rows of a USDT probe's further sites into its first site's row (the engines
    /// report one row per resolved probe, in the order of `probes`, and a USDT probe is one
    /// resolved probe per site).
    pub fn fold_sites(&mut self, probes: &[crate::symbols::ResolvedProbe]) {
        if self.probes.len() != probes.len() {
            return;
        }
        let rows = std::mem::take(&mut self.probes);
        for (row, p) in rows.into_iter().zip(probes) {
            let further = p.usdt.as_ref().is_some_and(|u| u.site > 0);
            match self.probes.last_mut() {
                Some(first) if further && first.spec == row.spec => {
                    first.hits += row.hits;
                    first.missed += row.missed;
                    first.lost += row.lost;
                }
                _ => self.probes.push(row),
            }
        }
    }
}
