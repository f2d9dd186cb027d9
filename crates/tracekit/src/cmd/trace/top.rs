//! `tracekit trace top`: the live view.

use super::{FilterArgs, TargetArgs, command_error};
use clap::Args;
use std::process::ExitCode;
use tracekit_summary::{Error as SummaryError, Options};

/// Arguments of `trace top`.
#[derive(Args)]
pub struct TopArgs {
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    filters: FilterArgs,
    /// Refresh every SECS seconds.
    #[arg(short, long, value_name = "SECS", default_value_t = 1.0)]
    interval: f64,
}

pub fn run(args: TopArgs) -> anyhow::Result<ExitCode> {
    let target = args.target.target("top")?;
    let every = crate::args::interval(args.interval)?;
    let options = args.filters.apply(Options::default())?;
    let stop = crate::stop::flag_without_escape()?;
    let outcome = match tracekit_summary::top::run(&options, &target, every, stop.clone()) {
        Ok(outcome) => outcome,
        Err(e @ SummaryError::CommandNotFound(_)) => return Ok(command_error(&e, 127)),
        Err(e @ SummaryError::NotExecutable { .. }) => return Ok(command_error(&e, 126)),
        Err(e) => return Err(e.into()),
    };
    outcome
        .notes
        .iter()
        .for_each(|n| eprintln!("tracekit: {n}"));
    Ok(match outcome.exit {
        Some(status) => ExitCode::from(status.exit_code()),
        None => ExitCode::SUCCESS,
    })
}
