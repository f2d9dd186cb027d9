//! A whole run: choose the targets, start the command, wait for the end, read the summary.

use std::ffi::OsString;
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::kernel::{Options, Tracer};
use crate::model::Summary;
use crate::SummaryError;

/// What to trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Start this command (program and arguments) and trace it, its threads and every
    /// process it forks, until it exits.
    Command(Vec<OsString>),
    /// Trace these running processes (and their later children) until they all exit.
    Pids(Vec<u32>),
    /// Trace the whole system (except tracekit itself).
    All,
}

/// The result of a run.
#[derive(Debug)]
pub struct Outcome {
    /// The statistics.
    pub summary: Summary,
    /// How the command ended, for [`Target::Command`] (`None` if it was still running
    /// when the run was stopped).
    pub exit: Option<ExitStatus>,
}

const POLL: Duration = Duration::from_millis(5);

/// Traces `target` until it ends, `duration` passes, or `stop` is set (e.g. by Ctrl-C), then
/// reads the summary. `options.filter` is derived from the target.
pub fn run(options: &Options, target: &Target, duration: Option<Duration>, stop: &AtomicBool) -> Result<Outcome, SummaryError> {
    let options = Options { filter: *target != Target::All, ..*options };
    if let Target::Pids(pids) = target {
        if let Some(&dead) = pids.iter().find(|&&p| !alive(p)) {
            return Err(SummaryError::NoSuchProcess(dead));
        }
    }
    if let Target::Command(argv) = target {
        check_command(argv)?;
    }
    let mut tracer = Tracer::attach(&options)?;
    let deadline = duration.map(|d| Instant::now() + d);
    let ended = || stop.load(Ordering::Relaxed) || deadline.is_some_and(|d| Instant::now() >= d);
    match target {
        Target::All => {
            while !ended() {
                std::thread::sleep(POLL);
            }
            Ok(Outcome { summary: tracer.read()?, exit: None })
        }
        Target::Pids(pids) => {
            pids.iter().try_for_each(|&p| tracer.trace_tgid(p))?;
            while !ended() && pids.iter().any(|&p| alive(p)) {
                std::thread::sleep(POLL);
            }
            Ok(Outcome { summary: tracer.read()?, exit: None })
        }
        Target::Command(argv) => {
            // Children of tracekit are followed by the fork hook; tracekit's own syscalls are
            // excluded in the kernel, so the command is traced from its first instruction.
            tracer.trace_tgid(std::process::id())?;
            let mut child = spawn(argv)?;
            let exit = wait_child(&mut child, &ended);
            let summary = tracer.read()?;
            let exit = exit.or_else(|| grace_wait(&mut child));
            Ok(Outcome { summary, exit })
        }
    }
}

fn wait_child(child: &mut Child, ended: &dyn Fn() -> bool) -> Option<ExitStatus> {
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if ended() {
            return None;
        }
        std::thread::sleep(POLL);
    }
}

/// After Ctrl-C the command got the signal too: give it a moment to exit so its status can be
/// passed through.
fn grace_wait(child: &mut Child) -> Option<ExitStatus> {
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(POLL);
    }
    None
}

fn spawn(argv: &[OsString]) -> Result<Child, SummaryError> {
    let (program, args) = argv.split_first().expect("checked non-empty");
    Command::new(program).args(args).spawn().map_err(|e| SummaryError::Spawn {
        command: program.to_string_lossy().into_owned(),
        reason: e.to_string(),
    })
}

/// Refuses a command that cannot be run before anything is attached.
fn check_command(argv: &[OsString]) -> Result<(), SummaryError> {
    let Some(program) = argv.first() else {
        return Err(SummaryError::Spawn { command: String::new(), reason: "no command given".into() });
    };
    let name = program.to_string_lossy().into_owned();
    let found = if name.contains('/') {
        std::path::Path::new(program).is_file()
    } else {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
    };
    if found {
        Ok(())
    } else {
        Err(SummaryError::Spawn { reason: "command not found (check the name and $PATH)".into(), command: name })
    }
}

/// Whether the process exists and is not a zombie.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised comm, which may itself contain ") ".
        Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X')),
        Err(_) => false,
    }
}
