//! (being written)
use std::process::ExitCode;

/// Subcommands (being written).
#[derive(clap::Subcommand)]
pub enum ProgCommand {}

pub fn run(c: ProgCommand) -> anyhow::Result<ExitCode> {
    match c {}
}
