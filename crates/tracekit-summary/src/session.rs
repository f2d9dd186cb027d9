//! A whole run: choose the targets, start the command, wait for the end, read the summary.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tracekit_core::process::{ExitStatus, FindError, alive, find_program, tgid_of};

use crate::Error;
use crate::kernel::{Options, TaskFilter, Tracer};
use crate::model::Summary;

/// What to trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Start this command (program and arguments) and trace it, its threads and every
    /// process it forks, until it exits.
    Command(Vec<OsString>),
    /// Trace these running processes (and their later children) until they all exit.
    Pids(Vec<u32>),
    /// Trace these threads alone (not the rest of their process, nor their children) until
    /// they all exit.
    Threads(Vec<u32>),
    /// Trace the whole system (except tracekit itself).
    All,
}

/// The result of a run.
#[derive(Debug)]
pub struct Outcome {
    /// The statistics.
    pub summary: Summary,
    /// How the command ended, for [`Target::Command`] (`None` if it could not be waited for).
    pub exit: Option<ExitStatus>,
    /// Things the user should know about how the run went (printed on stderr by the CLI).
    pub notes: Vec<String>,
}

const POLL: Duration = Duration::from_millis(5);
/// How long a command may take to exit after the run was stopped, before it is sent SIGTERM,
/// and again after that.
const GRACE: Duration = Duration::from_secs(1);

/// Reports every `every` during a run, `count` times at most (then the run ends).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    /// Time between reports.
    pub every: Duration,
    /// End the run after this many reports.
    pub count: Option<u32>,
}

/// Traces `target` until it ends, `duration` passes, or `stop` is set (e.g. by Ctrl-C), then
/// reads the summary. `options.filter` is derived from the target.
///
/// A command that is still running when the run stops is given [`GRACE`] to exit (after
/// Ctrl-C in a terminal it has the SIGINT too), then SIGTERM; after `--duration` it is sent
/// SIGTERM at once, like `timeout`. Its syscalls until it exits are in the summary.
pub fn run(
    options: &Options,
    target: &Target,
    duration: Option<Duration>,
    stop: &AtomicBool,
) -> Result<Outcome, Error> {
    run_with_intervals(options, target, duration, None, stop, &mut |_| Ok(()))
}

/// [`run`], also handing `report` a summary of each interval: the calls since the previous
/// one, computed from the kernel's cumulative maps (nothing is cleared, so nothing is lost
/// between intervals, and the intervals add up exactly to the run's total). The last,
/// partial interval is reported when the run ends (Ctrl-C included).
pub fn run_with_intervals(
    options: &Options,
    target: &Target,
    duration: Option<Duration>,
    interval: Option<Interval>,
    stop: &AtomicBool,
    report: &mut dyn FnMut(&Summary) -> Result<(), Error>,
) -> Result<Outcome, Error> {
    let options = Options {
        filter: match target {
            Target::All => TaskFilter::All,
            Target::Threads(_) => TaskFilter::Threads,
            _ => TaskFilter::Processes,
        },
        ..options.clone()
    };
    let mut notes = Vec::new();
    // The name the user typed stays the command's argv[0]; the resolved path is what runs.
    let arg0 = match target {
        Target::Command(argv) => argv.first().cloned(),
        _ => None,
    };
    let target = match target {
        Target::Pids(pids) => Target::Pids(resolve_pids(pids, &mut notes)?),
        Target::Threads(tids) => Target::Threads(check_threads(tids)?),
        Target::Command(argv) => {
            // Spawn the resolved path, so the child does no $PATH search after it registered.
            let mut argv = argv.clone();
            argv[0] = find_command(&argv)?.into_os_string();
            Target::Command(argv)
        }
        Target::All => Target::All,
    };
    let mut tracer = Tracer::attach(&options)?;
    let deadline = duration.map(|d| Instant::now() + d);
    let mut ticker = Ticker::new(interval);
    let mut failure = None;
    let mut ended = |tracer: &mut Tracer| {
        if let Err(e) = ticker.tick(tracer, report) {
            failure = Some(e);
        }
        failure.is_some()
            || ticker.finished()
            || stop.load(Ordering::Relaxed)
            || deadline.is_some_and(|d| Instant::now() >= d)
    };
    let exit = match &target {
        Target::All => {
            wait_until(&mut tracer, &mut ended, || false);
            None
        }
        Target::Pids(pids) | Target::Threads(pids) => {
            for &p in pids {
                match target {
                    Target::Threads(_) => tracer.trace_tid(p)?,
                    _ => tracer.trace_tgid(p)?,
                }
            }
            wait_until(&mut tracer, &mut ended, || pids.iter().all(|&p| !alive(p)));
            None
        }
        Target::Command(argv) => {
            let mut child = spawn(arg0.as_ref().unwrap_or(&argv[0]), argv, &tracer)?;
            let mut exit = None;
            wait_until(&mut tracer, &mut ended, || {
                exit = child.try_wait().ok().flatten().map(ExitStatus::from);
                exit.is_some()
            });
            let by_duration = !stop.load(Ordering::Relaxed);
            exit.or_else(|| stop_child(&mut child, by_duration, &mut notes))
        }
    };
    if let Some(e) = failure {
        return Err(e);
    }
    let summary = tracer.read()?;
    ticker.last(&summary, report)?;
    Ok(Outcome {
        summary,
        exit,
        notes,
    })
}

/// Polls until `done()` or `ended()`.
fn wait_until(
    tracer: &mut Tracer,
    ended: &mut dyn FnMut(&mut Tracer) -> bool,
    mut done: impl FnMut() -> bool,
) {
    while !done() && !ended(tracer) {
        std::thread::sleep(POLL);
    }
}

/// The interval reports of a run.
struct Ticker {
    interval: Option<Interval>,
    next: Instant,
    previous: Option<Summary>,
    reported: u32,
}

impl Ticker {
    fn new(interval: Option<Interval>) -> Ticker {
        Ticker {
            next: Instant::now() + interval.map_or(Duration::ZERO, |i| i.every),
            interval,
            previous: None,
            reported: 0,
        }
    }

    /// Reports an interval if one has passed.
    fn tick(
        &mut self,
        tracer: &mut Tracer,
        report: &mut dyn FnMut(&Summary) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let Some(interval) = self.interval else {
            return Ok(());
        };
        if Instant::now() < self.next || self.finished() {
            return Ok(());
        }
        self.next += interval.every;
        let now = tracer.read()?;
        self.report(now, report)
    }

    fn report(
        &mut self,
        now: Summary,
        report: &mut dyn FnMut(&Summary) -> Result<(), Error>,
    ) -> Result<(), Error> {
        self.reported += 1;
        let delta = now.since(self.previous.as_ref(), self.reported);
        self.previous = Some(now);
        report(&delta)
    }

    fn finished(&self) -> bool {
        self.interval
            .and_then(|i| i.count)
            .is_some_and(|count| self.reported >= count)
    }

    /// Reports the last, partial interval (unless the count of reports is reached).
    fn last(
        &mut self,
        summary: &Summary,
        report: &mut dyn FnMut(&Summary) -> Result<(), Error>,
    ) -> Result<(), Error> {
        if self.interval.is_none() || self.finished() {
            return Ok(());
        }
        self.report(summary.clone(), report)
    }
}

/// Ends a command that outlived the run: SIGTERM now (`timed_out`) or after a grace period.
fn stop_child(child: &mut Child, timed_out: bool, notes: &mut Vec<String>) -> Option<ExitStatus> {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let wait = |child: &mut Child| {
        let until = Instant::now() + GRACE;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Some(status.into()),
                Ok(None) if Instant::now() < until => std::thread::sleep(POLL),
                _ => return None,
            }
        }
    };
    if !timed_out && let Some(status) = wait(child) {
        return Some(status);
    }
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::SIGTERM);
    notes.push(format!(
        "sent SIGTERM to the command (pid {pid}): it was still running when the run ended"
    ));
    let status = wait(child);
    if status.is_none() {
        notes.push(format!(
            "the command (pid {pid}) is still running; its later syscalls are not in the summary"
        ));
    }
    status
}

/// Starts the command. It adds itself to the traced set just before exec, so none of what
/// tracekit does between fork and exec is counted, and pids are never reused into the set.
fn spawn(arg0: &OsString, argv: &[OsString], tracer: &Tracer) -> Result<Child, Error> {
    let (program, args) = argv.split_first().expect("checked non-empty");
    let registration = tracer.self_registration();
    let mut command = Command::new(program);
    command.arg0(arg0).args(args);
    // SAFETY: the hook only calls getpid and bpf(2), both async-signal-safe, and touches no
    // memory shared with the parent.
    unsafe { command.pre_exec(move || registration.register()) };
    command.spawn().map_err(|e| Error::Spawn {
        command: program.to_string_lossy().into_owned(),
        reason: e.to_string(),
    })
}

/// Finds the command's executable as a shell would, or says why it cannot be run, before
/// anything is attached.
fn find_command(argv: &[OsString]) -> Result<PathBuf, Error> {
    let Some(program) = argv.first() else {
        return Err(Error::Spawn {
            command: String::new(),
            reason: "no command given".into(),
        });
    };
    find_program(Path::new(program)).map_err(|e| match e {
        FindError::NotFound(name) => Error::CommandNotFound(name),
        FindError::NotExecutable { program, reason } => Error::NotExecutable {
            command: program,
            reason: reason.into(),
        },
    })
}

/// Checks that every thread id exists.
fn check_threads(tids: &[u32]) -> Result<Vec<u32>, Error> {
    match tids.iter().find(|&&t| t == 0 || !alive(t)) {
        Some(&t) => Err(Error::NoSuchProcess(t)),
        None => Ok(tids.to_vec()),
    }
}

/// Checks every pid, and turns thread ids into their process: the filter works on processes.
fn resolve_pids(pids: &[u32], notes: &mut Vec<String>) -> Result<Vec<u32>, Error> {
    let mut out = Vec::new();
    for &pid in pids {
        if pid == 0 || !alive(pid) {
            return Err(Error::NoSuchProcess(pid));
        }
        let tgid = tgid_of(pid).unwrap_or(pid);
        if tgid != pid {
            notes.push(format!(
                "{pid} is a thread of process {tgid}: tracing the whole process"
            ));
        }
        if !out.contains(&tgid) {
            out.push(tgid);
        }
    }
    Ok(out)
}
