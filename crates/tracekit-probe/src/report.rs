//! What the engines produce: per-probe hits and latencies, per thread when asked, and the
//! difference between two reads of a run (an interval).

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
    /// Per thread, by thread id, when the engine was asked to count per thread (empty
    /// otherwise): their hits add up to `hits` minus `unattributed`.
    pub threads: Vec<ThreadResult>,
    /// Hits the engine could not attribute to a thread (the BPF engine's per-thread map
    /// was full); always 0 without per-thread counting.
    pub unattributed: u64,
}

/// One thread's share of a probe's hits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThreadResult {
    /// The thread id.
    pub tid: i32,
    /// Its hits.
    pub hits: u64,
    /// Its returns whose entry was not seen.
    pub missed: u64,
    /// Its entry-to-return latencies, for return probes.
    pub latency: Option<LatencyStats>,
}

/// The results of every probe of a run, and which engine produced them.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeReport {
    /// `"bpf"` or `"ptrace"`.
    pub engine: String,
    /// One entry per probe, in the order the specs were given.
    pub probes: Vec<ProbeResult>,
    /// Whether the engine counted per thread ([`ProbeResult::threads`]).
    pub by_thread: bool,
}

impl ProbeReport {
    /// What happened after `earlier` (an earlier read of the same run; `None`: since the
    /// start). Hits, counts, sums and histogram buckets only grow, so their differences are
    /// exact and the intervals of a run add up to its total; min and max become 0 (unknown
    /// for an interval).
    pub fn since(&self, earlier: Option<&ProbeReport>) -> ProbeReport {
        let mut delta = self.clone();
        for (i, p) in delta.probes.iter_mut().enumerate() {
            p.subtract(earlier.and_then(|e| e.probes.get(i)));
        }
        delta
    }
}

impl ProbeResult {
    /// Adds the counts of another site of the same (entry-only, USDT) probe.
    fn add(&mut self, other: ProbeResult) {
        self.hits += other.hits;
        self.missed += other.missed;
        self.lost += other.lost;
        self.unattributed += other.unattributed;
        for t in other.threads {
            match self.threads.iter_mut().find(|mine| mine.tid == t.tid) {
                Some(mine) => {
                    mine.hits += t.hits;
                    mine.missed += t.missed;
                }
                None => self.threads.push(t),
            }
        }
        self.threads.sort_by_key(|t| t.tid);
    }

    fn subtract(&mut self, old: Option<&ProbeResult>) {
        if let Some(l) = &mut self.latency {
            l.min = 0;
            l.max = 0;
        }
        for t in &mut self.threads {
            if let Some(l) = &mut t.latency {
                l.min = 0;
                l.max = 0;
            }
        }
        let Some(old) = old else {
            return;
        };
        self.hits = self.hits.saturating_sub(old.hits);
        self.missed = self.missed.saturating_sub(old.missed);
        self.lost = self.lost.saturating_sub(old.lost);
        self.unattributed = self.unattributed.saturating_sub(old.unattributed);
        subtract_latency(&mut self.latency, old.latency.as_ref());
        if let (Some(h), Some(o)) = (&mut self.histogram, &old.histogram) {
            for (b, n) in h.buckets.iter_mut().zip(&o.buckets) {
                *b = b.saturating_sub(*n);
            }
        }
        for t in &mut self.threads {
            if let Some(o) = old.threads.iter().find(|o| o.tid == t.tid) {
                t.hits = t.hits.saturating_sub(o.hits);
                t.missed = t.missed.saturating_sub(o.missed);
                subtract_latency(&mut t.latency, o.latency.as_ref());
            }
        }
        self.threads.retain(|t| t.hits > 0 || t.missed > 0);
    }
}

/// Numbers and times the interval reports of a run from its cumulative reads.
#[derive(Debug)]
pub struct Intervals {
    previous: Option<ProbeReport>,
    index: u32,
    since: std::time::Instant,
}

/// One interval report.
#[derive(Debug, Clone)]
pub struct Interval {
    /// 1 for the first interval of the run.
    pub index: u32,
    /// Its length in seconds (the last one of a run is usually shorter).
    pub seconds: f64,
    /// What happened in it ([`ProbeReport::since`]).
    pub report: ProbeReport,
}

impl Intervals {
    /// Starts timing the first interval now.
    pub fn start() -> Intervals {
        Intervals {
            previous: None,
            index: 0,
            since: std::time::Instant::now(),
        }
    }

    /// The interval that ends with the cumulative read `so_far`.
    pub fn next(&mut self, so_far: &ProbeReport) -> Interval {
        let now = std::time::Instant::now();
        self.index += 1;
        let interval = Interval {
            index: self.index,
            seconds: now.duration_since(self.since).as_secs_f64(),
            report: so_far.since(self.previous.as_ref()),
        };
        self.previous = Some(so_far.clone());
        self.since = now;
        interval
    }
}

fn subtract_latency(new: &mut Option<LatencyStats>, old: Option<&LatencyStats>) {
    if let (Some(l), Some(o)) = (new, old) {
        // Saturating: the BPF engine reads per-CPU values while they change.
        l.count = l.count.saturating_sub(o.count);
        l.total = l.total.saturating_sub(o.total);
        l.sum_sq = l.sum_sq.saturating_sub(o.sum_sq);
    }
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
                Some(first) if further && first.spec == row.spec => first.add(row),
                _ => self.probes.push(row),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(hits: u64, threads: &[(i32, u64)], latencies: &[u64]) -> ProbeResult {
        let latency = LatencyStats::from_values(latencies.iter().copied());
        let mut histogram = Log2Histogram::default();
        latencies.iter().for_each(|&v| histogram.record(v));
        ProbeResult {
            spec: "uretprobe:x:f".into(),
            kind: ProbeKind::Uretprobe,
            hits,
            missed: 0,
            lost: 0,
            latency: Some(latency),
            histogram: Some(histogram),
            threads: threads
                .iter()
                .map(|&(tid, hits)| ThreadResult {
                    tid,
                    hits,
                    missed: 0,
                    latency: None,
                })
                .collect(),
            unattributed: 0,
        }
    }

    #[test]
    fn an_interval_is_the_difference_of_two_reads() {
        let report = |r| ProbeReport {
            engine: "bpf".into(),
            probes: vec![r],
            by_thread: true,
        };
        let first = report(result(3, &[(7, 3)], &[10, 20, 30]));
        let second = report(result(5, &[(7, 3), (8, 2)], &[10, 20, 30, 1000, 3000]));
        let delta = second.since(Some(&first));
        let p = &delta.probes[0];
        assert_eq!(p.hits, 2);
        let l = p.latency.unwrap();
        assert_eq!((l.count, l.total, l.min, l.max), (2, 4000, 0, 0));
        assert_eq!(l.sum_sq, 1000 * 1000 + 3000 * 3000);
        assert_eq!(p.histogram.as_ref().unwrap().total(), 2);
        assert_eq!(p.threads.len(), 1, "thread 7 had nothing new");
        assert_eq!((p.threads[0].tid, p.threads[0].hits), (8, 2));
        // The first interval is the first read itself.
        assert_eq!(first.since(None).probes[0].hits, 3);
    }
}
