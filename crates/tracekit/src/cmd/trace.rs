//! `tracekit trace summary`: flags → tracekit_summary → report.

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tracekit_core::report::OutputTarget;
use tracekit_summary::render::{self, RenderOptions};
use tracekit_summary::{Mode, Options, SortKey, SummaryError, Target};

/// `tracekit trace ...`
#[derive(Subcommand)]
pub enum TraceCommand {
    /// Per-syscall count, errors and latency statistics, aggregated in the kernel by BPF.
    #[command(
        long_about = "Per-syscall count, errors, total/min/avg/max latency and standard deviation, \
aggregated inside the kernel by BPF (tp_btf sys_enter/sys_exit, per-CPU maps, task storage): \
no ring buffer, no lost events, exact counts. The replacement for `perf trace -s` and `strace -c`.\n\n\
Give exactly one target: a command after `--` (traced with its threads and every child it forks, \
its exit status passed through), -p PID, or -a for the whole system. The run ends when the target \
exits, after --duration, or on Ctrl-C; the summary is printed then.\n\n\
When a command is traced the report goes to standard error (like strace -c and perf trace), so the \
command's own output is untouched; use -o FILE to write it to a file, or -o - for standard output.\n\n\
Ctrl-C: the command gets the SIGINT from the terminal; if it is still running a second later it is \
sent SIGTERM; the summary covers its syscalls until it exits. After --duration the command is sent \
SIGTERM at once (like `timeout`). A second Ctrl-C exits at once, without a report.\n\n\
Exit status: the command's own (128 + signal if it was killed), 127 if it is not found, 126 if it \
cannot be executed, 130 if interrupted with no command status, 1 for other errors, 2 for usage errors.\n\n\
Latencies are in milliseconds; stddev is the population standard deviation over all calls, computed \
exactly (stddev(%) is relative to the mean). Counts that could not be recorded are reported as dropped.",
        after_help = "Examples:\n  \
tracekit trace summary -- make -j2                 # a build, its children and threads\n  \
tracekit trace summary --mode thread -- ./server   # one table per thread\n  \
tracekit trace summary -p 1234 --duration 10       # a running process for 10 s\n  \
tracekit trace summary -a --sort calls --errno     # whole system until Ctrl-C, errors by errno\n  \
tracekit trace summary --json -o out.json -- ls    # machine-readable report"
    )]
    #[command(
        override_usage = "tracekit trace summary [OPTIONS] (-- COMMAND [ARGS...] | -p PID[,PID...] | -a)"
    )]
    Summary(SummaryArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    Total,
    Process,
    Thread,
}

#[derive(Clone, Copy, ValueEnum)]
enum SortArg {
    Total,
    Calls,
    Errors,
    Avg,
    Max,
    Name,
}

/// Arguments of `trace summary`.
#[derive(Args)]
pub struct SummaryArgs {
    /// Trace these processes (comma-separated or repeated), and the children they fork.
    #[arg(short, long = "pid", value_name = "PID", value_delimiter = ',', conflicts_with_all = ["all", "command"])]
    pids: Vec<u32>,
    /// Trace the whole system (tracekit itself excluded).
    #[arg(short, long, conflicts_with = "command")]
    all: bool,
    /// Stop after this many seconds (fractions allowed).
    #[arg(long, value_name = "SECS", allow_negative_numbers = true)]
    duration: Option<f64>,
    /// One table in total, or one per process or per thread.
    #[arg(long, value_enum, default_value = "total")]
    mode: ModeArg,
    /// Sort rows by this column (descending; name ascending).
    #[arg(long, value_enum, default_value = "total")]
    sort: SortArg,
    /// Break each syscall's errors down by errno (ENOENT, EAGAIN, ...).
    #[arg(long)]
    errno: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Write the report to FILE instead of the terminal.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Capacity of the per-process/thread statistics map, in (task, syscall) entries.
    #[arg(long, default_value_t = 65536, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_entries: u32,
    /// The command to run and trace, after `--`.
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

/// Runs a `trace` subcommand.
pub fn run(command: TraceCommand) -> anyhow::Result<ExitCode> {
    match command {
        TraceCommand::Summary(args) => summary(args),
    }
}

fn summary(args: SummaryArgs) -> anyhow::Result<ExitCode> {
    let target = match (&args.command[..], &args.pids[..], args.all) {
        ([], [], false) => anyhow::bail!(
            "nothing to trace: give a command after `--`, -p PID, or -a (see `tracekit trace summary --help`)"
        ),
        ([], [], true) => Target::All,
        ([], pids, false) => Target::Pids(pids.to_vec()),
        (cmd, _, _) => Target::Command(cmd.to_vec()),
    };
    let duration = args
        .duration
        .map(|s| {
            Duration::try_from_secs_f64(s)
                .context("--duration must be a non-negative number of seconds")
        })
        .transpose()?;
    let options = Options {
        mode: match args.mode {
            ModeArg::Total => Mode::Total,
            ModeArg::Process => Mode::Process,
            ModeArg::Thread => Mode::Thread,
        },
        errno: args.errno,
        max_entries: args.max_entries,
        filter: true,
    };
    let output = match target {
        Target::Command(_) => OutputTarget::new_or_stderr(args.output.as_deref()),
        _ => OutputTarget::new(args.output.as_deref()),
    };
    output.prepare()?;
    let stop = crate::stop::flag()?;
    let mut outcome = match tracekit_summary::run(&options, &target, duration, &stop) {
        Ok(outcome) => outcome,
        // A shell's exit statuses for a command that cannot be run.
        Err(e @ SummaryError::CommandNotFound(_)) => return Ok(command_error(&e, 127)),
        Err(e @ SummaryError::NotExecutable { .. }) => return Ok(command_error(&e, 126)),
        Err(e) => return Err(e.into()),
    };
    outcome.summary.sort(sort_key(args.sort));
    outcome
        .notes
        .iter()
        .for_each(|n| eprintln!("tracekit: {n}"));

    let render_options = RenderOptions { errno: args.errno };
    if args.json {
        output.write_json(&render::json(&outcome.summary, render_options))?;
    } else {
        output.write(&render::table(
            &outcome.summary,
            render_options,
            output.style(),
        ))?;
    }
    Ok(match outcome.exit {
        Some(status) => ExitCode::from(crate::stop::exit_code_of(status)),
        None if stop.load(std::sync::atomic::Ordering::Relaxed)
            && matches!(target, Target::Command(_)) =>
        {
            ExitCode::from(130)
        }
        None => ExitCode::SUCCESS,
    })
}

fn command_error(err: &SummaryError, code: u8) -> ExitCode {
    eprintln!("tracekit: error: {err}");
    ExitCode::from(code)
}

fn sort_key(arg: SortArg) -> SortKey {
    match arg {
        SortArg::Total => SortKey::Total,
        SortArg::Calls => SortKey::Calls,
        SortArg::Errors => SortKey::Errors,
        SortArg::Avg => SortKey::Avg,
        SortArg::Max => SortKey::Max,
        SortArg::Name => SortKey::Name,
    }
}
