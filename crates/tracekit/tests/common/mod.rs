//! Helpers shared by the CLI's end-to-end tests.
#![allow(dead_code)] // each test binary uses its own subset

use std::process::{Command, Output};

/// The tracekit binary under test.
pub const TRACEKIT: &str = env!("CARGO_BIN_EXE_tracekit");

/// Runs tracekit with `args` and collects its output.
pub fn tracekit(args: &[&str]) -> Output {
    Command::new(TRACEKIT)
        .args(args)
        .output()
        .expect("run tracekit")
}

/// Runs a command that must fail cleanly: exit status 1, the expected advice on stderr, no panic.
pub fn fails_with(args: &[&str], message: &str) {
    let out = tracekit(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    assert!(
        stderr.contains(message),
        "{args:?}: expected {message:?} in {stderr:?}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
