//! The BPF engine on the real kernel (root), against testdata/target.c: exact counts from
//! threads, latencies, streamed events, attaching by pid, every first-instruction kind.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::AtomicBool;

use tracekit_core::stats::{LatencyStats, Log2Histogram};
use tracekit_probe::bpf::{BpfError, BpfOptions, Session, run};
use tracekit_probe::symbols::{Lookup, resolve_with};
use tracekit_probe::{ExitStatus, HitEvent, Outcome, ProbeKind, ProbeSpec, ResolvedProbe, Target};

/// The test program, built once per test binary.
fn target() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(tracekit_probe::test_support::target)
}

fn resolve_all(specs: &[String]) -> Vec<ResolvedProbe> {
    let lookup = Lookup {
        pid: None,
        command: Some(target().to_path_buf()),
    };
    ProbeSpec::parse_all(specs)
        .unwrap()
        .iter()
        .map(|s| resolve_with(s, &lookup).unwrap())
        .collect()
}

fn run_command(specs: &[String], args: &[&str], print: bool) -> (Outcome, Vec<HitEvent>) {
    let probes = resolve_all(specs);
    let target = Target::Command {
        program: target().into(),
        args: args.iter().map(Into::into).collect(),
    };
    let mut events = Vec::new();
    let out = run(
        &probes,
        &target,
        &BpfOptions {
            print,
            ..Default::default()
        },
        &AtomicBool::new(false),
        &mut |e| events.push(e.clone()),
    )
    .unwrap();
    (out, events)
}

#[test]
fn counts_exact_hits_from_one_and_four_threads() {
    let t = target().display().to_string();
    let spec = vec![format!("uprobe:{t}:tk_empty")];
    let (out, _) = run_command(&spec, &["--only", "tk_empty", "1000"], false);
    assert_eq!(out.report.probes[0].hits, 1000);
    assert_eq!(out.exit, Some(ExitStatus::Code(0)));
    let (out, _) = run_command(
        &spec,
        &["--only", "tk_empty", "--threads", "4", "2500"],
        false,
    );
    assert_eq!(out.report.probes[0].hits, 10_000);
    assert_eq!(out.report.probes[0].missed, 0);
}

#[test]
fn short_form_measures_latency_of_a_1ms_sleep() {
    let specs = vec![format!("{}:tk_sleep_1ms", target().display())];
    let (out, _) = run_command(
        &specs,
        &[
            "--only",
            "tk_sleep_1ms",
            "--sleep",
            "20",
            "--threads",
            "2",
            "0",
        ],
        false,
    );
    let [entry, ret] = &out.report.probes[..] else {
        panic!("two probes")
    };
    assert_eq!((entry.kind, entry.hits), (ProbeKind::Uprobe, 40));
    assert_eq!(
        (ret.kind, ret.hits, ret.missed),
        (ProbeKind::Uretprobe, 40, 0)
    );
    let lat = ret.latency.unwrap();
    assert_eq!(lat.count, 40);
    assert!(lat.min >= 900_000 && lat.mean() <= 5_000_000.0, "{lat:?}");
    assert_eq!(ret.histogram.as_ref().unwrap().total(), 40);
    assert!(entry.latency.is_none());
}

#[test]
fn print_streams_arguments_and_return_values() {
    let t = target().display().to_string();
    let specs = vec![
        format!("uprobe:{t}:tk_empty"),
        format!("uretprobe:{t}:tk_empty"),
    ];
    let (out, events) = run_command(&specs, &["--only", "tk_empty", "5"], true);
    assert_eq!(out.lost_events, 0);
    assert_eq!(events.len(), 10);
    let entries: Vec<_> = events
        .iter()
        .filter(|e| e.kind == ProbeKind::Uprobe)
        .collect();
    let returns: Vec<_> = events
        .iter()
        .filter(|e| e.kind == ProbeKind::Uretprobe)
        .collect();
    // tk_empty(i, 2) returns i + 2.
    assert_eq!(
        entries
            .iter()
            .map(|e| (e.probe, e.args[0], e.args[1]))
            .collect::<Vec<_>>(),
        (0..5).map(|i| (0, i, 2)).collect::<Vec<_>>()
    );
    assert_eq!(
        returns
            .iter()
            .map(|e| (e.probe, e.retval))
            .collect::<Vec<_>>(),
        (0..5).map(|i| (1, Some(i + 2))).collect::<Vec<_>>()
    );
}

#[test]
fn attaches_to_a_running_process_by_pid() {
    use std::io::Write;
    let mut child = std::process::Command::new(target())
        .args([
            "--wait-stdin",
            "--only",
            "tk_empty",
            "--threads",
            "4",
            "300",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let probes = resolve_all(&[format!("uprobe:{}:tk_empty", target().display())]);
    let session = Session::attach(&probes, pid, &BpfOptions::default()).unwrap();
    child.stdin.take().unwrap().write_all(b"x").unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(session.report().unwrap().probes[0].hits, 1200);
    // And `run` on the exited process ends at once with the process gone.
    let e = run(
        &probes,
        &Target::Pid(pid),
        &BpfOptions::default(),
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(matches!(e, BpfError::NoSuchProcess(p) if p == pid), "{e}");
}

#[test]
fn dead_pid_is_an_error() {
    let probes = resolve_all(&[format!("uprobe:{}:tk_empty", target().display())]);
    let e = run(
        &probes,
        &Target::Pid(0x7fff_fff0),
        &BpfOptions::default(),
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(matches!(e, BpfError::NoSuchProcess(_)), "{e}");
    assert!(e.to_string().contains("no process with pid"), "{e}");
}

/// The kernel's aggregated statistics equal those computed from every streamed latency:
/// count, sum, min, max, the 128-bit sum of squares and the log2 buckets, exactly.
#[test]
fn kernel_statistics_equal_the_streamed_latencies() {
    let specs = vec![format!("uretprobe:{}:tk_sleep_1ms", target().display())];
    let (out, events) = run_command(
        &specs,
        &[
            "--only",
            "tk_sleep_1ms",
            "--sleep",
            "15",
            "--threads",
            "2",
            "0",
        ],
        true,
    );
    let ret = &out.report.probes[0];
    let latencies: Vec<u64> = events.iter().map(|e| e.latency_ns.unwrap()).collect();
    assert_eq!(latencies.len(), 30);
    assert_eq!(
        ret.latency.unwrap(),
        LatencyStats::from_values(latencies.iter().copied())
    );
    let mut hist = Log2Histogram::default();
    latencies.iter().for_each(|&v| hist.record(v));
    assert_eq!(ret.histogram.as_ref().unwrap().buckets, hist.buckets);
}

/// The kernel handles every kind of first instruction (RIP-relative, call, jmp, jcc, push):
/// exact hits for each, entry and return, and the program's output is unchanged.
#[test]
fn every_first_instruction_kind_counts_exactly() {
    let funcs = [
        "tk_riprel",
        "tk_lea",
        "tk_call",
        "tk_jmp",
        "tk_jcc",
        "tk_push",
        "tk_empty",
    ];
    let specs: Vec<String> = funcs
        .iter()
        .map(|f| format!("{}:{f}", target().display()))
        .collect();
    let probes = resolve_all(&specs);
    let dir = std::env::temp_dir().join(format!("tk-probe-kinds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The program writes its output to a file through a shell, so it can be compared.
    let traced = dir.join("traced.txt");
    let script = format!(
        "exec {} --threads 3 250 > {}",
        target().display(),
        traced.display()
    );
    let target_cmd = Target::Command {
        program: "sh".into(),
        args: vec!["-c".into(), script.into()],
    };
    let out = run(
        &probes,
        &target_cmd,
        &BpfOptions::default(),
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .unwrap();
    for (i, p) in out.report.probes.iter().enumerate() {
        // tk_jcc is entered through tk_jcc_entry's jmp, once per call.
        assert_eq!((p.hits, p.missed), (750, 0), "{}", p.spec);
        assert_eq!(
            p.kind,
            if i % 2 == 0 {
                ProbeKind::Uprobe
            } else {
                ProbeKind::Uretprobe
            }
        );
    }
    let plain = std::process::Command::new(target())
        .args(["--threads", "3", "250"])
        .output()
        .unwrap();
    assert_eq!(std::fs::read(&traced).unwrap(), plain.stdout);
    std::fs::remove_dir_all(&dir).unwrap();
}
