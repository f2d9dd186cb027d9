//! `cargo xtask fuzz [TARGET...] [--time SECS] [--seed N] [--inputs N] [--list]`: builds the
//! fuzz runner (crates/tracekit-fuzz) with the `fuzz` profile (release, with overflow checks
//! and debug assertions in tracekit's crates) and runs it; see its `--help`.

use crate::cmd;

/// Seconds per target of CI's pass: 17 targets in under a minute.
const CI_SECONDS: &str = "3";

/// Runs the fuzz runner with `args`.
pub fn run(args: &[String]) -> Result<(), String> {
    let mut command = cmd::at_root("cargo");
    command.args([
        "run",
        "--profile",
        "fuzz",
        "-q",
        "-p",
        "tracekit-fuzz",
        "--",
    ]);
    command.args(args);
    cmd::run(&mut command)
}

/// CI's pass: every target, seed 1, a few seconds each; any panic, abort or hang fails it.
pub fn ci() -> Result<(), String> {
    run(&[
        "--seed".into(),
        "1".into(),
        "--time".into(),
        CI_SECONDS.into(),
    ])
}
