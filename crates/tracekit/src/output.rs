//! `--json` and `-o/--output FILE`: the same two flags on every report, and the one place
//! that decides between a report's JSON and its text.

use std::io;
use std::path::PathBuf;

use serde::Serialize;
use tracekit_core::report::{OutputTarget, Style};

/// The output flags every report takes.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct OutputArgs {
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Write the report to FILE instead of the terminal (`-`: standard output).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

impl OutputArgs {
    /// Standard output, or the file of -o.
    pub fn target(&self) -> OutputTarget {
        OutputTarget::new(self.output.as_deref())
    }

    /// Standard error, or the file of -o: for reports on a command tracekit runs, whose own
    /// output must stay untouched (as with `strace -c` and `perf trace -s`).
    pub fn target_or_stderr(&self) -> OutputTarget {
        OutputTarget::new_or_stderr(self.output.as_deref())
    }

    /// Writes one whole report to `target`: `json()` with --json, otherwise the text
    /// `text(style)` renders for that destination (colour only on a terminal).
    pub fn emit<J: Serialize>(
        &self,
        target: &OutputTarget,
        json: impl FnOnce() -> J,
        text: impl FnOnce(Style) -> String,
    ) -> io::Result<()> {
        if self.json {
            target.write_json(&json())
        } else {
            target.write(&text(target.style()))
        }
    }

    /// Adds one report of a series (an interval): a line of JSON with --json (NDJSON),
    /// otherwise the rendered text.
    pub fn append<J: Serialize>(
        &self,
        target: &OutputTarget,
        json: impl FnOnce() -> J,
        text: impl FnOnce(Style) -> String,
    ) -> io::Result<()> {
        if self.json {
            target.append_json_line(&json())
        } else {
            target.append(&text(target.style()))
        }
    }
}
