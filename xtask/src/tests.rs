//! `cargo xtask test`: the README's test command. Installs what the suite needs, runs it, and
//! counts what ran: no test run, or a test ignored, is a failure, never a quiet pass.

use crate::{cmd, tools};
use std::io::{BufRead, BufReader};
use std::process::Stdio;

/// What the test binaries reported, added up.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Tests that passed.
    pub passed: u64,
    /// Tests that failed.
    pub failed: u64,
    /// Tests marked `#[ignore]` that did not run.
    pub ignored: u64,
}

impl Totals {
    /// Adds one `test result: ok. 3 passed; 0 failed; 1 ignored; ...` line; other lines are
    /// left alone.
    fn add_line(&mut self, line: &str) {
        let Some(rest) = line.trim_start().strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split([';', '.']) {
            let mut words = part.split_whitespace();
            let (Some(count), Some(what)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(count) = count.parse::<u64>() else {
                continue;
            };
            match what {
                "passed" => self.passed += count,
                "failed" => self.failed += count,
                "ignored" => self.ignored += count,
                _ => {}
            }
        }
    }
}

/// Installs the missing tools, then runs `cargo test --workspace --release ARGS...`.
pub fn run(args: &[String]) -> Result<(), String> {
    tools::ensure(&[tools::TEST])?;
    let mut cargo = cmd::at_root(&std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo.args(["test", "--release"]);
    if !args.iter().any(|a| a == "-p" || a.starts_with("--package")) {
        cargo.arg("--workspace");
    }
    cargo.args(args).stdout(Stdio::piped());
    eprintln!("xtask: {}", cmd::show(&cargo));
    let mut child = cargo
        .spawn()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    let mut totals = Totals::default();
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            println!("{line}");
            totals.add_line(&line);
        }
    }
    let status = child.wait().map_err(|e| format!("cargo test: {e}"))?;
    println!(
        "tests: {} passed, {} failed, {} ignored",
        totals.passed, totals.failed, totals.ignored
    );
    if !status.success() {
        return Err(format!("cargo test failed ({status})"));
    }
    if totals.passed == 0 {
        return Err("cargo test ran no test: that is a failure, not a pass".into());
    }
    if totals.ignored > 0 {
        return Err(format!(
            "{} tests were ignored: every test must run (remove #[ignore] or make it pass)",
            totals.ignored
        ));
    }
    Ok(())
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn result_lines_add_up() {
        let mut totals = Totals::default();
        totals.add_line("test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 3 filtered out; finished in 0.01s");
        totals.add_line("running 3 tests");
        totals.add_line("test result: FAILED. 2 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.50s");
        assert_eq!(
            totals,
            Totals {
                passed: 14,
                failed: 1,
                ignored: 1
            }
        );
    }
}
