//! Where a probe run's output goes while it runs: `--print` lines as hits arrive, and with
//! `-i SECS` one report per interval (NDJSON with `--json`).

use std::io::Write as _;
use std::time::Duration;

use tracekit_core::report::OutputTarget;
use tracekit_probe::render::{self, HitPrinter};
use tracekit_probe::{HitEvent, Intervals, ProbeReport, Sink};

use crate::output::OutputArgs;

/// The CLI's [`Sink`].
pub struct Output<'a> {
    /// Formats `--print` lines.
    pub printer: HitPrinter<'a>,
    /// Streamed hits go to stderr (a command's own output stays untouched), else stdout.
    pub events_to_stderr: bool,
    /// `-i SECS`.
    pub every: Option<Duration>,
    /// `--json`, `-o`.
    pub flags: &'a OutputArgs,
    /// Where reports go.
    pub target: &'a OutputTarget,
    /// The interval reports so far.
    pub intervals: Intervals,
    /// The first failure to write an interval report (the run goes on; it is reported then).
    pub failed: Option<std::io::Error>,
}

impl Output<'_> {
    /// Writes the interval that ends with `so_far` (the run's last one: its end).
    pub fn write_interval(&mut self, so_far: &ProbeReport) -> std::io::Result<()> {
        let interval = self.intervals.next(so_far);
        self.flags.append(
            self.target,
            || render::interval_json(&interval),
            |style| render::interval_text(&interval, style),
        )
    }
}

impl Sink for Output<'_> {
    fn hit(&mut self, event: &HitEvent) {
        let line = self.printer.line(event);
        let _ = if self.events_to_stderr {
            std::io::stderr().write_all(line.as_bytes())
        } else {
            std::io::stdout().write_all(line.as_bytes())
        };
    }

    fn every(&self) -> Option<Duration> {
        self.every
    }

    fn started(&mut self) {
        // The first interval is timed from here, not from before the probes were placed.
        self.intervals = Intervals::start();
    }

    fn interval(&mut self, so_far: &ProbeReport) {
        if let Err(e) = self.write_interval(so_far) {
            self.failed.get_or_insert(e);
        }
    }
}
