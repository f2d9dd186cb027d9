//! (being written)
use std::process::ExitCode;

/// Subcommands (being written).
#[derive(clap::Subcommand)]
pub enum BenchCommand {}

pub fn run(c: BenchCommand) -> anyhow::Result<ExitCode> {
    match c {}
}
