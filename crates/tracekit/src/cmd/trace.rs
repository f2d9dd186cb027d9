//! (being written)
use std::process::ExitCode;

/// Subcommands (being written).
#[derive(clap::Subcommand)]
pub enum TraceCommand {}

pub fn run(c: TraceCommand) -> anyhow::Result<ExitCode> {
    match c {}
}
