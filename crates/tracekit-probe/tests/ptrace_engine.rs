//! The ptrace probe engine on the real kernel, against `testdata/target.c`.

mod engine_contract;
mod ptrace_common;

use std::sync::atomic::{AtomicBool, Ordering};

use ptrace_common::*;
use tracekit_probe::breakpoint::BreakpointError;
use tracekit_probe::breakpoint::transport::ptrace::{self, PtraceOptions};
use tracekit_probe::{ExitStatus, HitEvent, ProbeKind, ProbeSpec};

fn run_ok(
    specs: &[String],
    args: &[&str],
    opts: &PtraceOptions,
) -> (tracekit_probe::Outcome, String) {
    let (r, stdout) = traced(
        &probes(specs),
        args,
        opts,
        &AtomicBool::new(false),
        &mut |_| {},
    );
    (r.unwrap(), stdout)
}

/// x86-64 through ptrace, on `testdata/target.c`, for the tests every backend must pass.
struct X86Ptrace;

impl engine_contract::Backend for X86Ptrace {
    type Error = BreakpointError;

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
        // tk_jmp: jmp rel32 (5 bytes), then a ud2 that is never executed.
        ("tk_jmp+5", "`ud2`")
    }
    fn is_refusal(&self, err: &BreakpointError) -> bool {
        engine_contract::is_unsupported(err)
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
    ) -> engine_contract::Run {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let opts = PtraceOptions {
            print: true,
            ..Default::default()
        };
        let resolved = ProbeSpec::parse_all(specs)
            .unwrap()
            .iter()
            .map(|s| tracekit_probe::symbols::resolve(s).unwrap())
            .collect::<Vec<_>>();
        let (result, stdout, exit_code) = traced_with_exit(&resolved, &args, &opts, stop, on_hit);
        engine_contract::Run {
            result,
            stdout,
            exit_code,
        }
    }
}

#[test]
fn contract_hits_are_exact_and_the_program_unchanged() {
    engine_contract::hits_are_exact_and_the_program_unchanged(&X86Ptrace);
}

#[test]
fn contract_unsupported_instruction_is_refused() {
    engine_contract::unsupported_instruction_is_refused(&X86Ptrace);
}

#[test]
fn contract_detach_mid_run_leaves_the_program_unchanged() {
    engine_contract::detach_mid_run_leaves_the_program_unchanged(&X86Ptrace);
}

#[test]
fn exact_hits_four_threads() {
    let specs = vec![
        spec("uprobe", "tk_empty"),
        spec("uretprobe", "tk_empty"),
        spec("uprobe", "tk_push"),
    ];
    let args = ["--threads", "4", "300"];
    let (out, stdout) = run_ok(&specs, &args, &PtraceOptions::default());
    assert_eq!(hits(&out, &specs[0]), 1200);
    assert_eq!(hits(&out, &specs[1]), 1200);
    assert_eq!(hits(&out, &specs[2]), 1200);
    assert_eq!(stdout, plain_output(&args).0);
}

#[test]
fn sleep_latency_is_about_one_ms() {
    let specs = vec![spec("uretprobe", "tk_sleep_1ms")];
    let args = ["--only", "tk_sleep_1ms", "--sleep", "20", "0"];
    let (out, _) = run_ok(&specs, &args, &PtraceOptions::default());
    let p = &out.report.probes[0];
    assert_eq!(p.hits, 20);
    let lat = p.latency.unwrap();
    assert_eq!(lat.count, 20);
    // About 1 ms, not microseconds or seconds; the upper bound leaves room for a loaded
    // machine that is slow to schedule the tracer at each stop.
    let mean_ms = lat.mean() / 1e6;
    assert!((0.9..20.0).contains(&mean_ms), "mean latency {mean_ms} ms");
    // Times are taken when the tracer sees each stop, so one may come out a little short.
    assert!(
        lat.min >= 500_000,
        "min {} ns is far below the 1 ms sleep",
        lat.min
    );
    assert_eq!(p.histogram.as_ref().unwrap().total(), 20);
}

/// Every first-instruction kind, entry and return, in the given mode.
fn all_kinds(opts: &PtraceOptions) {
    let funcs = [
        "tk_empty",
        "tk_riprel",
        "tk_lea",
        "tk_call",
        "tk_jmp",
        "tk_jcc",
        "tk_push",
    ];
    let specs: Vec<String> = funcs
        .iter()
        .flat_map(|f| [spec("uprobe", f), spec("uretprobe", f)])
        .collect();
    let args = ["--print", "200"];
    let (out, stdout) = run_ok(&specs, &args, opts);
    for s in &specs {
        assert_eq!(hits(&out, s), 200, "{s}");
        assert_eq!(
            out.report
                .probes
                .iter()
                .find(|p| &p.spec == s)
                .unwrap()
                .missed,
            0
        );
    }
    assert_eq!(stdout, plain_output(&args).0);
}

#[test]
fn every_first_instruction_kind_simulated_or_boosted() {
    all_kinds(&PtraceOptions::default());
}

#[test]
fn every_first_instruction_kind_out_of_line_with_slot_breakpoint() {
    all_kinds(&PtraceOptions {
        no_simulate: true,
        slot_breakpoint: true,
        ..Default::default()
    });
}

#[test]
fn every_first_instruction_kind_out_of_line_boosted() {
    all_kinds(&PtraceOptions {
        no_simulate: true,
        ..Default::default()
    });
}

#[test]
fn probe_inside_a_function_at_an_instruction_boundary() {
    // tk_push: push rbp (1) ; mov rbp,rsp (3) ; lea rax,[rdi+rsi*2] at +4.
    let specs = vec![spec("uprobe", "tk_push+4"), spec("uprobe", "tk_push+1")];
    let (out, _) = run_ok(
        &specs,
        &["--only", "tk_push", "50"],
        &PtraceOptions::default(),
    );
    assert_eq!(hits(&out, &specs[0]), 50);
    assert_eq!(hits(&out, &specs[1]), 50);
}

#[test]
fn print_streams_args_and_return_values() {
    let specs = vec![spec("uprobe", "tk_empty"), spec("uretprobe", "tk_empty")];
    let mut events: Vec<HitEvent> = vec![];
    let opts = PtraceOptions {
        print: true,
        ..Default::default()
    };
    let (r, _) = traced(
        &probes(&specs),
        &["--only", "tk_empty", "3"],
        &opts,
        &AtomicBool::new(false),
        &mut |e| events.push(e.clone()),
    );
    r.unwrap();
    assert_eq!(events.len(), 6);
    for (i, pair) in events.chunks(2).enumerate() {
        let i = i as u64;
        assert_eq!(
            (pair[0].kind, pair[0].args[0], pair[0].args[1]),
            (ProbeKind::Uprobe, i, 2)
        );
        assert_eq!(
            (pair[1].kind, pair[1].retval),
            (ProbeKind::Uretprobe, Some(i + 2))
        );
    }
}

#[test]
fn exit_status_passes_through() {
    let specs = vec![spec("uprobe", "tk_empty")];
    let (out, _) = run_ok(
        &specs,
        &["--only", "tk_empty", "--exit", "7", "5"],
        &PtraceOptions::default(),
    );
    assert_eq!(out.exit, Some(ExitStatus::Code(7)));
    assert_eq!(hits(&out, &specs[0]), 5);
}

#[test]
fn signals_pass_through() {
    let specs = vec![spec("uprobe", "tk_empty"), spec("uretprobe", "tk_jcc")];
    let args = ["--signal", "--threads", "2", "100"];
    let (out, stdout) = run_ok(&specs, &args, &PtraceOptions::default());
    assert!(stdout.contains("got SIGUSR1: 1\n"), "{stdout}");
    assert_eq!(stdout, plain_output(&args).0);
    assert_eq!(hits(&out, &specs[0]), 200);
}

#[test]
fn stop_flag_mid_run_detaches_and_the_program_finishes_correctly() {
    // Stop while return addresses are hijacked (inside tk_sleep_1ms) and slots are in use.
    let specs = vec![spec("uretprobe", "tk_sleep_1ms"), spec("uprobe", "tk_lea")];
    let args = ["--threads", "2", "--sleep", "60", "20"];
    let stop = AtomicBool::new(false);
    let mut n = 0;
    let opts = PtraceOptions {
        print: true,
        no_simulate: true,
        ..Default::default()
    };
    let (r, stdout) = traced(&probes(&specs), &args, &opts, &stop, &mut |e| {
        if e.kind == ProbeKind::Uretprobe {
            n += 1;
            if n == 10 {
                stop.store(true, Ordering::Relaxed);
            }
        }
    });
    let out = r.unwrap();
    assert_eq!(
        out.exit, None,
        "the engine should have detached before the end"
    );
    assert!(hits(&out, &specs[0]) >= 10 && hits(&out, &specs[0]) < 120);
    assert_eq!(stdout, plain_output(&args).0);
}

#[test]
fn attach_to_running_process_and_detach() {
    attach_and_detach(None);
}

#[test]
fn attach_pinned_and_detach_restores_the_affinity() {
    attach_and_detach(Some(0));
}

fn cpus_allowed(pid: i32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with("Cpus_allowed_list"))
        .unwrap()
        .to_string()
}

fn attach_and_detach(pin_cpu: Option<usize>) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let specs = vec![
        spec("uprobe", "tk_empty"),
        spec("uretprobe", "tk_sleep_1ms"),
    ];
    let args = ["--wait-stdin", "--sleep", "200", "50"];
    let mut child = Command::new(build_target())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let affinity = cpus_allowed(pid);
    let stop = AtomicBool::new(false);
    let probes = probes(&specs);
    let out = std::thread::scope(|s| {
        let engine = s.spawn(|| {
            let mut n = 0;
            let opts = PtraceOptions {
                print: true,
                pin_cpu,
                ..Default::default()
            };
            ptrace::run(
                &probes,
                ptrace::Target::Attach(pid),
                &opts,
                &stop,
                &mut |e| {
                    if e.kind == ProbeKind::Uretprobe {
                        n += 1;
                        if n == 20 {
                            stop.store(true, Ordering::Relaxed);
                        }
                    }
                },
            )
        });
        // Start the calls once the breakpoint is in place (the program may still be in the
        // middle of its exec when spawn returns: retry until its text is mapped).
        let mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
        let mut b = [0u8];
        for _ in 0..500 {
            if let Ok(addr) = probes[0].runtime_address(pid as u32) {
                std::os::unix::fs::FileExt::read_exact_at(&mem, &mut b, addr).unwrap();
                if b[0] == 0xcc {
                    break;
                }
            }
            if engine.is_finished() {
                panic!(
                    "the engine ended before placing its breakpoint: {:?}",
                    engine.join()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(b[0], 0xcc, "breakpoint never placed");
        child.stdin.take().unwrap().write_all(b"g").unwrap();
        engine.join().unwrap()
    });
    let out = out.unwrap();
    assert_eq!(
        cpus_allowed(pid),
        affinity,
        "affinity not restored at detach"
    );
    assert_eq!(out.exit, None);
    assert_eq!(hits(&out, &specs[0]), 50);
    assert!(hits(&out, &specs[1]) >= 20);
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        plain_output(&args).0
    );
}

#[test]
fn mid_instruction_address_is_refused_with_the_boundaries() {
    // tk_riprel starts with a 7-byte mov rax,[rip+..]. The resolver refuses +3 itself, so
    // move a resolved probe by hand to check that the engine does too.
    let mut p = probes(&[spec("uprobe", "tk_riprel")]);
    p[0].vaddr += 3;
    p[0].file_offset += 3;
    let (r, _) = traced(
        &p,
        &["1"],
        &PtraceOptions::default(),
        &AtomicBool::new(false),
        &mut |_| {},
    );
    let err = r.unwrap_err();
    assert!(
        matches!(err, BreakpointError::MidInstruction { .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("mov rax,[") && msg.contains("instruction boundary"),
        "{msg}"
    );
}

#[test]
fn dead_pid_is_a_clear_error() {
    let specs = vec![spec("uprobe", "tk_empty")];
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id() as i32;
    child.wait().unwrap();
    let r = ptrace::run(
        &probes(&specs),
        ptrace::Target::Attach(pid),
        &PtraceOptions::default(),
        &AtomicBool::new(false),
        &mut |_| {},
    );
    let err = r.unwrap_err();
    assert!(
        matches!(err, BreakpointError::NoSuchProcess(p) if p == pid),
        "{err}"
    );
}

#[test]
fn missing_program_is_a_clear_error() {
    let specs = vec![spec("uprobe", "tk_empty")];
    let r = ptrace::run(
        &probes(&specs),
        ptrace::Target::Spawn {
            program: "/nonexistent/prog".into(),
            args: vec![],
        },
        &PtraceOptions::default(),
        &AtomicBool::new(false),
        &mut |_| {},
    );
    assert!(matches!(r, Err(BreakpointError::Spawn { .. })), "{r:?}");
}

#[test]
fn forked_child_is_cleaned_and_let_go_by_default() {
    // With the breakpoints left in the child's copy it would die of SIGTRAP ("child exit 133").
    let specs = vec![
        spec("uprobe", "tk_empty"),
        spec("uretprobe", "tk_call"),
        spec("uprobe", "tk_riprel"),
    ];
    let args = ["--fork", "100"];
    let (out, stdout) = run_ok(
        &specs,
        &args,
        &PtraceOptions {
            no_simulate: true,
            ..Default::default()
        },
    );
    assert!(stdout.contains("child exit 0\n"), "{stdout}");
    assert_eq!(stdout, plain_output(&args).0);
    for s in &specs {
        assert_eq!(hits(&out, s), 100, "{s}: only the parent's calls");
    }
}

#[test]
fn forked_child_is_followed_when_asked() {
    let specs = vec![spec("uprobe", "tk_empty"), spec("uretprobe", "tk_call")];
    let args = ["--fork", "100"];
    let (out, stdout) = run_ok(
        &specs,
        &args,
        &PtraceOptions {
            follow_forks: true,
            ..Default::default()
        },
    );
    assert_eq!(stdout, plain_output(&args).0);
    for s in &specs {
        assert_eq!(hits(&out, s), 200, "{s}: parent and child");
    }
}

#[test]
fn pinned_to_one_cpu_counts_the_same() {
    let specs = vec![spec("uprobe", "tk_empty"), spec("uretprobe", "tk_empty")];
    let args = ["--threads", "2", "--only", "tk_empty", "500"];
    let (out, stdout) = run_ok(
        &specs,
        &args,
        &PtraceOptions {
            pin_cpu: Some(0),
            ..Default::default()
        },
    );
    assert_eq!(hits(&out, &specs[0]), 1000);
    assert_eq!(hits(&out, &specs[1]), 1000);
    assert_eq!(stdout, plain_output(&args).0);
}

#[test]
fn vfork_child_shares_the_breakpoints_until_exec() {
    // The vfork child runs in its parent's memory: it is traced as a thread (its tk_empty call
    // counts) and let go at exec; the parent's breakpoints must stay in place.
    let specs = vec![spec("uprobe", "tk_empty"), spec("uretprobe", "tk_empty")];
    let args = ["--vfork", "--only", "tk_empty", "50"];
    let (out, stdout) = run_ok(&specs, &args, &PtraceOptions::default());
    assert!(stdout.contains("vfork child exit 0\n"), "{stdout}");
    assert_eq!(stdout, plain_output(&args).0);
    assert_eq!(hits(&out, &specs[0]), 51);
    assert_eq!(hits(&out, &specs[1]), 51);
}

#[test]
fn probes_are_placed_after_exec_through_a_shell() {
    // sh execs the target: the probes go in at the new image's entry point.
    let specs = vec![spec("uprobe", "tk_empty")];
    let cmd = format!("exec {} --only tk_empty 40", build_target().display());
    let (r, stdout) = traced_program(&probes(&specs), "/bin/sh", &["-c", &cmd]);
    let out = r.unwrap();
    assert_eq!(hits(&out, &specs[0]), 40);
    assert_eq!(stdout, plain_output(&["--only", "tk_empty", "40"]).0);
}

#[test]
fn out_of_line_slots_near_the_program_and_near_libc_at_once() {
    // clock_nanosleep starts with `cmp edi,3` (out of line); libc is terabytes away from the
    // PIE program, so each needs its own slot area within RIP-relative reach.
    let specs = vec![
        "uprobe:libc.so.6:clock_nanosleep".to_string(),
        "uretprobe:libc.so.6:clock_nanosleep".to_string(),
        spec("uprobe", "tk_lea"),
        spec("uprobe", "tk_riprel"),
    ];
    let args = ["--sleep", "3", "5"];
    let opts = PtraceOptions {
        no_simulate: true,
        ..Default::default()
    };
    let (out, stdout) = run_ok(&specs, &args, &opts);
    assert_eq!(hits(&out, &specs[0]), 3);
    assert_eq!(hits(&out, &specs[1]), 3);
    assert_eq!(hits(&out, &specs[2]), 5);
    assert_eq!(hits(&out, &specs[3]), 5);
    assert_eq!(stdout, plain_output(&args).0);
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
}

#[test]
fn probes_in_a_library_loaded_later_with_dlopen() {
    let lib = build_dl_lib().display().to_string();
    let specs = vec![
        format!("uprobe:{lib}:tk_dl_func"),
        format!("uretprobe:{lib}:tk_dl_func"),
        spec("uprobe", "tk_empty"),
    ];
    // Thread 0 loads the library halfway through while threads 1 and 2 keep hitting tk_empty.
    let args = [
        "--threads",
        "3",
        "--only",
        "tk_empty",
        "--dlopen",
        &lib,
        "300",
    ];
    let (out, stdout) = run_ok(&specs, &args, &PtraceOptions::default());
    assert_eq!(hits(&out, &specs[0]), 300);
    assert_eq!(hits(&out, &specs[1]), 300);
    assert_eq!(hits(&out, &specs[2]), 900);
    assert_eq!(stdout, plain_output(&args).0);
    assert!(stdout.contains("dlopen checksum"), "{stdout}");
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
}

#[test]
fn dlopen_in_a_forked_child_followed_or_not() {
    // The fork child loads the library too: followed, its copy of the loader hook must be
    // known (or it dies of SIGTRAP); not followed, the hook must be gone from its copy.
    let lib = build_dl_lib().display().to_string();
    let specs = vec![
        format!("uprobe:{lib}:tk_dl_func"),
        spec("uprobe", "tk_empty"),
    ];
    let args = ["--fork", "--only", "tk_empty", "--dlopen", &lib, "40"];
    for follow_forks in [true, false] {
        let opts = PtraceOptions {
            follow_forks,
            ..Default::default()
        };
        let (out, stdout) = run_ok(&specs, &args, &opts);
        assert!(stdout.contains("child exit 0\n"), "{stdout}");
        assert_eq!(stdout, plain_output(&args).0);
        let n = if follow_forks { 80 } else { 40 };
        assert_eq!(hits(&out, &specs[0]), n, "follow_forks {follow_forks}");
        assert_eq!(hits(&out, &specs[1]), n, "follow_forks {follow_forks}");
    }
}
