//! The probe engine on LoongArch64, end to end: `testdata/loongarch/probe-target.c` waits under
//! `qemu-loongarch64-static -g PORT`, the engine connects to QEMU's gdb stub, probes it, runs it
//! to its exit. The tests every backend passes (`engine_contract`) run here too.

mod engine_contract;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::AtomicBool;

use engine_contract::{Backend, Run};
use tracekit_probe::breakpoint::BreakpointError;
use tracekit_probe::breakpoint::arch::loongarch64::LoongArch64;
use tracekit_probe::breakpoint::transport::gdb::qemu::{self, QemuOptions};
use tracekit_probe::test_support::qemu::{self as la, Qemu};
use tracekit_probe::{ExitStatus, HitEvent, Outcome, ProbeKind, ProbeSpec};

fn program() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(la::probe_target)
}

fn spec(kind: &str, function: &str) -> String {
    format!("{kind}:{}:{function}", program().display())
}

fn resolve(specs: &[String]) -> Vec<tracekit_probe::ResolvedProbe> {
    ProbeSpec::parse_all(specs)
        .unwrap()
        .iter()
        .map(|s| tracekit_probe::symbols::resolve(s).unwrap())
        .collect()
}

fn run(
    specs: &[String],
    args: &[String],
    opts: &QemuOptions,
    stop: &AtomicBool,
    on_hit: &mut dyn FnMut(&HitEvent),
) -> Run {
    let probes = resolve(specs);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let q = Qemu::start(program(), &args);
    let result = qemu::run::<LoongArch64>(&probes, &q.address(), opts, stop, on_hit);
    if result.is_err() {
        // Refused before running: QEMU still waits for a debugger.
        drop(q);
        return Run {
            result,
            stdout: String::new(),
            exit_code: None,
        };
    }
    let (stdout, exit_code, _) = q.finish();
    Run {
        result,
        stdout,
        exit_code,
    }
}

fn plain_with_signal(args: &[&str]) -> (String, Option<i32>, Option<i32>) {
    use std::os::unix::process::ExitStatusExt;
    let out = Command::new("qemu-loongarch64-static")
        .arg(program())
        .args(args)
        .output()
        .unwrap();
    (
        String::from_utf8(out.stdout).unwrap(),
        out.status.code(),
        out.status.signal(),
    )
}

fn plain(args: &[String]) -> (String, Option<i32>) {
    let out = Command::new("qemu-loongarch64-static")
        .arg(program())
        .args(args)
        .output()
        .unwrap();
    (String::from_utf8(out.stdout).unwrap(), out.status.code())
}

fn hits(o: &Outcome, spec: &str) -> u64 {
    o.report
        .probes
        .iter()
        .find(|p| p.spec == spec)
        .expect("probe in report")
        .hits
}

/// LoongArch64 under QEMU's gdb stub, for the tests every backend must pass.
struct LoongArchQemu;

impl Backend for LoongArchQemu {
    type Error = BreakpointError;

    fn spec(&self, kind: &str, function: &str) -> String {
        spec(kind, function)
    }
    fn args(&self, n: u32) -> Vec<String> {
        vec![n.to_string()]
    }
    fn counted_function(&self) -> &'static str {
        "work"
    }
    fn refused_function(&self) -> (&'static str, &'static str) {
        ("first_llsc", "LL/SC")
    }
    fn is_refusal(&self, err: &BreakpointError) -> bool {
        engine_contract::is_unsupported(err)
    }
    fn plain(&self, args: &[String]) -> (String, Option<i32>) {
        plain(args)
    }
    fn run(
        &self,
        specs: &[String],
        args: &[String],
        stop: &AtomicBool,
        on_hit: &mut dyn FnMut(&HitEvent),
    ) -> Run {
        let opts = QemuOptions {
            print: true,
            ..Default::default()
        };
        run(specs, args, &opts, stop, on_hit)
    }
}

#[test]
fn contract_hits_are_exact_and_the_program_unchanged() {
    engine_contract::hits_are_exact_and_the_program_unchanged(&LoongArchQemu);
}

#[test]
fn contract_unsupported_instruction_is_refused() {
    engine_contract::unsupported_instruction_is_refused(&LoongArchQemu);
}

#[test]
fn contract_detach_mid_run_leaves_the_program_unchanged() {
    engine_contract::detach_mid_run_leaves_the_program_unchanged(&LoongArchQemu);
}

/// Every first-instruction kind: `b` and `pcaddu12i` and `bceqz` simulated, `addi.d` and C
/// code out of line; entry and return probes on each, exact counts, output unchanged.
fn every_first_instruction_kind(opts: &QemuOptions) {
    let functions = [
        "work",
        "first_b",
        "first_pcadd",
        "first_addi",
        "first_bceqz",
        "set_fcc0",
    ];
    let specs: Vec<String> = functions
        .iter()
        .flat_map(|f| [spec("uprobe", f), spec("uretprobe", f)])
        .collect();
    let args = vec!["37".to_string()];
    let mut returns = 0;
    let r = run(&specs, &args, opts, &AtomicBool::new(false), &mut |e| {
        returns += u64::from(e.kind == ProbeKind::Uretprobe);
    });
    let out = r.result.unwrap();
    for s in &specs {
        assert_eq!(hits(&out, s), 37, "{s}");
    }
    assert_eq!(returns, 37 * functions.len() as u64);
    assert_eq!((r.stdout, r.exit_code), plain(&args));
    assert_eq!(out.exit, Some(ExitStatus::Code(3)));
    assert_eq!(out.report.engine, "qemu-gdb");
}

#[test]
fn every_first_instruction_kind_slots_jump_back() {
    every_first_instruction_kind(&QemuOptions {
        print: true,
        ..Default::default()
    });
}

#[test]
fn every_first_instruction_kind_slots_return_through_a_break() {
    every_first_instruction_kind(&QemuOptions {
        print: true,
        slot_breakpoint: true,
        ..Default::default()
    });
}

#[test]
fn return_values_and_arguments_are_read_from_the_registers() {
    let specs = vec![spec("uretprobe", "first_b")];
    let mut seen = Vec::new();
    let r = run(
        &specs,
        &["4".into()],
        &QemuOptions {
            print: true,
            ..Default::default()
        },
        &AtomicBool::new(false),
        &mut |e| {
            seen.push((e.args[0], e.retval));
        },
    );
    r.result.unwrap();
    // first_b(i) returns i + 1.
    assert_eq!(seen, (0..4).map(|i| (i, Some(i + 1))).collect::<Vec<_>>());
}

#[test]
fn a_binary_that_is_not_the_running_program_is_refused() {
    let other = la::hello();
    let specs = vec![format!("uprobe:{}:work", other.display())];
    let probes = resolve(&specs);
    let q = Qemu::start(program(), &[]);
    let err = qemu::run::<LoongArch64>(
        &probes,
        &q.address(),
        &QemuOptions::default(),
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(
        matches!(err, BreakpointError::NotTheProgram { .. }),
        "{err}"
    );
    // Refused, and the program is let go: it runs to its end unprobed.
    assert_eq!(q.finish(), plain_with_signal(&[]));
}

#[test]
fn an_x86_binary_is_refused_with_the_reason() {
    let x86 = tracekit_probe::test_support::target();
    let specs = vec![format!("uprobe:{}:tk_empty", x86.display())];
    let probes = resolve(&specs);
    let err = qemu::run::<LoongArch64>(
        &probes,
        "127.0.0.1:1",
        &QemuOptions::default(),
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(matches!(err, BreakpointError::WrongArch { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("x86-64 code but the target runs LoongArch64"),
        "{err}"
    );
}

#[test]
fn nothing_listening_is_a_clear_error() {
    let probes = resolve(&[spec("uprobe", "work")]);
    let opts = QemuOptions {
        connect_timeout: Some(std::time::Duration::from_millis(300)),
        ..Default::default()
    };
    let err = qemu::run::<LoongArch64>(
        &probes,
        &format!("127.0.0.1:{}", la::free_port()),
        &opts,
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("qemu-loongarch64-static -g PORT"),
        "{err}"
    );
}

#[test]
fn the_programs_own_break_is_passed_through() {
    // la-hello break: prints "break", then runs `break 0`, which kills it with SIGTRAP.
    let hello = la::hello();
    let q = Qemu::start(&hello, &["break"]);
    let specs = vec![format!("uprobe:{}:work", hello.display())];
    let out = qemu::run::<LoongArch64>(
        &resolve(&specs),
        &q.address(),
        &QemuOptions::default(),
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(out.exit, Some(ExitStatus::Signal(5)));
    let (stdout, _, _) = q.finish();
    let plain = Command::new("qemu-loongarch64-static")
        .arg(&hello)
        .arg("break")
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(plain.status.signal(), Some(5));
    assert_eq!(stdout.as_bytes(), &plain.stdout[..]);
}

#[test]
fn ctrl_c_interrupts_a_program_that_never_hits_and_detaches() {
    // la-hello loop: calls work() forever; the probe is on a function it never calls.
    let hello = la::hello();
    let mut q = Qemu::start(&hello, &["loop"]);
    let specs = vec![format!("{}:fcc_bits", hello.display())];
    let stop = AtomicBool::new(false);
    let out = std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(std::time::Duration::from_millis(300));
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        qemu::run::<LoongArch64>(
            &resolve(&specs),
            &q.address(),
            &QemuOptions::default(),
            &stop,
            &mut |_| {},
        )
    })
    .unwrap();
    assert_eq!(out.exit, None, "detached, the program still runs");
    assert_eq!(out.report.probes[0].hits, 0);
    // Detached: the program keeps running without the stub (QEMU would exit if it had died).
    assert!(
        q.running_after(std::time::Duration::from_millis(200)),
        "the program must still be running"
    );
}
