//! The jump engine (`PtraceOptions::jump`) on the real kernel, against `testdata/target.c`
//! (the functions every engine probes) and `testdata/jump.c` (the fallback cases).

mod engine_contract;
mod ptrace_common;

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ptrace_common::*;
use tracekit_probe::breakpoint::BreakpointError;
use tracekit_probe::breakpoint::transport::ptrace::{self, PtraceOptions, Target};
use tracekit_probe::{HitEvent, Outcome, ProbeSpec, symbols};

fn jump() -> PtraceOptions {
    PtraceOptions {
        jump: true,
        ..Default::default()
    }
}

fn run_ok(specs: &[String], args: &[&str], opts: &PtraceOptions) -> (Outcome, String) {
    let (r, stdout) = traced(
        &probes(specs),
        args,
        opts,
        &AtomicBool::new(false),
        &mut |_| {},
    );
    (r.unwrap(), stdout)
}

/// No probe fell back to int3.
fn all_jumps(out: &Outcome) {
    assert_eq!(out.report.engine, "jump");
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
}

/// x86-64 through ptrace with jumps, on `testdata/target.c`.
struct X86Jump;

impl engine_contract::Backend for X86Jump {
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
        let resolved = ProbeSpec::parse_all(specs)
            .unwrap()
            .iter()
            .map(|s| symbols::resolve(s).unwrap())
            .collect::<Vec<_>>();
        let (result, stdout, exit_code) = traced_with_exit(&resolved, &args, &jump(), stop, on_hit);
        engine_contract::Run {
            result,
            stdout,
            exit_code,
        }
    }
}

#[test]
fn contract_hits_are_exact_and_the_program_unchanged() {
    engine_contract::hits_are_exact_and_the_program_unchanged(&X86Jump);
}

#[test]
fn contract_unsupported_instruction_is_refused() {
    engine_contract::unsupported_instruction_is_refused(&X86Jump);
}

#[test]
fn exact_hits_from_one_and_eight_threads_a_million_calls_each() {
    let specs = vec![spec("uprobe", "tk_empty")];
    for threads in ["1", "8"] {
        let args = ["--threads", threads, "--only", "tk_empty", "1000000"];
        let (out, stdout) = run_ok(&specs, &args, &jump());
        all_jumps(&out);
        let n: u64 = threads.parse().unwrap();
        assert_eq!(hits(&out, &specs[0]), n * 1_000_000, "{threads} threads");
        assert_eq!(stdout, plain_output(&args).0);
        assert_eq!(out.exit, Some(tracekit_probe::ExitStatus::Code(0)));
    }
}

#[test]
fn entry_and_return_from_eight_threads_are_exact() {
    let specs = vec![spec("uprobe", "tk_empty"), spec("uretprobe", "tk_empty")];
    let args = ["--threads", "8", "--only", "tk_empty", "100000"];
    let (out, stdout) = run_ok(&specs, &args, &jump());
    all_jumps(&out);
    assert_eq!(hits(&out, &specs[0]), 800_000);
    assert_eq!(hits(&out, &specs[1]), 800_000);
    let p = &out.report.probes[1];
    assert_eq!((p.missed, p.latency.unwrap().count), (0, 800_000));
    assert_eq!(p.histogram.as_ref().unwrap().total(), 800_000);
    assert_eq!(stdout, plain_output(&args).0);
}

#[test]
fn sleep_latency_is_about_one_ms() {
    let specs = vec![spec("uretprobe", "tk_sleep_1ms")];
    let args = [
        "--threads",
        "2",
        "--only",
        "tk_sleep_1ms",
        "--sleep",
        "20",
        "0",
    ];
    let (out, _) = run_ok(&specs, &args, &jump());
    all_jumps(&out);
    let p = &out.report.probes[0];
    assert_eq!(p.hits, 40);
    let lat = p.latency.unwrap();
    assert_eq!(lat.count, 40);
    // Taken in the target with the TSC: never below the sleep itself.
    assert!(lat.min >= 1_000_000, "min {} ns", lat.min);
    assert!(lat.mean() < 20e6, "mean {} ns", lat.mean());
    assert_eq!(p.histogram.as_ref().unwrap().total(), 40);
}

#[test]
fn every_first_instruction_kind_entry_and_return() {
    // call, jmp, jcc (flags live at entry: kept), RIP-relative mov and lea, push.
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
    let args = ["--threads", "2", "1000"];
    let (out, stdout) = run_ok(&specs, &args, &jump());
    all_jumps(&out);
    for s in &specs {
        assert_eq!(hits(&out, s), 2000, "{s}");
    }
    assert_eq!(stdout, plain_output(&args).0);
}

#[test]
fn probe_inside_a_function_keeps_the_flags() {
    // tk_jcc_entry+4 is its `jmp tk_jcc`, right after the `test` whose flags tk_jcc reads.
    let specs = vec![spec("uprobe", "tk_jcc_entry+4"), spec("uprobe", "tk_jcc")];
    let args = ["--only", "tk_jcc", "500"];
    let (out, stdout) = run_ok(&specs, &args, &jump());
    for s in &specs {
        assert_eq!(hits(&out, s), 500, "{s}");
    }
    assert_eq!(stdout, plain_output(&args).0);
}

fn jump_target() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        tracekit_probe::test_support::compile("jump.c", "jump-target", &["-lpthread"])
    })
}

fn jspec(kind: &str, f: &str) -> String {
    format!("{kind}:{}:{f}", jump_target().display())
}

/// Runs `program` under the engine, capturing its stdout.
fn traced_program(
    specs: &[String],
    program: &Path,
    args: &[&str],
    opts: &PtraceOptions,
) -> (Outcome, String) {
    let (mut reader, writer) = std::io::pipe().unwrap();
    let collector = std::thread::spawn(move || {
        let mut s = String::new();
        reader.read_to_string(&mut s).unwrap();
        s
    });
    let target = Target::SpawnRedirected {
        program: program.to_path_buf(),
        args: args.iter().map(OsString::from).collect(),
        stdin: None,
        stdout: Some(writer.into()),
    };
    let r = ptrace::run(
        &probes(specs),
        target,
        opts,
        &AtomicBool::new(false),
        &mut |_| {},
    );
    (r.unwrap(), collector.join().unwrap())
}

#[test]
fn fallbacks_to_int3_say_why_and_count_the_same() {
    let specs = vec![
        jspec("uprobe", "tkj_loop"),
        jspec("uprobe", "tkj_table"),
        jspec("uretprobe", "tkj_table"),
        jspec("uprobe", "tkj_short"),
    ];
    let (out, stdout) = traced_program(&specs, jump_target(), &["300"], &jump());
    for s in &specs {
        assert_eq!(hits(&out, s), 300, "{s}");
    }
    let plain = Command::new(jump_target()).arg("300").output().unwrap();
    assert_eq!(stdout.as_bytes(), plain.stdout);
    let w = out.warnings.join("\n");
    for (f, why) in [
        ("tkj_loop", "inside the displaced bytes"),
        ("tkj_table", "may go through a table"),
        ("tkj_short", "fewer than 5 bytes"),
    ] {
        assert!(
            out.warnings
                .iter()
                .any(|l| l.contains(f) && l.contains(why)),
            "{f}: {why}: {w}"
        );
    }
}

#[test]
fn a_thread_stopped_inside_the_displaced_bytes_is_moved_to_the_trampoline() {
    // The thread blocked in tkj_read's `syscall` has its pc on the `nop` after it, inside the
    // 5 displaced bytes: it goes to the copy of the `nop` in the trampoline, and the read,
    // restarted from the copy of the `syscall` just before it, returns when stdin closes.
    let mut child = Command::new(jump_target())
        .arg("--block")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = lines.next().unwrap().unwrap();
    assert!(ready.ends_with("ready"), "{ready}");
    let pid = child.id() as i32;
    let specs = vec![jspec("uprobe", "tkj_read")];
    let stop = AtomicBool::new(false);
    let out = std::thread::scope(|s| {
        let engine = s.spawn(|| {
            ptrace::run(
                &probes(&specs),
                Target::Attach(pid),
                &jump(),
                &stop,
                &mut |_| {},
            )
        });
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        engine.join().unwrap()
    })
    .unwrap();
    all_jumps(&out);
    drop(child.stdin.take());
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    assert_eq!(rest, ["read returned 0"]);
    assert!(child.wait().unwrap().success());
}

#[test]
fn stop_mid_run_detaches_and_the_program_finishes_correctly() {
    // Stopped while return addresses are hijacked (threads inside tk_sleep_1ms): the
    // trampolines stay mapped and take those returns after detach.
    let specs = vec![spec("uretprobe", "tk_sleep_1ms"), spec("uprobe", "tk_lea")];
    let args = ["--threads", "2", "--sleep", "300", "20"];
    let stop = AtomicBool::new(false);
    let (r, stdout, code) = std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(150));
            stop.store(true, Ordering::Relaxed);
        });
        traced_with_exit(&probes(&specs), &args, &jump(), &stop, &mut |_| {})
    });
    let out = r.unwrap();
    assert_eq!(
        out.exit, None,
        "the engine should have detached before the end"
    );
    assert!(hits(&out, &specs[0]) < 600);
    assert_eq!(hits(&out, &specs[1]), 40);
    assert_eq!(stdout, plain_output(&args).0);
    assert_eq!(code, Some(0));
}

#[test]
fn forked_child_counts_only_when_followed() {
    let specs = vec![spec("uprobe", "tk_empty"), spec("uretprobe", "tk_call")];
    let args = ["--fork", "100"];
    for (follow, want) in [(false, 100), (true, 200)] {
        let opts = PtraceOptions {
            follow_forks: follow,
            ..jump()
        };
        let (out, stdout) = run_ok(&specs, &args, &opts);
        all_jumps(&out);
        assert!(stdout.contains("child exit 0\n"), "{stdout}");
        assert_eq!(stdout, plain_output(&args).0);
        for s in &specs {
            assert_eq!(hits(&out, s), want, "{s}, follow {follow}");
        }
    }
}

#[test]
fn probes_are_placed_after_exec_through_a_shell() {
    let specs = vec![spec("uprobe", "tk_empty"), spec("uretprobe", "tk_empty")];
    let cmd = format!("exec {} --only tk_empty 40", build_target().display());
    let (out, stdout) = traced_program(&specs, Path::new("/bin/sh"), &["-c", &cmd], &jump());
    all_jumps(&out);
    assert_eq!(hits(&out, &specs[0]), 40);
    assert_eq!(hits(&out, &specs[1]), 40);
    assert_eq!(stdout, plain_output(&["--only", "tk_empty", "40"]).0);
}

#[test]
fn return_probes_survive_longjmp() {
    // jumper's 11 frames per iteration are abandoned by longjmp: they are dropped when a
    // frame at or above them is entered (leaf, from the same caller) or returns, so nothing
    // is missed and every other return is seen.
    let e = tracekit_probe::test_support::compile("longjmp.c", "longjmp", &[]);
    let specs: Vec<String> = ["rec", "jumper", "leaf"]
        .iter()
        .map(|f| format!("{}:{f}", e.display()))
        .collect();
    let (out, stdout) = traced_program(&specs, &e, &["10", "100"], &jump());
    all_jumps(&out);
    let got: Vec<(u64, u64)> = out
        .report
        .probes
        .iter()
        .map(|p| (p.hits, p.missed))
        .collect();
    assert_eq!(
        got,
        [(1100, 0), (1100, 0), (1100, 0), (0, 0), (100, 0), (100, 0)]
    );
    let plain = Command::new(&e).args(["10", "100"]).output().unwrap();
    assert_eq!(stdout.as_bytes(), plain.stdout);
    assert_eq!(out.exit, Some(tracekit_probe::ExitStatus::Code(3)));
}

#[test]
fn a_tail_call_between_probed_functions_keeps_one_hijack() {
    // tkj_tail jumps to tkj_leaf with its return address hijacked: tkj_leaf's return probe
    // counts a miss (the frame is the caller's), tkj_tail's sees every return.
    let specs = vec![
        jspec("uretprobe", "tkj_tail"),
        jspec("uprobe", "tkj_leaf"),
        jspec("uretprobe", "tkj_leaf"),
    ];
    let (out, stdout) = traced_program(&specs, jump_target(), &["500"], &jump());
    let plain = Command::new(jump_target()).arg("500").output().unwrap();
    assert_eq!(stdout.as_bytes(), plain.stdout);
    let p = &out.report.probes;
    assert_eq!((p[0].hits, p[0].missed), (500, 0));
    assert_eq!(p[1].hits, 500);
    assert_eq!((p[2].hits, p[2].missed), (0, 500));
}

#[test]
fn signal_handlers_entering_probed_functions_anywhere_lose_nothing() {
    // A 100 us SIGALRM handler calls tkj_leaf while the program calls it in a loop: handlers
    // land at every instruction of the trampolines, between every two stores.
    let specs = vec![jspec("uprobe", "tkj_leaf"), jspec("uretprobe", "tkj_leaf")];
    let (out, stdout) = traced_program(&specs, jump_target(), &["--signals", "1000000"], &jump());
    all_jumps(&out);
    let calls: u64 = stdout
        .strip_prefix("calls ")
        .and_then(|s| s.strip_suffix(" ok\n"))
        .unwrap_or_else(|| panic!("{stdout}"))
        .parse()
        .unwrap();
    assert!(calls > 1_000_000, "{stdout}: no handler ran");
    let p = &out.report.probes;
    assert_eq!((p[0].hits, p[1].hits, p[1].missed), (calls, calls, 0));
    assert_eq!(out.exit, Some(tracekit_probe::ExitStatus::Code(0)));
}

#[test]
fn probes_in_a_library_loaded_later_with_dlopen() {
    let lib = build_dl_lib().display().to_string();
    let specs = vec![
        format!("uprobe:{lib}:tk_dl_func"),
        format!("uretprobe:{lib}:tk_dl_func"),
        spec("uprobe", "tk_empty"),
    ];
    let args = ["--dlopen", &lib, "--only", "tk_empty", "300"];
    let (out, stdout) = run_ok(&specs, &args, &jump());
    all_jumps(&out);
    for s in &specs {
        assert_eq!(hits(&out, s), 300, "{s}");
    }
    assert_eq!(stdout, plain_output(&args).0);
}

#[test]
fn libc_malloc_and_free_entry_and_return() {
    // Real library code: the program's output must not change, and every return is seen.
    let libc = "/lib/x86_64-linux-gnu/libc.so.6";
    if !Path::new(libc).exists() {
        return;
    }
    let specs = vec![format!("{libc}:malloc"), format!("{libc}:free")];
    let args = ["--threads", "4", "--only", "tk_empty", "1000"];
    let (out, stdout) = run_ok(&specs, &args, &jump());
    all_jumps(&out);
    let p = &out.report.probes;
    for (entry, ret) in [(&p[0], &p[1]), (&p[2], &p[3])] {
        assert!(entry.hits > 0, "{}", entry.spec);
        assert_eq!((ret.hits, ret.missed), (entry.hits, 0), "{}", ret.spec);
    }
    assert_eq!(stdout, plain_output(&args).0);
}

#[test]
fn vfork_child_counts_as_the_parent_until_exec() {
    // The vfork child runs in its parent's memory (and its jumps, and its area) until it execs.
    let specs = vec![spec("uprobe", "tk_empty"), spec("uretprobe", "tk_empty")];
    let args = ["--vfork", "--only", "tk_empty", "50"];
    let (out, stdout) = run_ok(&specs, &args, &jump());
    all_jumps(&out);
    assert!(stdout.contains("vfork child exit 0\n"), "{stdout}");
    assert_eq!(stdout, plain_output(&args).0);
    assert_eq!(hits(&out, &specs[0]), 51);
    assert_eq!(hits(&out, &specs[1]), 51);
}
