//! What the summary test binaries share: the workload with exactly known syscalls, running it
//! under a tracer, and holding it at its start until a tracer is ready.
// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::ffi::OsString;
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use tracekit_summary::{Options, Outcome, Summary, Target};

pub const WORKLOAD: &str = env!("CARGO_BIN_EXE_tracekit-syscall-workload");

/// BPF programs of parallel tests would see each other's workloads in system-wide mode, and
/// system-wide tests must not run beside timing-sensitive ones.
static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The workload with `steps`, traced as a command until it exits.
pub fn run_command(options: &Options, steps: &[&str]) -> Outcome {
    let mut argv: Vec<OsString> = vec![WORKLOAD.into()];
    argv.extend(steps.iter().map(OsString::from));
    tracekit_summary::run(
        options,
        &Target::Command(argv),
        None,
        &AtomicBool::new(false),
    )
    .unwrap()
}

/// Calls of syscall `name` in a total-mode summary.
pub fn calls(summary: &Summary, name: &str) -> u64 {
    summary.total().syscall(name).map_or(0, |r| r.stats.count)
}

/// A workload that waits for a line on stdin, then runs `steps`.
pub fn waiting(steps: &[&str], setup: impl FnOnce(&mut Command)) -> Child {
    let mut command = Command::new(WORKLOAD);
    command.arg("wait").args(steps).stdin(Stdio::piped());
    setup(&mut command);
    command.spawn().unwrap()
}

/// Lets a [`waiting`] workload go and waits for its successful end.
pub fn release(child: &mut Child) {
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    assert!(child.wait().unwrap().success());
}
