//! Reports: tables laid out like `perf trace -s`, and the JSON document.

use serde::Serialize;
use std::collections::BTreeMap;
use tracekit_core::errno;
use tracekit_core::report::{Column, Style, Table};
use tracekit_core::units::ns_to_ms;

use crate::model::{Dropped, Group, Mode, Summary, SyscallRow};

/// What to show besides the standard columns.
#[derive(Debug, Clone, Copy, Default)]
pub struct RenderOptions {
    /// Print each syscall's errors broken down by errno under its row.
    pub errno: bool,
    /// Add p50/p90/p99/p99.9 columns (from the histograms).
    pub percentiles: bool,
    /// Print each syscall's latency histogram under the table, as bpftrace's `hist()`.
    pub hist: bool,
    /// Only the first N rows of each table.
    pub top: Option<usize>,
}

/// The percentiles of `--percentiles`, with their column names.
const PERCENTILES: [(f64, &str); 4] = [(0.5, "p50"), (0.9, "p90"), (0.99, "p99"), (0.999, "p99.9")];

/// The text report: a heading and a table per group, then anything dropped.
pub fn table(summary: &Summary, options: RenderOptions, style: Style) -> String {
    let events: u64 = summary.groups.iter().map(Group::events).sum();
    let what = match summary.interval {
        Some(n) => format!("Interval {n}"),
        None => "Summary of events".to_owned(),
    };
    let mut out = format!(
        "\n {what} ({} mode, {:.3} s): {events} events\n",
        mode_name(summary.mode),
        summary.elapsed.as_secs_f64()
    );
    for group in &summary.groups {
        out.push('\n');
        let share = if events == 0 {
            0.0
        } else {
            100.0 * group.events() as f64 / events as f64
        };
        if summary.mode == Mode::Cgroup {
            out.push_str(&format!(
                " cgroup {}, {} events, {share:.1}%\n\n",
                group.comm,
                group.events()
            ));
        }
        if let Some(id) = group.id {
            let ids = match (summary.mode, group.pid) {
                (Mode::Thread, Some(pid)) => format!("pid {pid}, tid {id}"),
                (Mode::Thread, None) => format!("tid {id}"),
                _ => id.to_string(),
            };
            out.push_str(&format!(
                " {} ({ids}), {} events, {share:.1}%\n\n",
                group.comm,
                group.events()
            ));
        }
        out.push_str(&group_table(summary, group, options).render(style));
        if options.hist {
            out.push_str(&histograms(group, options));
        }
    }
    if options.percentiles && summary.latency {
        out.push_str("\n ~: estimated, interpolated within power-of-two latency buckets\n");
    }
    if let Some(in_flight) = summary.in_flight.as_ref().filter(|m| !m.is_empty()) {
        let calls: Vec<String> = in_flight
            .iter()
            .map(|(name, n)| format!("{name} {n}"))
            .collect();
        out.push_str(&format!(
            "\n in flight at the end (entered, not returned; not in the table): {}\n",
            calls.join(", ")
        ));
    }
    if events == 0 {
        out.push_str("\n (no syscalls seen: was the target idle, or already gone?)\n");
    }
    if summary.dropped.total() > 0 {
        out.push_str(&style.red(&format!("\n dropped: {}\n", dropped_text(&summary.dropped))));
    }
    out
}

/// The rows a table shows: all, or the first `--top` N.
fn shown(group: &Group, options: RenderOptions) -> &[SyscallRow] {
    let n = options.top.unwrap_or(usize::MAX).min(group.syscalls.len());
    &group.syscalls[..n]
}

fn group_table(summary: &Summary, group: &Group, options: RenderOptions) -> Table {
    let latency = summary.latency;
    let min_max = latency && summary.interval.is_none();
    let percentiles = latency && options.percentiles;
    let mut columns = vec![
        Column::left("syscall"),
        Column::right("calls"),
        Column::right("errors"),
    ];
    if latency {
        columns.push(Column::right("total(msec)"));
        if min_max {
            columns.push(Column::right("min(msec)"));
        }
        columns.push(Column::right("avg(msec)"));
        if min_max {
            columns.push(Column::right("max(msec)"));
        }
        columns.push(Column::right("stddev(msec)"));
        columns.push(Column::right("stddev(%)"));
    }
    if percentiles {
        columns.extend(PERCENTILES.map(|(_, name)| Column::right(format!("~{name}(msec)"))));
    }
    let mut table = Table::new(columns);
    for row in shown(group, options) {
        let s = &row.stats;
        let mut cells = vec![
            row.name.clone(),
            s.count.to_string(),
            row.errors.to_string(),
        ];
        if latency {
            cells.push(ns_to_ms(s.total as f64));
            if min_max {
                cells.push(ns_to_ms(s.min as f64));
            }
            cells.push(ns_to_ms(s.mean()));
            if min_max {
                cells.push(ns_to_ms(s.max as f64));
            }
            cells.push(ns_to_ms(s.stddev()));
            cells.push(format!("{:.2}%", s.rel_stddev_pct()));
        }
        if percentiles {
            for (q, _) in PERCENTILES {
                let p = row.hist.as_ref().and_then(|h| h.percentile(q));
                cells.push(p.map_or_else(|| "-".to_owned(), ns_to_ms));
            }
        }
        table.row(cells);
        if options.errno {
            for (err, count) in &row.errnos {
                table.row(vec![
                    format!("  {}", errno::name(*err)),
                    String::new(),
                    count.to_string(),
                ]);
            }
        }
    }
    table
}

/// Each shown syscall's latency histogram, in ns, as bpftrace prints `hist()`.
fn histograms(group: &Group, options: RenderOptions) -> String {
    let mut out = String::new();
    for row in shown(group, options) {
        if let Some(hist) = row.hist.as_ref().filter(|h| h.total() > 0) {
            out.push_str(&format!("\n {} latency (ns):\n", row.name));
            out.push_str(&hist.render(""));
        }
    }
    out
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Total => "total",
        Mode::Process => "process",
        Mode::Thread => "thread",
        Mode::Cgroup => "cgroup",
        Mode::ProcessInCgroup => "process in cgroup",
    }
}

fn dropped_text(d: &Dropped) -> String {
    let causes = [
        (d.start, "syscalls untimed (task storage allocation failed)"),
        (
            d.stats,
            "syscalls unrecorded (statistics map full: raise --max-entries)",
        ),
        (d.errno, "errors without errno breakdown (errno map full)"),
        (
            d.fork,
            "forked children not followed (traced-process map full)",
        ),
        (d.comm, "task names not recorded"),
        (
            d.bad_nr,
            "calls with a syscall number beyond the table (ENOSYS), not itemised",
        ),
        (d.hist, "latencies not in a histogram (histogram map full)"),
        (
            d.recursion,
            "syscall events the kernel did not run the program for (already running on that CPU)",
        ),
    ];
    causes
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One syscall in the JSON document.
#[derive(Debug, Serialize)]
pub struct JsonSyscall<'a> {
    name: &'a str,
    nr: u32,
    calls: u64,
    errors: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    total_ns: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    min_ns: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    avg_ns: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_ns: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stddev_ns: Option<f64>,
    /// Estimated percentiles in ns (interpolated within the histogram's buckets).
    #[serde(skip_serializing_if = "Option::is_none")]
    percentiles_ns: Option<BTreeMap<&'static str, f64>>,
    /// Counts by log2 bucket: bucket 0 holds 0 ns, bucket k holds [2^(k-1), 2^k) ns.
    #[serde(skip_serializing_if = "Option::is_none")]
    hist_log2_ns: Option<&'a [u64]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    errnos: Option<BTreeMap<String, u64>>,
}

/// One process or thread in the JSON document.
#[derive(Serialize)]
pub struct JsonGroup<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tid: Option<u32>,
    comm: &'a str,
    syscalls: Vec<JsonSyscall<'a>>,
}

/// The JSON document of a summary; see [`json`].
#[derive(Serialize)]
pub struct JsonReport<'a> {
    mode: Mode,
    /// The interval's number, in an interval report.
    #[serde(skip_serializing_if = "Option::is_none")]
    interval: Option<u32>,
    elapsed_ns: u128,
    dropped: Dropped,
    dropped_total: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    in_flight: Option<&'a BTreeMap<String, u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    syscalls: Option<Vec<JsonSyscall<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    processes: Option<Vec<JsonGroup<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    threads: Option<Vec<JsonGroup<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cgroups: Option<Vec<JsonCgroup<'a>>>,
}

/// One cgroup in the JSON document.
#[derive(Serialize)]
pub struct JsonCgroup<'a> {
    path: &'a str,
    syscalls: Vec<JsonSyscall<'a>>,
}

/// The JSON document: `syscalls` in total mode, `processes` or `threads` (each with its own
/// `syscalls`) in the other modes.
pub fn json<'a>(summary: &'a Summary, options: RenderOptions) -> JsonReport<'a> {
    let rows = |g: &'a Group| -> Vec<JsonSyscall<'a>> {
        shown(g, options)
            .iter()
            .map(|r| json_row(summary, r, options))
            .collect()
    };
    let groups = |is_tid: bool| -> Vec<JsonGroup<'a>> {
        summary
            .groups
            .iter()
            .map(|g| JsonGroup {
                pid: if is_tid { g.pid } else { g.id },
                tid: if is_tid { g.id } else { None },
                comm: &g.comm,
                syscalls: rows(g),
            })
            .collect()
    };
    JsonReport {
        mode: summary.mode,
        interval: summary.interval,
        elapsed_ns: summary.elapsed.as_nanos(),
        dropped: summary.dropped,
        dropped_total: summary.dropped.total(),
        in_flight: summary.in_flight.as_ref(),
        syscalls: (summary.mode == Mode::Total).then(|| rows(summary.total())),
        processes: matches!(summary.mode, Mode::Process | Mode::ProcessInCgroup)
            .then(|| groups(false)),
        threads: (summary.mode == Mode::Thread).then(|| groups(true)),
        cgroups: (summary.mode == Mode::Cgroup).then(|| {
            summary
                .groups
                .iter()
                .map(|g| JsonCgroup {
                    path: &g.comm,
                    syscalls: rows(g),
                })
                .collect()
        }),
    }
}

fn json_row<'a>(summary: &Summary, row: &'a SyscallRow, options: RenderOptions) -> JsonSyscall<'a> {
    let s = &row.stats;
    let latency = summary.latency;
    let min_max = latency && summary.interval.is_none();
    JsonSyscall {
        name: &row.name,
        nr: row.nr,
        calls: s.count,
        errors: row.errors,
        total_ns: latency.then_some(s.total),
        min_ns: min_max.then_some(s.min),
        avg_ns: latency.then(|| s.mean()),
        max_ns: min_max.then_some(s.max),
        stddev_ns: latency.then(|| s.stddev()),
        percentiles_ns: row.hist.as_ref().map(|h| {
            PERCENTILES
                .iter()
                .filter_map(|&(q, name)| Some((name, h.percentile(q)?)))
                .collect()
        }),
        hist_log2_ns: row.hist.as_ref().map(|h| h.buckets.as_slice()),
        errnos: options.errno.then(|| {
            row.errnos
                .iter()
                .map(|(e, n)| (errno::name(*e), *n))
                .collect()
        }),
    }
}
