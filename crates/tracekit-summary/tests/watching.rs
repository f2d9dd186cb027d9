//! `trace summary` for watching: in-kernel filters, histograms, intervals and counts-only
//! mode, against the real kernel with workloads whose syscalls are known exactly.
//! Needs root (BPF, cgroups, setuid); CI runs as root.

mod common;

use common::{WORKLOAD, calls, release, run_command, serial, waiting};
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use tracekit_core::process::ExitStatus;
use tracekit_core::stats::Log2Histogram;
use tracekit_core::syscall_set;
use tracekit_core::syscalls::Arch;
use tracekit_summary::{Interval, Options, Summary, Target, TaskFilter, Tracer};

fn syscalls(spec: &str) -> Option<Vec<u32>> {
    Some(
        syscall_set::select(Arch::host(), spec)
            .unwrap()
            .into_iter()
            .collect(),
    )
}

fn run(options: &Options, steps: &[&str]) -> Summary {
    let outcome = run_command(options, steps);
    assert_eq!(outcome.exit, Some(ExitStatus::Code(0)));
    outcome.summary
}

fn names(summary: &Summary) -> Vec<&str> {
    summary
        .total()
        .syscalls
        .iter()
        .map(|r| r.name.as_str())
        .collect()
}

#[test]
fn a_syscall_filter_keeps_exactly_its_syscalls() {
    let _guard = serial();
    let options = Options {
        syscalls: syscalls("getppid"),
        ..Options::default()
    };
    let summary = run(&options, &["getppid", "1000", "ebadf", "37"]);
    assert_eq!(names(&summary), ["getppid"]);
    assert_eq!(calls(&summary, "getppid"), 1000);

    // Exclusions: everything but getppid; the 37 failing close calls are all there.
    let options = Options {
        syscalls: syscalls("!getppid"),
        errno: true,
        ..Options::default()
    };
    let summary = run(&options, &["getppid", "1000", "ebadf", "37"]);
    assert_eq!(calls(&summary, "getppid"), 0);
    assert_eq!(summary.total().syscall("close").unwrap().errors, 37);
    assert_eq!(calls(&summary, "exit_group"), 1);
}

#[test]
fn failed_counts_only_failures() {
    let _guard = serial();
    let options = Options {
        failed: true,
        syscalls: syscalls("close,openat,getppid"),
        ..Options::default()
    };
    let summary = run(&options, &["getppid", "500", "ebadf", "37", "enoent", "5"]);
    let close = summary.total().syscall("close").unwrap();
    assert_eq!((close.stats.count, close.errors), (37, 37));
    assert_eq!(calls(&summary, "getppid"), 0);
    // Only failed calls are counted at all: every row is all errors.
    for row in &summary.total().syscalls {
        assert_eq!(row.stats.count, row.errors, "{}", row.name);
    }
    assert!(calls(&summary, "openat") >= 5);
    // Successful calls leave nothing behind: no call is still "in flight" at the end.
    assert_eq!(summary.in_flight, Some(Default::default()));
}

#[test]
fn a_thread_filter_sees_that_thread_alone() {
    let _guard = serial();
    // The main thread makes 300 calls, then starts two threads of 500 calls each.
    let mut child = waiting(&["getppid", "300", "threads", "2", "500"], |_| {});
    let mut tracer = Tracer::attach(&Options {
        filter: TaskFilter::Threads,
        ..Options::default()
    })
    .unwrap();
    tracer.trace_tid(child.id()).unwrap();
    release(&mut child);
    assert_eq!(calls(&tracer.read().unwrap(), "getppid"), 300);
}

#[test]
fn a_cgroup_filter_sees_exactly_the_cgroup() {
    let _guard = serial();
    let root = tracekit_core::process::cgroup2_mount().expect("a cgroup v2 hierarchy mounted");
    let cgroup = root.join(format!("tracekit-test-{}", std::process::id()));
    std::fs::create_dir(&cgroup).expect("root can make a cgroup");
    // A child cgroup: the filter takes descendants too.
    let inner = cgroup.join("inner");
    std::fs::create_dir(&inner).unwrap();
    let mut inside = waiting(&["getppid", "4321"], |_| {});
    std::fs::write(inner.join("cgroup.procs"), inside.id().to_string()).unwrap();
    let mut outside = waiting(&["getppid", "1234"], |_| {});
    let mut tracer = Tracer::attach(&Options {
        filter: TaskFilter::All,
        cgroup: Some(cgroup.clone()),
        syscalls: syscalls("getppid"),
        ..Options::default()
    })
    .unwrap();
    release(&mut inside);
    release(&mut outside);
    let summary = tracer.read().unwrap();
    drop(tracer);
    std::fs::remove_dir(&inner).unwrap();
    std::fs::remove_dir(&cgroup).unwrap();
    assert_eq!(calls(&summary, "getppid"), 4321);
}

#[test]
fn a_uid_filter_sees_exactly_that_user() {
    let _guard = serial();
    const NOBODY: u32 = 65534;
    let mut theirs = waiting(&["getppid", "777"], |c| {
        c.uid(NOBODY);
    });
    let mut ours = waiting(&["getppid", "555"], |_| {});
    let mut tracer = Tracer::attach(&Options {
        filter: TaskFilter::All,
        uid: Some(NOBODY),
        syscalls: syscalls("getppid"),
        ..Options::default()
    })
    .unwrap();
    release(&mut theirs);
    release(&mut ours);
    assert_eq!(calls(&tracer.read().unwrap(), "getppid"), 777);
}

#[test]
fn histogram_buckets_are_exact_for_known_sleeps() {
    let _guard = serial();
    let options = Options {
        hist: true,
        syscalls: syscalls("nanosleep"),
        ..Options::default()
    };
    // 1.2 ms sleeps: on a quiet machine all ten land in bucket [2^20, 2^21) ns; a loaded
    // one may wake a sleeper late, into a later bucket. The histogram and the statistics are
    // kept apart in the kernel, so they check each other exactly.
    let mut steps = vec!["sleep"];
    steps.extend(["1200000"; 10]);
    let summary = run(&options, &steps);
    let row = summary.total().syscall("nanosleep").unwrap();
    let hist = row.hist.as_ref().unwrap();
    assert_eq!(hist.total(), 10, "{hist:?}");
    assert_eq!(row.stats.count, 10);
    let first = hist.buckets.iter().position(|&n| n > 0).unwrap();
    let last = hist.buckets.iter().rposition(|&n| n > 0).unwrap();
    assert_eq!(first, Log2Histogram::bucket_of(row.stats.min), "{hist:?}");
    assert_eq!(last, Log2Histogram::bucket_of(row.stats.max), "{hist:?}");
    assert!(
        first >= Log2Histogram::bucket_of(1_200_000),
        "a sleep shorter than asked"
    );
    let p50 = hist.percentile(0.5).unwrap();
    let (lo, hi) = (1u64 << (first - 1), 1u64 << last);
    assert!((lo as f64..=hi as f64).contains(&p50), "{p50}");
}

#[test]
fn intervals_add_up_to_the_total() {
    let _guard = serial();
    let options = Options {
        syscalls: syscalls("getppid,nanosleep"),
        hist: true,
        ..Options::default()
    };
    let argv: Vec<OsString> = [
        WORKLOAD,
        "getppid",
        "100",
        "sleep",
        "250000000",
        "getppid",
        "50",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    let mut reports: Vec<Summary> = Vec::new();
    let outcome = tracekit_summary::run_with_intervals(
        &options,
        &Target::Command(argv),
        None,
        Some(Interval {
            every: Duration::from_millis(100),
            count: None,
        }),
        &AtomicBool::new(false),
        &mut |s| {
            reports.push(s.clone());
            Ok(())
        },
    )
    .unwrap();
    assert!(reports.len() >= 3, "{} reports", reports.len());
    let numbers: Vec<u32> = reports.iter().filter_map(|r| r.interval).collect();
    assert_eq!(numbers, (1..=reports.len() as u32).collect::<Vec<_>>());
    let sum = |name: &str, f: fn(&tracekit_summary::SyscallRow) -> u64| -> u64 {
        reports
            .iter()
            .filter_map(|r| r.total().syscall(name))
            .map(f)
            .sum()
    };
    let total = outcome.summary.total();
    for name in ["getppid", "nanosleep"] {
        let whole = total.syscall(name).unwrap();
        assert_eq!(sum(name, |r| r.stats.count), whole.stats.count, "{name}");
        assert_eq!(sum(name, |r| r.stats.total), whole.stats.total, "{name}");
        assert_eq!(
            sum(name, |r| r.hist.as_ref().map_or(0, Log2Histogram::total)),
            whole.stats.count
        );
    }
    assert_eq!(total.syscall("getppid").unwrap().stats.count, 150);
}

#[test]
fn an_interval_count_ends_the_run() {
    let _guard = serial();
    let mut reports = 0;
    let outcome = tracekit_summary::run_with_intervals(
        &Options::default(),
        &Target::All,
        None,
        Some(Interval {
            every: Duration::from_millis(50),
            count: Some(3),
        }),
        &AtomicBool::new(false),
        &mut |_| {
            reports += 1;
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(reports, 3);
    assert!(outcome.summary.elapsed >= Duration::from_millis(150));
}

#[test]
fn counts_only_mode_counts_exactly_without_timing() {
    let _guard = serial();
    let options = Options {
        latency: false,
        ..Options::default()
    };
    let summary = run(&options, &["getppid", "1000", "ebadf", "37"]);
    assert!(!summary.latency);
    let getppid = summary.total().syscall("getppid").unwrap();
    assert_eq!(getppid.stats.count, 1000);
    assert_eq!(getppid.stats.total, 0, "no clock read");
    assert_eq!(summary.total().syscall("close").unwrap().errors, 37);
    assert_eq!(calls(&summary, "exit_group"), 1);
    let filtered = run(
        &Options {
            latency: false,
            syscalls: syscalls("getppid"),
            ..Options::default()
        },
        &["getppid", "1000", "ebadf", "37"],
    );
    assert_eq!(names(&filtered), ["getppid"]);
    assert_eq!(calls(&filtered, "getppid"), 1000);
    // fork returns twice (in the child through ret_from_fork, with no entry): still 3 calls.
    for latency in [false, true] {
        let options = Options {
            latency,
            syscalls: syscalls("clone,fork,vfork,clone3"),
            ..Options::default()
        };
        let summary = run(&options, &["fork", "3", "10"]);
        let forks: u64 = summary.total().syscalls.iter().map(|r| r.stats.count).sum();
        assert_eq!(forks, 3, "latency {latency}: {:?}", names(&summary));
    }
}

/// A static 32-bit program making `n` getppid calls with `int $0x80`, then exit(0).
fn ia32_program(n: u32) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tracekit-ia32-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let source = format!(
        ".globl _start\n_start:\n mov ${n}, %esi\n1: mov $64, %eax\n int $0x80\n dec %esi\n jnz 1b\n mov $1, %eax\n xor %ebx, %ebx\n int $0x80\n"
    );
    std::fs::write(dir.join("getppid32.s"), source).unwrap();
    let ok = |c: &mut Command| {
        let out = c.output().expect("binutils (cargo xtask test installs it)");
        assert!(
            out.status.success(),
            "{c:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ok(Command::new("as")
        .current_dir(&dir)
        .args(["--32", "-o", "getppid32.o", "getppid32.s"]));
    ok(Command::new("ld").current_dir(&dir).args([
        "-m",
        "elf_i386",
        "-o",
        "getppid32",
        "getppid32.o",
    ]));
    dir.join("getppid32")
}

#[test]
fn ia32_calls_are_named_from_the_i386_table() {
    let _guard = serial();
    let program = ia32_program(250);
    let argv = vec![program.clone().into_os_string()];
    for latency in [true, false] {
        let options = Options {
            latency,
            ..Options::default()
        };
        let outcome = tracekit_summary::run(
            &options,
            &Target::Command(argv.clone()),
            None,
            &AtomicBool::new(false),
        )
        .unwrap();
        let summary = outcome.summary;
        assert_eq!(
            calls(&summary, "getppid (ia32)"),
            250,
            "{:?}",
            names(&summary)
        );
        assert_eq!(calls(&summary, "exit (ia32)"), 1);
        // i386's 64 is not x86-64's 64 (semget), and getppid is not called the 64-bit way.
        assert_eq!(calls(&summary, "semget"), 0);
        assert_eq!(calls(&summary, "getppid"), 0);
    }
    // A filter by name takes the ia32 call of that name too.
    let options = Options {
        syscalls: syscalls("getppid"),
        ..Options::default()
    };
    let outcome = tracekit_summary::run(
        &options,
        &Target::Command(argv),
        None,
        &AtomicBool::new(false),
    )
    .unwrap();
    assert_eq!(names(&outcome.summary), ["getppid (ia32)"]);
    let _ = std::fs::remove_dir_all(program.parent().unwrap());
}

#[test]
fn cgroup_mode_groups_by_cgroup_path() {
    let _guard = serial();
    let root = tracekit_core::process::cgroup2_mount().expect("a cgroup v2 hierarchy mounted");
    let name = format!("tracekit-mode-{}", std::process::id());
    let parent = root.join(&name);
    std::fs::create_dir(&parent).unwrap();
    let mut children = Vec::new();
    for (cgroup, n) in [("a", "111"), ("b", "222")] {
        std::fs::create_dir(parent.join(cgroup)).unwrap();
        let child = waiting(&["getppid", n], |_| {});
        std::fs::write(
            parent.join(cgroup).join("cgroup.procs"),
            child.id().to_string(),
        )
        .unwrap();
        children.push(child);
    }
    let mut tracer = Tracer::attach(&Options {
        filter: TaskFilter::All,
        mode: tracekit_summary::Mode::Cgroup,
        syscalls: syscalls("getppid"),
        ..Options::default()
    })
    .unwrap();
    children.iter_mut().for_each(release);
    let summary = tracer.read().unwrap();
    drop(tracer);
    for cgroup in ["a", "b"] {
        std::fs::remove_dir(parent.join(cgroup)).unwrap();
    }
    std::fs::remove_dir(&parent).unwrap();
    let count = |path: &str| {
        summary
            .groups
            .iter()
            .find(|g| g.comm == path)
            .and_then(|g| g.syscall("getppid"))
            .map(|r| r.stats.count)
    };
    assert_eq!(
        count(&format!("/{name}/a")),
        Some(111),
        "{:?}",
        summary.groups
    );
    assert_eq!(count(&format!("/{name}/b")), Some(222));
}

#[test]
fn cgroup_intervals_add_up_per_cgroup() {
    let _guard = serial();
    let root = tracekit_core::process::cgroup2_mount().expect("a cgroup v2 hierarchy mounted");
    let name = format!("tracekit-intervals-{}", std::process::id());
    let parent = root.join(&name);
    std::fs::create_dir(&parent).unwrap();
    let mut children = Vec::new();
    for (cgroup, n) in [("a", "100"), ("b", "200")] {
        std::fs::create_dir(parent.join(cgroup)).unwrap();
        let child = waiting(&["getppid", n, "sleep", "200000000", "getppid", n], |_| {});
        std::fs::write(
            parent.join(cgroup).join("cgroup.procs"),
            child.id().to_string(),
        )
        .unwrap();
        children.push(child);
    }
    // Released at the first report, when the tracer is surely attached.
    let mut pending = Some(children);
    let mut releaser = None;
    let options = Options {
        mode: tracekit_summary::Mode::Cgroup,
        syscalls: syscalls("getppid"),
        ..Options::default()
    };
    let mut per_cgroup: std::collections::BTreeMap<String, u64> = Default::default();
    tracekit_summary::run_with_intervals(
        &options,
        &Target::All,
        None,
        Some(Interval {
            every: Duration::from_millis(100),
            count: Some(10),
        }),
        &AtomicBool::new(false),
        &mut |s| {
            if let Some(mut children) = pending.take() {
                releaser = Some(std::thread::spawn(move || {
                    children.iter_mut().for_each(release);
                }));
            }
            for g in &s.groups {
                *per_cgroup.entry(g.comm.clone()).or_default() += g.events();
            }
            Ok(())
        },
    )
    .unwrap();
    releaser.unwrap().join().unwrap();
    for cgroup in ["a", "b"] {
        std::fs::remove_dir(parent.join(cgroup)).unwrap();
    }
    std::fs::remove_dir(&parent).unwrap();
    assert_eq!(
        per_cgroup.get(&format!("/{name}/a")),
        Some(&200),
        "{per_cgroup:?}"
    );
    assert_eq!(
        per_cgroup.get(&format!("/{name}/b")),
        Some(&400),
        "{per_cgroup:?}"
    );
}
