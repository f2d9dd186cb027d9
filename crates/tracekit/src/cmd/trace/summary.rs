//! `tracekit trace summary`: the report, once at the end or every interval.

use super::{FilterArgs, TargetArgs, command_error};
use crate::output::OutputArgs;
use clap::Args;
use std::process::ExitCode;
use tracekit_summary::render::{self, RenderOptions};
use tracekit_summary::{Error as SummaryError, Interval, Mode, Options, SortKey, Target};

/// Arguments of `trace summary`.
#[derive(Args)]
pub struct SummaryArgs {
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    filters: FilterArgs,
    /// Count calls and errors only, with no clock read at all: the cheapest exact counter.
    #[arg(long, conflicts_with_all = ["hist", "percentiles"])]
    no_latency: bool,
    /// Print each syscall's latency histogram (log2 buckets, like bpftrace's hist()).
    #[arg(long)]
    hist: bool,
    /// Add p50/p90/p99/p99.9 latency columns (estimated within log2 buckets, marked ~).
    #[arg(long)]
    percentiles: bool,
    /// Show only the first N syscalls of each table (after sorting).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    top: Option<u64>,
    /// Print a report every SECS seconds with the calls of that interval (with --json: one
    /// JSON document per line). The last, partial interval is printed at the end.
    #[arg(short, long, value_name = "SECS")]
    interval: Option<f64>,
    /// With --interval: stop after N reports.
    #[arg(long, value_name = "N", requires = "interval", value_parser = clap::value_parser!(u32).range(1..))]
    count: Option<u32>,
    /// Stop after this many seconds (fractions allowed).
    #[arg(long, value_name = "SECS", allow_negative_numbers = true)]
    duration: Option<f64>,
    /// One table in total, or one per process, per thread, or per cgroup (v2, by path).
    #[arg(long, value_enum, default_value = "total")]
    mode: Mode,
    /// Sort rows by this column (descending; name ascending).
    #[arg(long, value_enum, default_value = "total")]
    sort: SortKey,
    /// Break each syscall's errors down by errno (ENOENT, EAGAIN, ...).
    #[arg(long)]
    errno: bool,
    #[command(flatten)]
    out: OutputArgs,
    /// Capacity of the per-process/thread statistics map, in (task, syscall) entries.
    #[arg(long, default_value_t = 65536, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_entries: u32,
}

pub fn run(args: SummaryArgs) -> anyhow::Result<ExitCode> {
    let target = args.target.target("summary")?;
    let interval = match args.interval {
        Some(secs) => Some(Interval {
            every: crate::args::interval(secs)?,
            count: args.count,
        }),
        None => None,
    };
    let duration = args.duration.map(crate::args::duration).transpose()?;
    let options = Options {
        mode: args.mode,
        errno: args.errno,
        max_entries: args.max_entries,
        latency: !args.no_latency,
        hist: args.hist || args.percentiles,
        ..args.filters.apply(Options::default())?
    };
    let render_options = RenderOptions {
        errno: args.errno,
        percentiles: args.percentiles,
        hist: args.hist,
        top: args.top.map(|n| n as usize),
    };
    let sort = args.sort;
    let output = match target {
        Target::Command(_) => args.out.target_or_stderr(),
        _ => args.out.target(),
    };
    output.prepare()?;
    let stop = crate::stop::flag()?;
    let mut print_interval = |summary: &tracekit_summary::Summary| {
        let mut summary = summary.clone();
        summary.sort(sort);
        args.out
            .append(
                &output,
                || render::json(&summary, render_options),
                |style| render::table(&summary, render_options, style),
            )
            .map_err(|e| SummaryError::Output(e.to_string()))
    };
    let result = tracekit_summary::run_with_intervals(
        &options,
        &target,
        duration,
        interval,
        &stop,
        &mut print_interval,
    );
    let mut outcome = match result {
        Ok(outcome) => outcome,
        // A shell's exit statuses for a command that cannot be run.
        Err(e @ SummaryError::CommandNotFound(_)) => return Ok(command_error(&e, 127)),
        Err(e @ SummaryError::NotExecutable { .. }) => return Ok(command_error(&e, 126)),
        Err(e) => return Err(e.into()),
    };
    outcome.summary.sort(sort);
    outcome
        .notes
        .iter()
        .for_each(|n| eprintln!("tracekit: {n}"));
    if interval.is_none() {
        let summary = &outcome.summary;
        args.out.emit(
            &output,
            || render::json(summary, render_options),
            |style| render::table(summary, render_options, style),
        )?;
    }
    Ok(match outcome.exit {
        Some(status) => ExitCode::from(status.exit_code()),
        None if stop.load(std::sync::atomic::Ordering::Relaxed)
            && matches!(target, Target::Command(_)) =>
        {
            ExitCode::from(130)
        }
        None => ExitCode::SUCCESS,
    })
}
