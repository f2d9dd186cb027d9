//! `tracekit prog`: flags → tracekit_prog (BPF_PROG_TEST_RUN) → report.

mod run;

use crate::output::OutputArgs;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use tracekit_prog::BpfObject;
use tracekit_prog::render::render_suites;
use tracekit_prog::vectors::{Suite, SuiteReport};

/// `tracekit prog ...`
#[derive(Subcommand)]
pub enum ProgCommand {
    /// List the programs of a BPF object: name, type, ELF section, size, test-run support.
    #[command(after_help = crate::help::PROG_LIST_EXAMPLES)]
    List(ListArgs),
    /// Test-run one program on a packet, a context or every packet of a capture.
    #[command(
        long_about = crate::help::PROG_RUN,
        after_help = crate::help::PROG_RUN_EXAMPLES
    )]
    Run(Box<run::RunArgs>),
    /// Run a file of test vectors (cases with expected verdicts and output) as a suite.
    #[command(
        long_about = crate::help::PROG_TEST,
        after_help = crate::help::PROG_TEST_EXAMPLES
    )]
    Test(TestArgs),
}

/// `tracekit prog list`
#[derive(Args)]
pub struct ListArgs {
    /// The BPF object (ELF from clang -target bpf).
    object: PathBuf,
    #[command(flatten)]
    out: OutputArgs,
}

/// `tracekit prog test`
#[derive(Args)]
pub struct TestArgs {
    /// Test-vector files (TOML).
    #[arg(required = true)]
    vectors: Vec<PathBuf>,
    #[command(flatten)]
    out: OutputArgs,
}

/// Runs a `tracekit prog` subcommand.
pub fn run(c: ProgCommand) -> anyhow::Result<ExitCode> {
    match c {
        ProgCommand::List(a) => list(a),
        ProgCommand::Run(a) => run::run(*a),
        ProgCommand::Test(a) => test(a),
    }
}

fn list(a: ListArgs) -> anyhow::Result<ExitCode> {
    let mut obj = BpfObject::from_file(&a.object)?;
    obj.check_loads();
    a.out.emit(
        &a.out.target(),
        || obj.programs(),
        |style| obj.render_list(style),
    )?;
    Ok(ExitCode::SUCCESS)
}

fn test(a: TestArgs) -> anyhow::Result<ExitCode> {
    let reports = a
        .vectors
        .iter()
        .map(|path| Suite::from_file(path)?.run())
        .collect::<Result<Vec<SuiteReport>, _>>()?;
    a.out.emit(
        &a.out.target(),
        || &reports,
        |style| render_suites(&reports, style),
    )?;
    let ok = reports.iter().all(SuiteReport::all_passed);
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
