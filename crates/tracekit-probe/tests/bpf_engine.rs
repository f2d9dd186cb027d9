//! The BPF engine as a backend of the engine contract, on the same x86-64 test program as the
//! ptrace engine. Every contract test runs but the detach one (see the list at the end for
//! why).

mod engine_contract;
mod ptrace_common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use ptrace_common::{build_target, plain_output, probes, spec};
use tracekit_probe::bpf::{self, BpfError, BpfOptions};
use tracekit_probe::{HitEvent, Target};

/// BPF uprobes on `testdata/target.c`.
struct Bpf;

impl engine_contract::Backend for Bpf {
    type Error = BpfError;

    fn spec(&self, kind: &str, function: &str) -> String {
        spec(kind, function)
    }
    fn args(&self, n: u32) -> Vec<String> {
        vec!["--only".into(), "tk_empty".into(), n.to_string()]
    }
    fn counted_function(&self) -> &'static str {
        "tk_empty"
    }
    fn refused_function(&self) -> (&'static str, &'static str) {
        // The kernel decides what a uprobe may sit on; the engine itself refuses AVX-512
        // (EVEX) instructions, before attaching anything: the kernel's out-of-line step
        // corrupts them in every process running the code.
        ("tk_evex", "zmm16")
    }
    fn is_refusal(&self, err: &BpfError) -> bool {
        matches!(err, BpfError::Avx512 { .. })
    }
    fn plain(&self, args: &[String]) -> (String, Option<i32>) {
        plain_output(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }
    fn run(
        &self,
        specs: &[String],
        args: &[String],
        stop: &AtomicBool,
        on_hit: &mut dyn FnMut(&HitEvent),
    ) -> engine_contract::Run<BpfError> {
        // The engine's command inherits stdout; the shell sends it to a file and execs the
        // program in the same process, the one the probes are scoped to.
        // One file per run: the contract's tests run in parallel in this process.
        static RUNS: AtomicUsize = AtomicUsize::new(0);
        let run = RUNS.fetch_add(1, Ordering::Relaxed);
        let name = format!("tk-bpf-contract-{}-{run}", std::process::id());
        let out = std::env::temp_dir().join(name);
        let mut sh_args = vec![
            "-c".into(),
            format!("exec \"$0\" \"$@\" > {}", out.display()).into(),
            build_target().into(),
        ];
        sh_args.extend(args.iter().map(Into::into));
        let target = Target::Command {
            program: "/bin/sh".into(),
            args: sh_args,
        };
        let opts = BpfOptions {
            print: true,
            ..Default::default()
        };
        let result = bpf::run(&probes(specs), &target, &opts, stop, on_hit);
        let stdout = std::fs::read_to_string(&out).unwrap_or_default();
        let _ = std::fs::remove_file(&out);
        let exit_code = result
            .as_ref()
            .ok()
            .and_then(|o| o.exit)
            .and_then(|e| match e {
                tracekit_probe::ExitStatus::Code(c) => Some(c),
                tracekit_probe::ExitStatus::Signal(_) => None,
            });
        engine_contract::Run {
            result,
            stdout,
            exit_code,
        }
    }
}

#[test]
fn contract_hits_are_exact_and_the_program_unchanged() {
    engine_contract::hits_are_exact_and_the_program_unchanged(&Bpf);
}

#[test]
fn contract_unsupported_instruction_is_refused() {
    engine_contract::unsupported_instruction_is_refused(&Bpf);
}

// Not run: `detach_mid_run_leaves_the_program_unchanged`. The BPF engine never stops the
// program: hits reach the stop flag through the ring buffer, polled every 50 ms, long after
// the test program's 200 calls have ended, so the run cannot stop mid-way through them (the
// test asserts it does); and a stopped BPF run does not wait for its command, so there is no
// exit status of the detached program to compare.
