//! tracekit's chores, in Rust and versioned with the code (the `xtask` pattern):
//!
//! - `cargo xtask test [ARGS...]`: installs the tools the test suite runs (with apt-get, saying
//!   what and why), then `cargo test --workspace --release ARGS...`; a run that executes no test
//!   or ignores one is a failure.
//! - `cargo xtask ci`: everything CI checks, each step timed: packages, BPF objects against their
//!   sources, the LoongArch opcode table against LLVM, rustfmt, clippy, the README's test
//!   command, the LoongArch differential suite's counts, a short fixed-seed pass of every fuzz
//!   target.
//! - `cargo xtask fuzz [TARGET...] [--time SECS] [--seed N]`: runs the fuzz targets
//!   (crates/tracekit-fuzz) and prints the inputs tried and panics found per target.

mod ci;
mod cmd;
mod fuzz;
mod tests;
mod tools;

use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <job> [ARGS...]

jobs:
  test [ARGS...]   install what the tests need (apt-get, as root), then run
                   `cargo test --workspace --release ARGS...`
                   e.g. cargo xtask test -p tracekit-prog
                        cargo xtask test -- --test-threads=1
  ci               every CI check, timed (what `bash .ci/run` runs)
  tools            list the tools the tests and CI use, and which are missing
  fuzz [TARGET...] [--time SECS] [--seed N] [--inputs N] [--list]
                   run the fuzz targets (all by default, 10 s each); inputs that
                   panic are saved under fuzz/crashes/TARGET/
                   e.g. cargo xtask fuzz bpf-object --time 60
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => tests::run(&args[1..]),
        Some("ci") if args.len() == 1 => ci::run(),
        Some("tools") if args.len() == 1 => tools::list(),
        Some("fuzz") => fuzz::run(&args[1..]),
        Some("-h" | "--help" | "help") => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(other) => Err(format!("unknown job or arguments `{other}`\n\n{USAGE}")),
        None => Err(format!("no job given\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}
