//! `trace summary` against the real kernel: workloads with exactly known syscalls.
//! Needs root (BPF); CI runs as root.

mod common;

use common::{WORKLOAD, calls, release, run_command, serial, waiting};
use std::ffi::OsString;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use tracekit_core::process::ExitStatus;
use tracekit_core::stats::LatencyStats;
use tracekit_summary::{Mode, Options, Summary, Target, Tracer};

fn run_workload(mode: Mode, errno: bool, steps: &[&str]) -> (Summary, i32) {
    let _guard = serial();
    let options = Options {
        mode,
        errno,
        ..Options::default()
    };
    let outcome = run_command(&options, steps);
    match outcome.exit {
        Some(ExitStatus::Code(code)) => (outcome.summary, code),
        other => panic!("the workload did not exit normally: {other:?}"),
    }
}

#[test]
fn exact_getppid_count() {
    let (summary, code) = run_workload(Mode::Total, false, &["getppid", "1000"]);
    assert_eq!(code, 0);
    assert_eq!(calls(&summary, "getppid"), 1000);
    assert_eq!(summary.total().syscall("getppid").unwrap().errors, 0);
    assert_eq!(summary.dropped.total(), 0);
    // exit_group never returns; it is counted at entry.
    assert_eq!(calls(&summary, "exit_group"), 1);
}

#[test]
fn errors_by_errno() {
    let (summary, _) = run_workload(Mode::Total, true, &["ebadf", "37", "enoent", "5"]);
    let close = summary.total().syscall("close").unwrap();
    // The workload's runtime closes a few descriptors successfully; only its 37 fail.
    assert_eq!(close.errors, 37);
    assert!(close.stats.count >= 37);
    assert_eq!(close.errnos.get(&libc::EBADF), Some(&37));
    let openat = summary.total().syscall("openat").unwrap();
    assert!(
        openat.errnos.get(&libc::ENOENT).copied().unwrap_or(0) >= 5,
        "{openat:?}"
    );
}

#[test]
fn latency_statistics_match_known_sleeps() {
    // 5 sleeps of 2 ms and 5 of 6 ms (mean about 4 ms, population stddev about 2 ms). The
    // workload also times each call itself; the kernel's interval lies inside the workload's,
    // so each kernel figure is at most the workload's and short of it only by the syscall
    // entry/exit path and any preemption there: 1 ms for the min and the mean, which one
    // preempted call barely moves, and a scheduler slice more (5 ms) for the max and the
    // stddev, which one preempted call on a loaded machine moves by all of its delay.
    let log = std::env::temp_dir().join(format!("tracekit-sleeplog-{}", std::process::id()));
    let sleeps = ["2000000", "6000000"].repeat(5);
    let mut steps = vec!["sleeplog", log.to_str().unwrap(), "sleep"];
    steps.extend(sleeps.iter().copied());
    let (summary, _) = run_workload(Mode::Total, false, &steps);
    let user = LatencyStats::from_values(
        std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .map(|l| l.parse::<u64>().unwrap()),
    );
    std::fs::remove_file(&log).unwrap();
    let s = summary.total().syscall("nanosleep").unwrap().stats;
    assert_eq!((s.count, user.count), (10, 10));
    assert!(s.min <= s.mean() as u64 && s.mean() as u64 <= s.max);
    assert!(
        s.min >= 2_000_000,
        "a 2 ms nanosleep never returns early: min {}",
        s.min
    );
    assert!(s.max >= 6_000_000, "max {}", s.max);
    const SLACK: f64 = 1_000_000.0;
    const ONE_PREEMPTION: f64 = 5_000_000.0;
    for (name, kernel, workload, slack) in [
        ("min", s.min as f64, user.min as f64, SLACK),
        ("max", s.max as f64, user.max as f64, ONE_PREEMPTION),
        ("mean", s.mean(), user.mean(), SLACK),
    ] {
        assert!(
            kernel <= workload && workload - kernel < slack,
            "{name}: kernel {kernel} ns, workload {workload} ns"
        );
    }
    assert!(
        (s.stddev() - user.stddev()).abs() < ONE_PREEMPTION,
        "stddev: kernel {}, workload {}",
        s.stddev(),
        user.stddev()
    );
    assert!(
        (1.5e6..5.0e6).contains(&s.stddev()),
        "stddev {} ns",
        s.stddev()
    );
}

#[test]
fn threads_and_forked_children_are_followed() {
    let (summary, _) = run_workload(
        Mode::Total,
        false,
        &["threads", "4", "250", "fork", "3", "100"],
    );
    assert_eq!(calls(&summary, "getppid"), 4 * 250 + 3 * 100);
}

#[test]
fn process_and_thread_modes_group_by_task() {
    let (summary, _) = run_workload(Mode::Process, false, &["getppid", "10", "fork", "2", "100"]);
    let mut per_process: Vec<u64> = summary
        .groups
        .iter()
        .map(|g| g.syscall("getppid").map_or(0, |r| r.stats.count))
        .collect();
    per_process.sort();
    assert_eq!(per_process, vec![10, 100, 100]);
    assert!(
        summary
            .groups
            .iter()
            .all(|g| g.comm.starts_with("tracekit-syscal")),
        "{:?}",
        summary.groups
    );

    let (summary, _) = run_workload(Mode::Thread, false, &["threads", "3", "50"]);
    let with_getppid: Vec<u64> = summary
        .groups
        .iter()
        .filter_map(|g| g.syscall("getppid").map(|r| r.stats.count))
        .collect();
    assert_eq!(with_getppid, vec![50, 50, 50]);
}

#[test]
fn exit_status_is_reported() {
    let (summary, code) = run_workload(Mode::Total, false, &["getppid", "3", "exit", "7"]);
    assert_eq!(code, 7);
    assert_eq!(calls(&summary, "getppid"), 3);
}

fn spawn_waiting(n: &str) -> std::process::Child {
    waiting(&["getppid", n], |_| {})
}

#[test]
fn pid_target_sees_another_process() {
    let _guard = serial();
    let mut child = spawn_waiting("321");
    let mut tracer = Tracer::attach(&Options::default()).unwrap();
    tracer.trace_tgid(child.id()).unwrap();
    release(&mut child);
    let summary = tracer.read().unwrap();
    assert_eq!(calls(&summary, "getppid"), 321);
}

#[test]
fn system_wide_sees_another_process() {
    let _guard = serial();
    let mut child = spawn_waiting("4321");
    let mut tracer = Tracer::attach(&Options {
        filter: tracekit_summary::TaskFilter::All,
        mode: Mode::Process,
        ..Options::default()
    })
    .unwrap();
    release(&mut child);
    let summary = tracer.read().unwrap();
    let group = summary
        .group(child.id())
        .expect("the workload's process is in the system-wide summary");
    assert_eq!(group.syscall("getppid").unwrap().stats.count, 4321);
}

#[test]
fn dead_pid_and_unknown_command_are_refused() {
    let stop = AtomicBool::new(false);
    let err = tracekit_summary::run(
        &Options::default(),
        &Target::Pids(vec![999_999_999]),
        None,
        &stop,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("no such process: 999999999"),
        "{err}"
    );
    let err = tracekit_summary::run(
        &Options::default(),
        &Target::Command(vec!["/no/such/cmd".into()]),
        None,
        &stop,
    )
    .unwrap_err();
    assert!(
        matches!(err, tracekit_summary::Error::CommandNotFound(_)),
        "{err}"
    );
}

#[test]
fn duration_ends_a_pid_run() {
    let _guard = serial();
    let mut child = spawn_waiting("1");
    let started = std::time::Instant::now();
    let options = Options::default();
    let outcome = tracekit_summary::run(
        &options,
        &Target::Pids(vec![child.id()]),
        Some(Duration::from_millis(300)),
        &AtomicBool::new(false),
    )
    .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(calls(&outcome.summary, "getppid"), 0);
    release(&mut child);
}

#[test]
fn nothing_tracekit_does_before_exec_is_counted() {
    // The command registers itself right before exec, after a $PATH search done by tracekit:
    // exactly one execve, successful, and none of the spawn machinery's signal setup.
    let _guard = serial();
    let outcome = tracekit_summary::run(
        &Options::default(),
        &Target::Command(vec!["true".into()]),
        None,
        &AtomicBool::new(false),
    )
    .unwrap();
    let execve = outcome
        .summary
        .total()
        .syscall("execve")
        .expect("execve counted");
    assert_eq!((execve.stats.count, execve.errors), (1, 0));
    assert!(
        outcome
            .summary
            .total()
            .syscall("rt_sigaction")
            .is_none_or(|r| r.stats.count < 5)
    );
}

#[test]
fn duration_ends_a_command_with_sigterm() {
    let _guard = serial();
    let argv = vec![
        OsString::from(WORKLOAD),
        "getppid".into(),
        "9".into(),
        "sleep".into(),
        "30000000000".into(),
    ];
    let started = std::time::Instant::now();
    let outcome = tracekit_summary::run(
        &Options::default(),
        &Target::Command(argv),
        Some(Duration::from_millis(300)),
        &AtomicBool::new(false),
    )
    .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(outcome.exit, Some(ExitStatus::Signal(libc::SIGTERM)));
    assert!(
        outcome.notes.iter().any(|n| n.contains("sent SIGTERM")),
        "{:?}",
        outcome.notes
    );
    assert_eq!(calls(&outcome.summary, "getppid"), 9);
    // The interrupted nanosleep is recorded when the signal ends it.
    assert_eq!(calls(&outcome.summary, "nanosleep"), 1);
}

#[test]
fn a_thread_id_traces_its_process() {
    let _guard = serial();
    // This test's own thread: a tid that is not a process id.
    // SAFETY: gettid has no arguments and cannot fail.
    let tid = unsafe { libc::gettid() } as u32;
    let me = std::process::id();
    assert_ne!(tid, me, "tests run on worker threads");
    let outcome = tracekit_summary::run(
        &Options::default(),
        &Target::Pids(vec![tid]),
        Some(Duration::from_millis(100)),
        &AtomicBool::new(false),
    )
    .unwrap();
    assert_eq!(
        outcome.notes,
        vec![format!(
            "{tid} is a thread of process {me}: tracing the whole process"
        )]
    );
}

#[test]
fn invalid_syscall_numbers_are_counted_apart() {
    let _guard = serial();
    let mut child = spawn_waiting("0");
    let mut tracer = Tracer::attach(&Options::default()).unwrap();
    tracer.trace_tgid(child.id()).unwrap();
    release(&mut child);
    // Nothing was invalid in that run; now make invalid calls from a traced child of ours.
    let summary = tracer.read().unwrap();
    assert_eq!(summary.dropped.bad_nr, 0);
    let mut bad = waiting(&["badnr", "6"], |_| {});
    tracer.trace_tgid(bad.id()).unwrap();
    release(&mut bad);
    let summary = tracer.read().unwrap();
    assert_eq!(summary.dropped.bad_nr, 6);
    assert_eq!(summary.dropped.stats, 0);
}

#[test]
fn syscalls_in_flight_at_the_end_are_reported() {
    use std::io::Write;
    let _guard = serial();
    let mut child = waiting(&["wait"], |_| {});
    let mut tracer = Tracer::attach(&Options::default()).unwrap();
    tracer.trace_tgid(child.id()).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // The first read returns (it began before tracing); the second blocks, traced.
    stdin.write_all(b"one\n").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let summary = tracer.read().unwrap();
    assert_eq!(
        summary.in_flight.as_ref().and_then(|m| m.get("read")),
        Some(&1),
        "{:?}",
        summary.in_flight
    );
    stdin.write_all(b"two\n").unwrap();
    assert!(child.wait().unwrap().success());
    let summary = tracer.read().unwrap();
    assert_eq!(
        summary.in_flight,
        Some(Default::default()),
        "nothing left in flight"
    );
    assert_eq!(calls(&summary, "read"), 1);
}
