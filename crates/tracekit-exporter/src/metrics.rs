//! A summary read at scrape time, turned into series and encoded with `prometheus-client`.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use tracekit_core::stats::Log2Histogram;
use tracekit_summary::{Mode, Summary};

/// The labels that split the series besides `syscall`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    /// No other label: one series per syscall.
    None,
    /// `comm`: processes added up by name.
    Comm,
    /// `cgroup`: the cgroup v2 path.
    Cgroup,
    /// `pid` and `comm`.
    Process,
}

impl By {
    /// The summary mode whose groups this grouping is made from.
    pub fn mode(self) -> Mode {
        match self {
            By::None => Mode::Total,
            By::Comm | By::Process => Mode::Process,
            By::Cgroup => Mode::Cgroup,
        }
    }
}

type Labels = Vec<(String, String)>;

/// One syscall of one group: its calls, latency sum and histogram, errors by errno.
#[derive(Debug, Clone, Default)]
struct Series {
    calls: u64,
    total_ns: u64,
    hist: Log2Histogram,
    errnos: BTreeMap<i32, u64>,
}

impl Series {
    fn add(&mut self, row: &tracekit_summary::SyscallRow) {
        self.calls += row.stats.count;
        self.total_ns += row.stats.total;
        if let Some(h) = &row.hist {
            self.hist.add_buckets(&h.buckets);
        }
        for (err, n) in &row.errnos {
            *self.errnos.entry(*err).or_default() += n;
        }
    }

    fn merge(&mut self, other: &Series) {
        self.calls += other.calls;
        self.total_ns += other.total_ns;
        self.hist.add_buckets(&other.hist.buckets);
        for (err, n) in &other.errnos {
            *self.errnos.entry(*err).or_default() += n;
        }
    }
}

/// Everything one scrape exports.
#[derive(Debug, Default)]
pub struct Snapshot {
    series: BTreeMap<Labels, Series>,
    probes: Vec<tracekit_probe::ProbeResult>,
    dropped: Vec<(&'static str, u64)>,
    series_dropped: u64,
    scrape_seconds: f64,
}

/// The group labels of a summary group under `by`.
fn group_labels(by: By, group: &tracekit_summary::Group) -> Labels {
    let label = |k: &str, v: String| (k.to_owned(), v);
    match by {
        By::None => Vec::new(),
        By::Comm => vec![label("comm", group.comm.clone())],
        By::Cgroup => vec![label("cgroup", group.comm.clone())],
        By::Process => vec![
            label("comm", group.comm.clone()),
            label("pid", group.id.map_or_else(String::new, |p| p.to_string())),
        ],
    }
}

/// What the exporter remembers between scrapes about the series: when each last changed
/// (for `--expire`), and which were folded into `other` (for the cap and its counter).
#[derive(Debug, Default)]
pub struct SeriesBook {
    /// Exported series: their last call count and when it last changed.
    live: BTreeMap<Labels, (u64, Instant)>,
    /// Series whose calls stopped longer than `--expire` ago: no longer exported, and no
    /// longer counted against the cap, until they change again.
    expired: BTreeSet<Labels>,
    /// Every series ever folded into `other`.
    folded: BTreeSet<Labels>,
}

/// Where a row of the summary goes.
enum Place {
    Own(Labels),
    Other,
    Expired,
}

impl SeriesBook {
    /// Where the series `labels`, with `calls` calls so far, goes in this scrape. A series
    /// folded into `other` stays there (so `other` never goes down), and one that comes back
    /// from expiry needs room under the cap like a new one.
    fn place(&mut self, labels: Labels, calls: u64, limits: Limits, now: Instant) -> Place {
        if self.folded.contains(&labels) {
            return Place::Other;
        }
        let active = self.live.len() - self.expired.len();
        let Some((last, changed)) = self.live.get_mut(&labels) else {
            if active < limits.max_series {
                self.live.insert(labels.clone(), (calls, now));
                return Place::Own(labels);
            }
            self.folded.insert(labels);
            return Place::Other;
        };
        if *last == calls {
            let stale = limits
                .expire
                .is_some_and(|e| now.duration_since(*changed) > e);
            if stale || self.expired.contains(&labels) {
                self.expired.insert(labels);
                return Place::Expired;
            }
            return Place::Own(labels);
        }
        (*last, *changed) = (calls, now);
        if self.expired.remove(&labels) && active >= limits.max_series {
            self.live.remove(&labels);
            self.folded.insert(labels);
            return Place::Other;
        }
        Place::Own(labels)
    }
}

/// The series cap and the age after which an unchanging series stops being exported.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The most (group, syscall) series exported.
    pub max_series: usize,
    /// Series whose calls have not changed for this long are no longer exported.
    pub expire: Option<Duration>,
}

impl Snapshot {
    /// The series of `summary` under `limits`: series admitted earlier keep their place, new
    /// ones beyond the cap are folded into `other` (for good), and series unchanged for longer
    /// than `limits.expire` are left out.
    pub fn build(summary: &Summary, by: By, limits: Limits, book: &mut SeriesBook) -> Snapshot {
        let now = Instant::now();
        // Rows of several groups can share a label set (processes of one comm): add them up
        // first, so each series is placed once with its whole count.
        let mut by_labels: BTreeMap<Labels, Series> = BTreeMap::new();
        for group in &summary.groups {
            for row in &group.syscalls {
                let mut labels = group_labels(by, group);
                labels.push(("syscall".to_owned(), row.name.clone()));
                by_labels.entry(labels).or_default().add(row);
            }
        }
        let mut series: BTreeMap<Labels, Series> = BTreeMap::new();
        for (labels, s) in by_labels {
            let syscall = labels.last().map(|(_, v)| v.clone()).unwrap_or_default();
            let key = match book.place(labels, s.calls, limits, now) {
                Place::Own(labels) => labels,
                Place::Other => other_labels(by, &syscall),
                Place::Expired => continue,
            };
            series.entry(key).or_default().merge(&s);
        }
        let d = summary.dropped;
        Snapshot {
            series,
            probes: Vec::new(),
            dropped: vec![
                ("task_storage", d.start),
                ("stats_map_full", d.stats),
                ("errno_map_full", d.errno),
                ("fork_not_followed", d.fork),
                ("comm_map_full", d.comm),
                ("bad_syscall_number", d.bad_nr),
                ("hist_map_full", d.hist),
                ("recursion", d.recursion),
            ],
            series_dropped: book.folded.len() as u64,
            scrape_seconds: 0.0,
        }
    }

    /// Adds the results of the user probes.
    pub fn with_probes(mut self, probes: Vec<tracekit_probe::ProbeResult>) -> Snapshot {
        self.probes = probes;
        self
    }

    /// Records how long the previous scrape took.
    pub fn with_scrape_seconds(mut self, seconds: f64) -> Snapshot {
        self.scrape_seconds = seconds;
        self
    }

    /// Number of (group, syscall) series.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// Whether there is no series yet.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}

fn other_labels(by: By, syscall: &str) -> Labels {
    let mut labels: Labels = match by {
        By::None => Vec::new(),
        By::Comm => vec![("comm".into(), "other".into())],
        By::Cgroup => vec![("cgroup".into(), "other".into())],
        By::Process => vec![
            ("comm".into(), "other".into()),
            ("pid".into(), "other".into()),
        ],
    };
    labels.push(("syscall".into(), syscall.to_owned()));
    labels
}

/// The histogram's buckets in seconds: bucket k of the kernel's log2 histogram holds
/// [2^(k-1), 2^k) ns, so its inclusive upper bound is 2^k - 1 ns (bucket 0: 0 ns). Buckets
/// end at 2^34 ns (17 s); longer calls are in `+Inf` only.
const LAST_BUCKET: usize = 34;

fn buckets(hist: &Log2Histogram) -> Vec<(f64, u64)> {
    let count = |i: usize| hist.buckets.get(i).copied().unwrap_or(0);
    let mut out: Vec<(f64, u64)> = (0..=LAST_BUCKET)
        .map(|k| (((1u64 << k) - 1) as f64 / 1e9, count(k)))
        .collect();
    let beyond: u64 = hist.buckets.iter().skip(LAST_BUCKET + 1).sum();
    out.push((f64::INFINITY, beyond));
    out
}

impl Snapshot {
    fn encode_probes(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let label =
            |p: &tracekit_probe::ProbeResult| -> Labels { vec![("probe".into(), p.spec.clone())] };
        let mut hits = encoder.encode_descriptor(
            "tracekit_probe_hits",
            "Times each probe fired",
            None,
            MetricType::Counter,
        )?;
        for p in &self.probes {
            ConstCounter::new(p.hits).encode(hits.encode_family(&label(p))?)?;
        }
        let mut missed = encoder.encode_descriptor(
            "tracekit_probe_missed",
            "Probe hits that could not be handled (a return without its entry, a map full)",
            None,
            MetricType::Counter,
        )?;
        for p in &self.probes {
            ConstCounter::new(p.missed).encode(missed.encode_family(&label(p))?)?;
        }
        let mut duration = encoder.encode_descriptor(
            "tracekit_probe_duration_seconds",
            "Entry-to-return time of each return probe's function",
            None,
            MetricType::Histogram,
        )?;
        for p in &self.probes {
            if let (Some(stats), Some(hist)) = (&p.latency, &p.histogram) {
                duration
                    .encode_family(&label(p))?
                    .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                        stats.total as f64 / 1e9,
                        stats.count,
                        &buckets(hist),
                        None,
                    )?;
            }
        }
        Ok(())
    }
}

fn errno_name(err: i32) -> String {
    tracekit_core::errno::name(err)
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut hist = encoder.encode_descriptor(
            "tracekit_syscall_duration_seconds",
            "Time from syscall entry to return, by syscall (count: calls)",
            None,
            MetricType::Histogram,
        )?;
        for (labels, s) in &self.series {
            hist.encode_family(labels)?
                .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                    s.total_ns as f64 / 1e9,
                    s.calls,
                    &buckets(&s.hist),
                    None,
                )?;
        }
        let mut errors = encoder.encode_descriptor(
            "tracekit_syscall_errors",
            "Calls that returned an error, by syscall and errno",
            None,
            MetricType::Counter,
        )?;
        for (labels, s) in &self.series {
            for (err, n) in &s.errnos {
                let mut with_errno = labels.clone();
                with_errno.push(("errno".into(), errno_name(*err)));
                ConstCounter::new(*n).encode(errors.encode_family(&with_errno)?)?;
            }
        }
        if !self.probes.is_empty() {
            self.encode_probes(&mut encoder)?;
        }
        let mut dropped = encoder.encode_descriptor(
            "tracekit_dropped",
            "Events the kernel side could not record, by cause",
            None,
            MetricType::Counter,
        )?;
        for (cause, n) in &self.dropped {
            let labels: Labels = vec![("cause".into(), (*cause).to_owned())];
            ConstCounter::new(*n).encode(dropped.encode_family(&labels)?)?;
        }
        ConstCounter::new(self.series_dropped).encode(encoder.encode_descriptor(
            "tracekit_series_dropped",
            "Series folded into `other` by --max-series",
            None,
            MetricType::Counter,
        )?)?;
        ConstGauge::new(self.scrape_seconds).encode(encoder.encode_descriptor(
            "tracekit_scrape_duration_seconds",
            "How long the previous scrape took to read the kernel maps and encode",
            None,
            MetricType::Gauge,
        )?)?;
        let info: Labels = vec![("version".into(), env!("CARGO_PKG_VERSION").into())];
        encoder
            .encode_descriptor(
                "tracekit_build",
                "The exporter's version",
                None,
                MetricType::Info,
            )?
            .encode_info(&info)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(name: &str) -> Labels {
        vec![("comm".into(), name.into())]
    }

    fn own(place: Place) -> Option<Labels> {
        match place {
            Place::Own(l) => Some(l),
            _ => None,
        }
    }

    #[test]
    fn the_cap_folds_for_good_and_expiry_frees_room() {
        let limits = Limits {
            max_series: 1,
            expire: Some(Duration::from_secs(10)),
        };
        let t0 = Instant::now();
        let mut book = SeriesBook::default();
        assert!(own(book.place(labels("a"), 5, limits, t0)).is_some());
        assert!(matches!(
            book.place(labels("b"), 7, limits, t0),
            Place::Other
        ));
        // A folded series stays in `other`, even once there is room: `other` never goes down.
        let later = t0 + Duration::from_secs(11);
        assert!(matches!(
            book.place(labels("a"), 5, limits, later),
            Place::Expired
        ));
        assert!(matches!(
            book.place(labels("b"), 9, limits, later),
            Place::Other
        ));
        // The room `a` left goes to a new series.
        assert!(own(book.place(labels("c"), 1, limits, later)).is_some());
        // `a` comes back with new calls, but the cap is full: it joins `other`.
        assert!(matches!(
            book.place(labels("a"), 6, limits, later),
            Place::Other
        ));
        assert_eq!(book.folded.len(), 2);
    }
}
