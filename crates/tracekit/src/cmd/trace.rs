//! `tracekit trace summary`: flags → tracekit_summary → report.

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tracekit_core::report::OutputTarget;
use tracekit_core::syscalls::Arch;
use tracekit_summary::render::{self, RenderOptions};
use tracekit_summary::{Error as SummaryError, Interval, Mode, Options, SortKey, Target};

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
        override_usage = "tracekit trace summary [OPTIONS] (-- COMMAND [ARGS...] | -p PID[,PID...] | -t TID[,TID...] | -a)"
    )]
    Summary(SummaryArgs),
    /// Two saved summaries side by side, per syscall: calls, errors, avg and p99, and the change.
    #[command(
        long_about = "Compares two reports saved with `trace summary --json -o FILE` (any mode; \
interval reports are added up), per syscall: calls, errors, mean latency and estimated p99 (when \
the reports were made with --hist or --percentiles) before (A) and after (B), and the change. \
Rows are ordered by the largest change in calls.",
        after_help = "Example:\n  \
tracekit trace summary --percentiles --json -o before.json -- ./server --bench\n  \
tracekit trace summary --percentiles --json -o after.json -- ./server --bench\n  \
tracekit trace diff before.json after.json"
    )]
    Diff(DiffArgs),
    /// A live full-screen view: per syscall calls/s, errors/s, avg and p99 of the last interval.
    #[command(
        long_about = "A live full-screen view of the traced syscalls, refreshed every interval: per \
syscall (or per process and syscall) the calls and errors per second, the mean latency and the \
estimated p99 over the last interval, measured in the kernel as by `trace summary`.\n\n\
Keys: q, Esc or Ctrl-C quit; s changes the sort column (calls/s, errors/s, avg, p99); g groups by \
process or not; p or space pauses the display (tracing goes on). SIGTERM also ends the view; the \
terminal is restored in every case. Standard output must be a terminal: for a stream of reports \
use `trace summary -i SECS`.",
        after_help = "Examples:\n  \
tracekit trace top -a                        # the whole system\n  \
tracekit trace top -p 1234 -e '%net'         # a process's network calls\n  \
tracekit trace top --cgroup /sys/fs/cgroup/system.slice/nginx.service"
    )]
    #[command(
        override_usage = "tracekit trace top [OPTIONS] (-- COMMAND [ARGS...] | -p PID[,PID...] | -t TID[,TID...] | -a)"
    )]
    Top(TopArgs),
}

/// What to trace: a command, processes, threads or everything.
#[derive(Args)]
struct TargetArgs {
    /// Trace these processes (comma-separated or repeated), and the children they fork.
    #[arg(short, long = "pid", value_name = "PID", value_delimiter = ',', conflicts_with_all = ["all", "command"])]
    pids: Vec<u32>,
    /// Trace these threads alone (comma-separated): not the rest of their process, nor the
    /// children they fork.
    #[arg(short = 't', long = "tid", value_name = "TID", value_delimiter = ',', conflicts_with_all = ["all", "command", "pids"])]
    tids: Vec<u32>,
    /// Trace the whole system (tracekit itself excluded).
    #[arg(short, long, conflicts_with = "command")]
    all: bool,
    /// The command to run and trace, after `--`.
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

/// The in-kernel filters.
#[derive(Args)]
pub(crate) struct FilterArgs {
    /// Only these syscalls: names, globs ('epoll_*'), classes (%file %net %process %memory
    /// %signal %ipc), '!' to exclude ('!read,!write'). Filtered in the kernel.
    #[arg(short = 'e', long = "syscall", value_name = "LIST")]
    syscalls: Option<String>,
    /// Only calls that returned an error.
    #[arg(long)]
    failed: bool,
    /// Only tasks running as this user (name or uid).
    #[arg(short, long, value_name = "USER")]
    uid: Option<String>,
    /// Only tasks in this cgroup v2 directory or below it (e.g. /sys/fs/cgroup/system.slice).
    #[arg(long, value_name = "PATH")]
    cgroup: Option<PathBuf>,
}

/// Arguments of `trace top`.
#[derive(Args)]
pub struct TopArgs {
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    filters: FilterArgs,
    /// Refresh every SECS seconds.
    #[arg(short, long, value_name = "SECS", default_value_t = 1.0)]
    interval: f64,
}

/// Arguments of `trace diff`.
#[derive(Args)]
pub struct DiffArgs {
    /// The first report (A, "before").
    before: PathBuf,
    /// The second report (B, "after").
    after: PathBuf,
    /// Print the comparison as JSON.
    #[arg(long)]
    json: bool,
    /// Write the comparison to FILE instead of the terminal.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    Total,
    Process,
    Thread,
    Cgroup,
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
}

/// Runs a `trace` subcommand.
pub fn run(command: TraceCommand) -> anyhow::Result<ExitCode> {
    match command {
        TraceCommand::Summary(args) => summary(args),
        TraceCommand::Diff(args) => diff(args),
        TraceCommand::Top(args) => top(args),
    }
}

fn diff(args: DiffArgs) -> anyhow::Result<ExitCode> {
    use tracekit_summary::diff;
    let output = OutputTarget::new(args.output.as_deref());
    let rows = diff::compare(&diff::read(&args.before)?, &diff::read(&args.after)?);
    output.prepare()?;
    if args.json {
        output.write_json(&rows)?;
    } else {
        output.write(&diff::table(&rows, output.style()))?;
    }
    Ok(ExitCode::SUCCESS)
}

impl TargetArgs {
    fn target(&self, subcommand: &str) -> anyhow::Result<Target> {
        Ok(match (&self.command[..], &self.pids[..], self.all) {
            ([], [], false) if !self.tids.is_empty() => Target::Threads(self.tids.clone()),
            ([], [], false) => anyhow::bail!(
                "nothing to trace: give a command after `--`, -p PID, -t TID, or -a (see `tracekit trace {subcommand} --help`)"
            ),
            ([], [], true) => Target::All,
            ([], pids, false) => Target::Pids(pids.to_vec()),
            (cmd, _, _) => Target::Command(cmd.to_vec()),
        })
    }
}

impl FilterArgs {
    /// The filter fields of the options.
    pub(crate) fn apply(&self, options: Options) -> anyhow::Result<Options> {
        let syscalls = self
            .syscalls
            .as_deref()
            .map(|spec| tracekit_core::syscall_set::select(Arch::host(), spec))
            .transpose()
            .map_err(|e| anyhow::anyhow!("-e/--syscall: {e}"))?;
        Ok(Options {
            syscalls: syscalls.map(|set| set.into_iter().collect()),
            failed: self.failed,
            uid: self.uid.as_deref().map(parse_user).transpose()?,
            cgroup: self.cgroup.clone(),
            ..options
        })
    }
}

/// An interval of at least 10 ms.
fn interval_of(secs: f64) -> anyhow::Result<Duration> {
    match Duration::try_from_secs_f64(secs) {
        Ok(every) if every >= Duration::from_millis(10) => Ok(every),
        _ => anyhow::bail!("--interval must be at least 0.01 seconds (got {secs})"),
    }
}

fn top(args: TopArgs) -> anyhow::Result<ExitCode> {
    let target = args.target.target("top")?;
    let every = interval_of(args.interval)?;
    let options = args.filters.apply(Options::default())?;
    let stop = crate::stop::flag_without_escape()?;
    let outcome = match tracekit_summary::top::run(&options, &target, every, stop.clone()) {
        Ok(outcome) => outcome,
        Err(e @ SummaryError::CommandNotFound(_)) => return Ok(command_error(&e, 127)),
        Err(e @ SummaryError::NotExecutable { .. }) => return Ok(command_error(&e, 126)),
        Err(e) => return Err(e.into()),
    };
    outcome
        .notes
        .iter()
        .for_each(|n| eprintln!("tracekit: {n}"));
    Ok(match outcome.exit {
        Some(status) => ExitCode::from(status.exit_code()),
        None => ExitCode::SUCCESS,
    })
}

fn summary(args: SummaryArgs) -> anyhow::Result<ExitCode> {
    let target = args.target.target("summary")?;
    let interval = args
        .interval
        .map(|secs| {
            interval_of(secs).map(|every| Interval {
                every,
                count: args.count,
            })
        })
        .transpose()?;
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
            ModeArg::Cgroup => Mode::Cgroup,
        },
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
    let sort = sort_key(args.sort);
    let output = match target {
        Target::Command(_) => OutputTarget::new_or_stderr(args.output.as_deref()),
        _ => OutputTarget::new(args.output.as_deref()),
    };
    output.prepare()?;
    let stop = crate::stop::flag()?;
    let mut print_interval = |summary: &tracekit_summary::Summary| {
        let mut summary = summary.clone();
        summary.sort(sort);
        let written = if args.json {
            output.append_json_line(&render::json(&summary, render_options))
        } else {
            output.append(&render::table(&summary, render_options, output.style()))
        };
        written.map_err(|e| SummaryError::Output(e.to_string()))
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
        write_report(&output, &outcome.summary, render_options, args.json)?;
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

fn write_report(
    output: &OutputTarget,
    summary: &tracekit_summary::Summary,
    options: RenderOptions,
    json: bool,
) -> std::io::Result<()> {
    if json {
        output.write_json(&render::json(summary, options))
    } else {
        output.write(&render::table(summary, options, output.style()))
    }
}

/// A user name or a numeric uid.
fn parse_user(user: &str) -> anyhow::Result<u32> {
    if let Ok(uid) = user.parse() {
        return Ok(uid);
    }
    nix::unistd::User::from_name(user)
        .ok()
        .flatten()
        .map(|u| u.uid.as_raw())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "-u/--uid: no such user '{user}' (give a name from /etc/passwd or a number)"
            )
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
