//! `cargo xtask ci`: every check CI makes, in order, each timed; the first failure stops the run
//! and the timings so far are printed either way.

use crate::{cmd, tools};
use std::process::Stdio;
use std::time::{Duration, Instant};

type Step = (&'static str, fn() -> Result<(), String>);

const STEPS: &[Step] = &[
    ("packages", packages),
    ("BPF objects match their sources", bpf_objects),
    (
        "LoongArch64 opcode table matches LLVM's disassembler",
        opcode_table,
    ),
    ("kill-safety handler bytes match handler.S", rescue_handler),
    ("rustfmt", rustfmt),
    ("clippy", clippy),
    ("README test command", readme_test_command),
    (
        "LoongArch64 differential suite: case counts",
        differential_counts,
    ),
    ("BPF selftests corpus: counts", corpus_counts),
    ("fuzz targets: inputs tried per target", crate::fuzz::ci),
];

/// Runs every step; prints how long each took.
pub fn run() -> Result<(), String> {
    let mut times: Vec<(&str, Duration)> = Vec::new();
    let mut result = Ok(());
    for (name, step) in STEPS {
        println!("== {name}");
        let start = Instant::now();
        result = step().map_err(|e| format!("{name}: {e}"));
        times.push((name, start.elapsed()));
        if result.is_err() {
            break;
        }
    }
    print_times(&times);
    result
}

fn print_times(times: &[(&str, Duration)]) {
    println!("== time per step");
    let total: Duration = times.iter().map(|(_, t)| *t).sum();
    for (name, time) in times {
        println!("{:>8.1} s  {name}", time.as_secs_f64());
    }
    println!("{:>8.1} s  total (CI allows 5400 s)", total.as_secs_f64());
}

fn packages() -> Result<(), String> {
    tools::ensure(&[tools::TEST, tools::CI])
}

fn bpf_objects() -> Result<(), String> {
    cmd::run(cmd::at_root("bash").arg("bpf/build.sh"))?;
    unchanged("bpf/obj", "run bpf/build.sh and commit the objects")
}

fn opcode_table() -> Result<(), String> {
    cmd::run(
        cmd::at_root("python3")
            .arg("tools/loongarch-opcodes.py")
            .current_dir(cmd::root().join("crates/tracekit-probe")),
    )?;
    unchanged(
        "crates/tracekit-probe/src/breakpoint/arch/loongarch64/opcodes.rs",
        "run tools/loongarch-opcodes.py in crates/tracekit-probe and commit the table",
    )
}

fn rescue_handler() -> Result<(), String> {
    cmd::run(
        cmd::at_root("python3")
            .arg("tools/rescue-handler.py")
            .current_dir(cmd::root().join("crates/tracekit-probe")),
    )?;
    unchanged(
        "crates/tracekit-probe/src/breakpoint/transport/ptrace/session/rescue/area.rs",
        "run tools/rescue-handler.py in crates/tracekit-probe and commit area.rs",
    )
}

fn rustfmt() -> Result<(), String> {
    cmd::run(cargo().args(["fmt", "--all", "--check"]))
        .map_err(|e| format!("{e}: run cargo fmt --all and commit"))
}

fn clippy() -> Result<(), String> {
    cmd::run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--release",
        "--",
        "-D",
        "warnings",
    ]))
}

/// Reads the test command from the README (the line after `<!-- test-command -->` and its
/// opening fence), so that CI runs exactly what the README promises.
fn readme_test_command() -> Result<(), String> {
    let readme = std::fs::read_to_string(cmd::root().join("README.md"))
        .map_err(|e| format!("cannot read README.md: {e}"))?;
    let command = readme
        .lines()
        .skip_while(|l| l.trim() != "<!-- test-command -->")
        .nth(2)
        .filter(|l| !l.trim().is_empty() && !l.starts_with("```"))
        .ok_or("README.md has no command two lines after <!-- test-command -->")?;
    println!("+ {command}");
    cmd::run(cmd::at_root("sh").args(["-c", command]))
}

fn differential_counts() -> Result<(), String> {
    suite_counts(
        "tracekit-probe",
        "loongarch_differential",
        &["decoding:", "simulated:", "out of line:", "seed pcaddu18i:"],
    )
}

fn corpus_counts() -> Result<(), String> {
    suite_counts(
        "tracekit-prog",
        "selftests_corpus",
        &[
            "corpus:",
            "listed by",
            "  not ",
            "loaded by",
            "run by both",
            "__retval",
        ],
    )
}

/// Runs one test suite again with its output shown and prints the lines that start with one
/// of `wanted` (the suite's counts), and its result line.
fn suite_counts(package: &str, test: &str, wanted: &[&str]) -> Result<(), String> {
    let out = cargo()
        .args(["test", "--release", "-q", "-p", package, "--test", test])
        .args(["--", "--nocapture", "--test-threads=1"])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    for line in text.lines() {
        // The test harness prints a dot per passing test at the start of a quiet line.
        let line = line.trim_start_matches('.');
        let line = line.strip_prefix("test ").map_or(line, |rest| {
            rest.split_once("... ").map_or(line, |(_, counts)| counts)
        });
        if wanted.iter().any(|w| line.starts_with(w)) || line.starts_with("test result") {
            println!("{line}");
        }
    }
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{test} failed ({})", out.status))
    }
}

fn cargo() -> std::process::Command {
    cmd::at_root(&std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// Fails when `path` differs from what is committed (changed, added or removed files).
fn unchanged(path: &str, fix: &str) -> Result<(), String> {
    let status = cmd::at_root("git")
        .args(["status", "--porcelain", "--", path])
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    let changes = String::from_utf8_lossy(&status.stdout);
    if status.status.success() && changes.trim().is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{path} differs from what is committed:\n{changes}{fix}"
        ))
    }
}
