//! Shared helpers for the ptrace engine tests: build the test target once, resolve probes,
//! run the engine with the target's stdout captured.
#![allow(dead_code)]

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::AtomicBool;

use tracekit_probe::breakpoint::BreakpointError;
use tracekit_probe::breakpoint::transport::ptrace::{self, PtraceOptions, Target};
use tracekit_probe::symbols::{self, ResolvedProbe};
use tracekit_probe::{ExitStatus, HitEvent, Outcome, ProbeSpec};

/// `testdata/target.c`, built once per test binary.
pub fn build_target() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(tracekit_probe::test_support::target)
}

/// `testdata/dl.c` built as a shared library, once; returns its path.
pub fn build_dl_lib() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        tracekit_probe::test_support::compile("dl.c", "libtk-dl.so", &["-shared", "-fPIC"])
    })
}

/// Resolves spec texts (short forms expand to entry + return) against the test target.
pub fn probes(specs: &[String]) -> Vec<ResolvedProbe> {
    ProbeSpec::parse_all(specs)
        .unwrap()
        .iter()
        .map(|s| symbols::resolve(s).unwrap())
        .collect()
}

/// `uprobe:TARGET:sym` etc. for the test target.
pub fn spec(kind: &str, sym: &str) -> String {
    format!("{kind}:{}:{sym}", build_target().display())
}

/// The target's stdout when run without any tracer.
pub fn plain_output(args: &[&str]) -> (String, Option<i32>) {
    let out = Command::new(build_target()).args(args).output().unwrap();
    (String::from_utf8(out.stdout).unwrap(), out.status.code())
}

/// Runs any program under the engine with default options, capturing its stdout.
pub fn traced_program(
    probes: &[ResolvedProbe],
    program: &str,
    args: &[&str],
) -> (Result<Outcome, BreakpointError>, String) {
    let (mut reader, writer) = std::io::pipe().unwrap();
    let collector = std::thread::spawn(move || {
        let mut s = String::new();
        reader.read_to_string(&mut s).unwrap();
        s
    });
    let target = Target::SpawnRedirected {
        program: program.into(),
        args: args.iter().map(OsString::from).collect(),
        stdin: None,
        stdout: Some(writer.into()),
    };
    let r = ptrace::run(
        probes,
        target,
        &PtraceOptions::default(),
        &AtomicBool::new(false),
        &mut |_| {},
    );
    (r, collector.join().unwrap())
}

/// Runs the target under the engine, capturing its stdout.
pub fn traced(
    probes: &[ResolvedProbe],
    args: &[&str],
    opts: &PtraceOptions,
    stop: &AtomicBool,
    on_hit: &mut dyn FnMut(&HitEvent),
) -> (Result<Outcome, BreakpointError>, String) {
    let (r, stdout, _) = traced_with_exit(probes, args, opts, stop, on_hit);
    (r, stdout)
}

/// [`traced`], also returning the program's exit code (waited for when the engine detached
/// early).
pub fn traced_with_exit(
    probes: &[ResolvedProbe],
    args: &[&str],
    opts: &PtraceOptions,
    stop: &AtomicBool,
    on_hit: &mut dyn FnMut(&HitEvent),
) -> (Result<Outcome, BreakpointError>, String, Option<i32>) {
    let (mut reader, writer) = std::io::pipe().unwrap();
    let collector = std::thread::spawn(move || {
        let mut s = String::new();
        reader.read_to_string(&mut s).unwrap();
        s
    });
    let target = Target::SpawnRedirected {
        program: build_target().to_path_buf(),
        args: args.iter().map(OsString::from).collect(),
        stdin: None,
        stdout: Some(writer.into()),
    };
    let r = ptrace::run(probes, target, opts, stop, on_hit);
    let mut code = match &r {
        Ok(o) => match o.exit {
            Some(ExitStatus::Code(c)) => Some(c),
            _ => None,
        },
        Err(_) => None,
    };
    if let Ok(o) = &r
        && o.exit.is_none()
    {
        // Detached early: the program is still our child; let it finish and reap it.
        let mut status = 0;
        // SAFETY: waiting for our own child; status is a valid out pointer.
        unsafe { libc::waitpid(o.pid, &mut status, 0) };
        if libc::WIFEXITED(status) {
            code = Some(libc::WEXITSTATUS(status));
        }
        if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
            eprintln!(
                "detached program ended with wait status {status:#x}; warnings {:?}",
                o.warnings
            );
        }
    }
    (r, collector.join().unwrap(), code)
}

/// Hits of the probe whose spec text is `spec`.
pub fn hits(o: &Outcome, spec: &str) -> u64 {
    o.report
        .probes
        .iter()
        .find(|p| p.spec == spec)
        .unwrap_or_else(|| panic!("no probe {spec}"))
        .hits
}
