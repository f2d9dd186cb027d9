//! The engine tests every backend must pass, written once against [`Backend`]: x86-64
//! (ptrace, `tests/ptrace_engine.rs`), LoongArch64 (QEMU's gdb stub,
//! `tests/loongarch_probe.rs`) and the BPF engine (`tests/bpf_engine.rs`) each implement it
//! for their own test program. A backend that cannot run one of these tests says why where
//! its tests are listed.
//!
//! A new architecture or transport gets these tests by implementing [`Backend`] for its test
//! program.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};

use tracekit_probe::breakpoint::BreakpointError;
use tracekit_probe::{ExitStatus, HitEvent, Outcome, ProbeKind};

/// What a run of the backend's test program produced.
pub struct Run<E = BreakpointError> {
    /// The engine's result.
    pub result: Result<Outcome, E>,
    /// The program's stdout.
    pub stdout: String,
    /// The program's exit code, waited for even when the engine detached early.
    pub exit_code: Option<i32>,
}

/// One engine (an architecture and transport of the breakpoint engine, or BPF) and its test
/// program.
pub trait Backend {
    /// The engine's error.
    type Error: std::fmt::Debug + std::fmt::Display;
    /// Probe spec text of `kind` (`uprobe`, `uretprobe`) on `function` of the test program.
    fn spec(&self, kind: &str, function: &str) -> String;
    /// Arguments making the test program call `counted_function()` exactly `n` times.
    fn args(&self, n: u32) -> Vec<String>;
    /// A plain C function the program calls `n` times for `args(n)`.
    fn counted_function(&self) -> &'static str;
    /// A function whose first instruction the engine must refuse, and a piece of its text.
    fn refused_function(&self) -> (&'static str, &'static str);
    /// Whether `err` is the engine's refusal of an instruction it cannot probe.
    fn is_refusal(&self, err: &Self::Error) -> bool;
    /// Runs the program with `args` unprobed: (stdout, exit code).
    fn plain(&self, args: &[String]) -> (String, Option<i32>);
    /// Runs the program with `args` under the engine; `on_hit` sees every hit and may set
    /// `stop` (the engine then detaches and the program finishes unprobed).
    fn run(
        &self,
        specs: &[String],
        args: &[String],
        stop: &AtomicBool,
        on_hit: &mut dyn FnMut(&HitEvent),
    ) -> Run<Self::Error>;
}

fn hits(o: &Outcome, spec: &str) -> u64 {
    o.report
        .probes
        .iter()
        .find(|p| p.spec == spec)
        .expect("probe in report")
        .hits
}

/// Entry and return probes on a function called exactly N times see exactly N hits each; the
/// program's output and exit status are what they are without the engine.
pub fn hits_are_exact_and_the_program_unchanged<B: Backend + ?Sized>(b: &B) {
    let f = b.counted_function();
    let specs = vec![b.spec("uprobe", f), b.spec("uretprobe", f)];
    let args = b.args(1000);
    let run = b.run(&specs, &args, &AtomicBool::new(false), &mut |_| {});
    let out = run.result.expect("engine run");
    assert_eq!(hits(&out, &specs[0]), 1000);
    assert_eq!(hits(&out, &specs[1]), 1000);
    let p = &out.report.probes[1];
    assert_eq!(p.latency.expect("return probes have latency").count, 1000);
    let (stdout, code) = b.plain(&args);
    assert_eq!(run.stdout, stdout);
    assert_eq!(out.exit, code.map(ExitStatus::Code));
}

/// A probe on an instruction the backend cannot handle is refused before the program runs,
/// naming the instruction and the reason.
pub fn unsupported_instruction_is_refused<B: Backend + ?Sized>(b: &B) {
    let (f, text) = b.refused_function();
    let specs = vec![b.spec("uprobe", f)];
    let run = b.run(&specs, &b.args(3), &AtomicBool::new(false), &mut |_| {});
    let err = run.result.expect_err("refused");
    assert!(b.is_refusal(&err), "{err}");
    assert!(err.to_string().contains(text), "{err}");
}

/// [`Backend::is_refusal`] for the breakpoint engine's backends.
pub fn is_unsupported(err: &BreakpointError) -> bool {
    matches!(err, BreakpointError::Unsupported { .. })
}

/// Stopping mid-run (Ctrl-C) while a return address is hijacked detaches cleanly: the
/// program finishes with the output and exit status it has without the engine.
pub fn detach_mid_run_leaves_the_program_unchanged<B: Backend + ?Sized>(b: &B) {
    let f = b.counted_function();
    let specs = vec![b.spec("uprobe", f), b.spec("uretprobe", f)];
    let args = b.args(200);
    let stop = AtomicBool::new(false);
    let mut entries = 0;
    let run = b.run(&specs, &args, &stop, &mut |e| {
        // Stop right after an entry: its return address is hijacked at that moment.
        if e.kind == ProbeKind::Uprobe {
            entries += 1;
            if entries == 50 {
                stop.store(true, Ordering::Relaxed);
            }
        }
    });
    let out = run.result.expect("engine run");
    assert_eq!(
        out.exit, None,
        "the engine should have detached before the end"
    );
    let h = hits(&out, &specs[0]);
    assert!((50..200).contains(&h), "{h} hits");
    let (stdout, code) = b.plain(&args);
    assert_eq!(run.stdout, stdout);
    assert_eq!(run.exit_code, code);
}
