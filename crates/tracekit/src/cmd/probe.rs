//! (being written)
use std::process::ExitCode;

/// Arguments (being written).
#[derive(clap::Args)]
pub struct ProbeArgs {}

pub fn run(_args: ProbeArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
