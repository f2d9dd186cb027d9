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
}

/// The text report: a heading and a table per group, then anything dropped.
pub fn table(summary: &Summary, options: RenderOptions, style: Style) -> String {
    let events: u64 = summary.groups.iter().map(Group::events).sum();
    let mut out = format!(
        "\n Summary of events ({} mode, {:.3} s): {events} events\n",
        mode_name(summary.mode),
        summary.elapsed.as_secs_f64()
    );
    for group in &summary.groups {
        out.push('\n');
        if let Some(id) = group.id {
            let share = if events == 0 {
                0.0
            } else {
                100.0 * group.events() as f64 / events as f64
            };
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
        out.push_str(&group_table(group, options).render(style));
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

fn group_table(group: &Group, options: RenderOptions) -> Table {
    let mut table = Table::new(vec![
        Column::left("syscall"),
        Column::right("calls"),
        Column::right("errors"),
        Column::right("total(msec)"),
        Column::right("min(msec)"),
        Column::right("avg(msec)"),
        Column::right("max(msec)"),
        Column::right("stddev(msec)"),
        Column::right("stddev(%)"),
    ]);
    for row in &group.syscalls {
        let s = &row.stats;
        table.row(vec![
            row.name.clone(),
            s.count.to_string(),
            row.errors.to_string(),
            ns_to_ms(s.total as f64),
            ns_to_ms(s.min as f64),
            ns_to_ms(s.mean()),
            ns_to_ms(s.max as f64),
            ns_to_ms(s.stddev()),
            format!("{:.2}%", s.rel_stddev_pct()),
        ]);
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

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Total => "total",
        Mode::Process => "process",
        Mode::Thread => "thread",
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
    total_ns: u64,
    min_ns: u64,
    avg_ns: f64,
    max_ns: u64,
    stddev_ns: f64,
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
}

/// The JSON document: `syscalls` in total mode, `processes` or `threads` (each with its own
/// `syscalls`) in the other modes.
pub fn json<'a>(summary: &'a Summary, options: RenderOptions) -> JsonReport<'a> {
    let rows = |g: &'a Group| -> Vec<JsonSyscall<'a>> {
        g.syscalls.iter().map(|r| json_row(r, options)).collect()
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
        elapsed_ns: summary.elapsed.as_nanos(),
        dropped: summary.dropped,
        dropped_total: summary.dropped.total(),
        in_flight: summary.in_flight.as_ref(),
        syscalls: (summary.mode == Mode::Total).then(|| rows(summary.total())),
        processes: (summary.mode == Mode::Process).then(|| groups(false)),
        threads: (summary.mode == Mode::Thread).then(|| groups(true)),
    }
}

fn json_row(row: &SyscallRow, options: RenderOptions) -> JsonSyscall<'_> {
    let s = &row.stats;
    JsonSyscall {
        name: &row.name,
        nr: row.nr,
        calls: s.count,
        errors: row.errors,
        total_ns: s.total,
        min_ns: s.min,
        avg_ns: s.mean(),
        max_ns: s.max,
        stddev_ns: s.stddev(),
        errnos: options.errno.then(|| {
            row.errnos
                .iter()
                .map(|(e, n)| (errno::name(*e), *n))
                .collect()
        }),
    }
}
