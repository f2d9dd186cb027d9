//! `trace diff`: two saved summaries (`trace summary --json`) side by side, per syscall, for
//! before/after comparisons.
//!
//! Either report may be in any mode (process and thread tables are added up per syscall) and
//! may be a stream of interval reports (`-i --json`), which add up to the run's total.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tracekit_core::report::{Column, Style, Table};
use tracekit_core::units::ns_to_ms;

/// Why two reports cannot be compared.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    /// The file cannot be read.
    #[error("cannot read {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The system's answer.
        error: std::io::Error,
    },
    /// The file is not a report of `trace summary --json`.
    #[error(
        "{path} is not a report of `tracekit trace summary --json`: {reason}\n  hint: make one with `tracekit trace summary --json -o FILE -- COMMAND`"
    )]
    NotASummary {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// One syscall of a saved report (the fields a diff needs).
#[derive(Debug, Deserialize)]
struct SavedSyscall {
    name: String,
    calls: u64,
    errors: u64,
    #[serde(default)]
    total_ns: Option<u64>,
    #[serde(default)]
    hist_log2_ns: Option<Vec<u64>>,
}

#[derive(Debug, Deserialize)]
struct SavedGroup {
    syscalls: Vec<SavedSyscall>,
}

#[derive(Debug, Deserialize)]
struct SavedReport {
    #[serde(default)]
    syscalls: Option<Vec<SavedSyscall>>,
    #[serde(default)]
    processes: Option<Vec<SavedGroup>>,
    #[serde(default)]
    threads: Option<Vec<SavedGroup>>,
    #[serde(default)]
    cgroups: Option<Vec<SavedGroup>>,
}

/// A syscall's totals in one report.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Side {
    /// Number of calls.
    pub calls: u64,
    /// Number of failed calls.
    pub errors: u64,
    /// Total latency in ns (`None` for a counts-only report).
    pub total_ns: Option<u64>,
    /// The log2 latency histogram, when the report has one.
    #[serde(skip)]
    pub hist: Option<tracekit_core::stats::Log2Histogram>,
}

impl Side {
    /// Mean latency in ns.
    pub fn avg_ns(&self) -> Option<f64> {
        self.total_ns
            .filter(|_| self.calls > 0)
            .map(|t| t as f64 / self.calls as f64)
    }

    /// Estimated p99 latency in ns, from the histogram.
    pub fn p99_ns(&self) -> Option<f64> {
        self.hist.as_ref().and_then(|h| h.percentile(0.99))
    }

    /// Adds one saved row. Saturating: the counts come from a file, and a damaged (or
    /// hand-made) one can hold values whose sum passes u64::MAX.
    fn add(&mut self, s: &SavedSyscall) {
        self.calls = self.calls.saturating_add(s.calls);
        self.errors = self.errors.saturating_add(s.errors);
        if let Some(t) = s.total_ns {
            self.total_ns = Some(self.total_ns.unwrap_or(0).saturating_add(t));
        }
        if let Some(buckets) = &s.hist_log2_ns {
            self.hist
                .get_or_insert_with(Default::default)
                .add_buckets(buckets);
        }
    }
}

/// Every syscall's totals in a saved report, by name.
pub type Totals = BTreeMap<String, Side>;

/// Reads a saved report (one JSON document, or one per line for interval reports).
pub fn read(path: &Path) -> Result<Totals, crate::Error> {
    let text = std::fs::read_to_string(path).map_err(|error| DiffError::Read {
        path: path.to_path_buf(),
        error,
    })?;
    let bad = |reason: String| DiffError::NotASummary {
        path: path.to_path_buf(),
        reason,
    };
    let mut totals = Totals::new();
    let mut documents = 0;
    for doc in serde_json::Deserializer::from_str(&text).into_iter::<SavedReport>() {
        let doc = doc.map_err(|e| bad(e.to_string()))?;
        let groups: Vec<SavedGroup> =
            match (doc.syscalls, doc.processes.or(doc.threads).or(doc.cgroups)) {
                (Some(syscalls), _) => vec![SavedGroup { syscalls }],
                (None, Some(groups)) => groups,
                (None, None) => {
                    return Err(bad(
                        "it has no `syscalls`, `processes`, `threads` or `cgroups`".into()
                    )
                    .into());
                }
            };
        for row in groups.iter().flat_map(|g| &g.syscalls) {
            totals.entry(row.name.clone()).or_default().add(row);
        }
        documents += 1;
    }
    if documents == 0 {
        return Err(bad("it is empty".into()).into());
    }
    Ok(totals)
}

/// One syscall in both reports.
#[derive(Debug, Serialize)]
pub struct DiffRow {
    /// The syscall.
    pub name: String,
    /// Its totals in the first report (zero if absent there).
    pub before: Side,
    /// Its totals in the second report.
    pub after: Side,
}

/// The rows of every syscall in either report, the largest change in calls first.
pub fn compare(before: &Totals, after: &Totals) -> Vec<DiffRow> {
    let mut names: Vec<&String> = before.keys().chain(after.keys()).collect();
    names.sort();
    names.dedup();
    let mut rows: Vec<DiffRow> = names
        .into_iter()
        .map(|name| DiffRow {
            name: name.clone(),
            before: before.get(name).cloned().unwrap_or_default(),
            after: after.get(name).cloned().unwrap_or_default(),
        })
        .collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.before.calls.abs_diff(r.after.calls)));
    rows
}

/// A change as a percentage of `before` ("new" when there was nothing before).
fn change(before: f64, after: f64) -> String {
    if before == 0.0 {
        return if after == 0.0 {
            "0%".into()
        } else {
            "new".into()
        };
    }
    format!("{:+.1}%", 100.0 * (after - before) / before)
}

fn ms(ns: Option<f64>) -> String {
    ns.map_or_else(|| "-".to_owned(), ns_to_ms)
}

/// The side-by-side table.
pub fn table(rows: &[DiffRow], style: Style) -> String {
    let mut table = Table::new(vec![
        Column::left("syscall"),
        Column::right("calls A"),
        Column::right("calls B"),
        Column::right("change"),
        Column::right("errors A"),
        Column::right("errors B"),
        Column::right("avg A(msec)"),
        Column::right("avg B(msec)"),
        Column::right("change"),
        Column::right("~p99 A(msec)"),
        Column::right("~p99 B(msec)"),
    ]);
    for r in rows {
        let (a, b) = (&r.before, &r.after);
        let avg_change = match (a.avg_ns(), b.avg_ns()) {
            (Some(x), Some(y)) => change(x, y),
            _ => "-".into(),
        };
        table.row(vec![
            r.name.clone(),
            a.calls.to_string(),
            b.calls.to_string(),
            change(a.calls as f64, b.calls as f64),
            a.errors.to_string(),
            b.errors.to_string(),
            ms(a.avg_ns()),
            ms(b.avg_ns()),
            avg_change,
            ms(a.p99_ns()),
            ms(b.p99_ns()),
        ]);
    }
    format!("\n{}", table.render(style))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_relative_to_before() {
        assert_eq!(change(100.0, 150.0), "+50.0%");
        assert_eq!(change(0.0, 3.0), "new");
        assert_eq!(change(4.0, 0.0), "-100.0%");
    }
}
