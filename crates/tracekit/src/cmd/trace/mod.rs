//! `tracekit trace`: summary, top and diff; the target and filter flags they share.

mod diff;
mod summary;
mod top;

use clap::{Args, Subcommand};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use tracekit_core::syscalls::Arch;
use tracekit_summary::{Error as SummaryError, Options, Target};

/// `tracekit trace ...`
#[derive(Subcommand)]
pub enum TraceCommand {
    /// Per-syscall count, errors and latency statistics, aggregated in the kernel by BPF.
    #[command(
        long_about = crate::help::TRACE_SUMMARY,
        after_help = crate::help::TRACE_SUMMARY_EXAMPLES
    )]
    #[command(
        override_usage = "tracekit trace summary [OPTIONS] (-- COMMAND [ARGS...] | -p PID[,PID...] | -t TID[,TID...] | -a)"
    )]
    Summary(summary::SummaryArgs),
    /// Two saved summaries side by side, per syscall: calls, errors, avg and p99, and the change.
    #[command(
        long_about = crate::help::TRACE_DIFF,
        after_help = crate::help::TRACE_DIFF_EXAMPLES
    )]
    Diff(diff::DiffArgs),
    /// A live full-screen view: per syscall calls/s, errors/s, avg and p99 of the last interval.
    #[command(
        long_about = crate::help::TRACE_TOP,
        after_help = crate::help::TRACE_TOP_EXAMPLES
    )]
    #[command(
        override_usage = "tracekit trace top [OPTIONS] (-- COMMAND [ARGS...] | -p PID[,PID...] | -t TID[,TID...] | -a)"
    )]
    Top(top::TopArgs),
}

/// What to trace: a command, processes, threads or everything.
#[derive(Args)]
pub(super) struct TargetArgs {
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

/// Runs a `trace` subcommand.
pub fn run(command: TraceCommand) -> anyhow::Result<ExitCode> {
    match command {
        TraceCommand::Summary(args) => summary::run(args),
        TraceCommand::Diff(args) => diff::run(args),
        TraceCommand::Top(args) => top::run(args),
    }
}

impl TargetArgs {
    pub(super) fn target(&self, subcommand: &str) -> anyhow::Result<Target> {
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
            uid: self.uid.as_deref().map(uid_of).transpose()?,
            cgroup: self.cgroup.clone(),
            ..options
        })
    }
}

pub(super) fn command_error(err: &SummaryError, code: u8) -> ExitCode {
    eprintln!("tracekit: error: {err}");
    ExitCode::from(code)
}

/// -u/--uid: a user name or a numeric uid.
fn uid_of(user: &str) -> anyhow::Result<u32> {
    tracekit_core::process::user_id(user).ok_or_else(|| {
        anyhow::anyhow!(
            "-u/--uid: no such user '{user}' (give a name from /etc/passwd or a number)"
        )
    })
}
