//! What every engine hands back: one [`HitEvent`] per streamed hit, one [`Outcome`] per run.
//!
//! The BPF engine and the breakpoint engines (ptrace, QEMU's gdb stub) fill the same types, so
//! a caller (the CLI, [`crate::render`]) never needs to know which engine ran.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use crate::report::ProbeReport;
use crate::spec::ProbeKind;

/// How the traced process ended, if it did while traced (any engine).
pub use tracekit_core::process::ExitStatus;

/// What a local engine traces (the BPF engine and the ptrace transport; the ptrace transport
/// has more forms of its own, which this converts into).
#[derive(Debug, Clone)]
pub enum Target {
    /// Start this command, probe it from its start, report when it exits.
    Command {
        /// The program (looked up on `PATH` if it has no slash).
        program: PathBuf,
        /// Its arguments, without `argv[0]`.
        args: Vec<OsString>,
    },
    /// A running process (all its threads), until it exits or the run is stopped.
    Pid(u32),
}

/// One hit, for streaming (`--print`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HitEvent {
    /// Index of the probe in the slice given to the engine.
    pub probe: usize,
    /// Thread id of the thread that hit it.
    pub tid: i32,
    /// Entry or return.
    pub kind: ProbeKind,
    /// The first six integer argument registers at entry. For return probes the breakpoint
    /// engines give the arguments saved at the matching entry; the BPF engine gives zeros.
    pub args: [u64; 6],
    /// The return value, for return probes.
    pub retval: Option<u64>,
    /// Entry-to-return time in ns, for return probes whose entry was seen.
    pub latency_ns: Option<u64>,
}

/// What an engine hands over while it runs: every hit when streaming (`print`) is on, and
/// every [`Sink::every`] the counts so far (for interval reports). A closure over
/// [`HitEvent`] is a sink that wants hits only.
pub trait Sink {
    /// One hit, as it happens (only when the engine was asked to stream them).
    fn hit(&mut self, event: &HitEvent);

    /// How often the engine calls [`Sink::interval`]; `None` (the default): never.
    fn every(&self) -> Option<Duration> {
        None
    }

    /// The run's counts so far (cumulative: [`ProbeReport::since`] makes an interval of
    /// two of them), every [`Sink::every`] while the target runs.
    fn interval(&mut self, so_far: &ProbeReport) {
        let _ = so_far;
    }

    /// The probes are in place and the intervals start now (called once, before the first
    /// [`Sink::interval`]).
    fn started(&mut self) {}
}

impl<F: FnMut(&HitEvent)> Sink for F {
    fn hit(&mut self, event: &HitEvent) {
        self(event)
    }
}

/// The first tick after `tick` that is still ahead: `tick + every`, or a whole number of
/// periods later when the clock has run past it.
pub fn next_tick(tick: std::time::Instant, every: Duration) -> std::time::Instant {
    let now = std::time::Instant::now();
    let mut next = tick + every;
    if next <= now && !every.is_zero() {
        let behind = now.duration_since(next).as_nanos() / every.as_nanos();
        next += every * (u32::try_from(behind).unwrap_or(u32::MAX - 1) + 1);
    }
    next
}

/// When the next interval report is due, for engines that poll.
#[derive(Debug, Clone, Copy)]
pub struct Ticker {
    every: Option<Duration>,
    next: Option<std::time::Instant>,
}

impl Ticker {
    /// A ticker for `sink`'s interval, starting now.
    pub fn new(sink: &dyn Sink) -> Ticker {
        let every = sink.every();
        Ticker {
            every,
            next: every.map(|d| std::time::Instant::now() + d),
        }
    }

    /// Whether an interval has ended (and the next one began). Ticks missed while the tracer
    /// could not run (stopped, starved) make one longer interval, not a burst of empty ones.
    pub fn due(&mut self) -> bool {
        match (self.every, self.next) {
            (Some(every), Some(next)) if std::time::Instant::now() >= next => {
                self.next = Some(next_tick(next, every));
                true
            }
            _ => false,
        }
    }

    /// Time until the next interval ends (`None` without intervals).
    pub fn remaining(&self) -> Option<Duration> {
        self.next
            .map(|n| n.saturating_duration_since(std::time::Instant::now()))
    }
}

/// What a run produced, whichever engine ran it.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Hits, misses and latencies per probe, in the order given.
    pub report: ProbeReport,
    /// The traced (or spawned) process. A program a breakpoint engine spawned and detached
    /// from early is still the caller's child: wait for it with `waitpid(pid)`.
    pub pid: i32,
    /// How the main process ended; `None` when the engine detached and left it running (or,
    /// for `-p`, did not see the end).
    pub exit: Option<ExitStatus>,
    /// Streamed events lost because a buffer was full (the BPF ring buffer; always 0 for the
    /// breakpoint engines). The counts in the report are complete regardless.
    pub lost_events: u64,
    /// Things the user should know that did not stop the run (probes never placed because
    /// their binary was never mapped, slot areas left mapped, ...).
    pub warnings: Vec<String>,
}

impl Outcome {
    /// The lines to show the user besides the report: the warnings, then lost events.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = self.warnings.clone();
        if self.lost_events > 0 {
            notes.push(format!(
                "{} streamed hits lost (ring buffer full); the counts in the report are complete",
                self.lost_events
            ));
        }
        notes
    }
}
