//! `tracekit trace diff`: two saved summaries side by side.

use crate::output::OutputArgs;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `trace diff`.
#[derive(Args)]
pub struct DiffArgs {
    /// The first report (A, "before").
    before: PathBuf,
    /// The second report (B, "after").
    after: PathBuf,
    #[command(flatten)]
    out: OutputArgs,
}

pub fn run(args: DiffArgs) -> anyhow::Result<ExitCode> {
    use tracekit_summary::diff;
    let output = args.out.target();
    let rows = diff::compare(&diff::read(&args.before)?, &diff::read(&args.after)?);
    output.prepare()?;
    args.out
        .emit(&output, || &rows, |style| diff::table(&rows, style))?;
    Ok(ExitCode::SUCCESS)
}
