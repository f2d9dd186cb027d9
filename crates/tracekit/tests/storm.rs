//! Exact under storms: `trace summary` and the BPF probe engine during 60 s of 8 busy
//! threads, 100 short-lived processes a second and an exec in each, compared with the counts
//! the workload itself reports; tracekit's memory stays bounded; and maps filled on purpose
//! report their drops instead of losing counts silently.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const TRACEKIT: &str = env!("CARGO_BIN_EXE_tracekit");
const STORM: [&str; 5] = ["storm", "60", "8", "100", "1000"];

/// The workload binary of tracekit-summary, built beside this one by `cargo test --workspace`.
fn workload() -> String {
    let path = PathBuf::from(TRACEKIT).with_file_name("tracekit-syscall-workload");
    assert!(
        path.exists(),
        "{} is missing: run `cargo test --workspace`",
        path.display()
    );
    path.display().to_string()
}

/// The workload's own counts: (thread calls, children, child calls).
fn storm_counts(stdout: &[u8]) -> (u64, u64, u64) {
    let text = String::from_utf8_lossy(stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("storm "))
        .unwrap_or_else(|| panic!("{text}"));
    let n: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (n[0], n[1], n[2])
}

/// Kernel-reported resident memory of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Runs tracekit with `args` to its end, sampling its resident memory at 10 s and 55 s. One
/// storm at a time: two at once on a small machine would starve each other's fork rate.
fn run_sampled(args: &[&str]) -> (Output, u64, u64) {
    static ONE_STORM: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _storm = ONE_STORM.lock().unwrap_or_else(|e| e.into_inner());
    let child: Child = Command::new(TRACEKIT)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let start = Instant::now();
    let mut samples = [0u64; 2];
    for (i, at) in [10, 55].into_iter().enumerate() {
        std::thread::sleep(Duration::from_secs(at).saturating_sub(start.elapsed()));
        samples[i] = rss_kib(pid);
    }
    (child.wait_with_output().unwrap(), samples[0], samples[1])
}

fn assert_bounded(early: u64, late: u64) {
    assert!(early > 0 && late > 0, "no memory samples: {early} {late}");
    // 50 s more of the storm may not grow tracekit by more than 16 MiB.
    assert!(
        late <= early + 16 * 1024,
        "RSS grew from {early} KiB to {late} KiB"
    );
}

#[test]
fn trace_summary_is_exact_under_a_storm() {
    let w = workload();
    let mut args = vec!["trace", "summary", "--json", "--", &w];
    args.extend(STORM);
    let (out, early, late) = run_sampled(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let (calls, children, child_calls) = storm_counts(&out.stdout);
    assert!(
        children >= 5000,
        "the storm forked only {children} children"
    );
    let doc: Value = serde_json::from_str(&stderr).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    let count = |name: &str| {
        doc["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .map_or(0, |s| s["calls"].as_u64().unwrap())
    };
    assert_eq!(count("getppid"), calls + child_calls, "{stderr}");
    // One exec per child, and the command's own.
    assert_eq!(count("execve"), children + 1);
    assert_eq!(doc["dropped_total"], 0, "{}", doc["dropped"]);
    assert_bounded(early, late);
}

#[test]
fn bpf_probe_is_exact_under_a_storm() {
    let w = workload();
    let spec = format!("uprobe:{w}:tk_storm_call");
    let mut args = vec!["probe", "--engine", "bpf", "--json", &spec, "--", &w];
    args.extend(STORM);
    let (out, early, late) = run_sampled(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let (calls, _, _) = storm_counts(&out.stdout);
    let doc: Value = serde_json::from_str(&stderr[stderr.find('{').unwrap()..]).unwrap();
    // The children run other code of the same binary: only the traced process's calls count.
    assert_eq!(doc["probes"][0]["hits"].as_u64(), Some(calls), "{stderr}");
    assert_bounded(early, late);
}

#[test]
fn a_full_statistics_map_reports_its_drops() {
    let w = workload();
    // 8 threads of 100 getppid each, per thread, in a map for 3 (thread, syscall) entries.
    let out = Command::new(TRACEKIT)
        .args([
            "trace",
            "summary",
            "--json",
            "--mode",
            "thread",
            "--hist",
            "--max-entries",
            "3",
        ])
        .args(["--", &w, "threads", "8", "100"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let doc: Value = serde_json::from_str(&stderr).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    let dropped = &doc["dropped"];
    // The main thread's first three syscalls fill the map: every getppid of the 8 threads
    // (and more) is dropped, and counted as such.
    assert!(dropped["stats"].as_u64().unwrap() >= 800, "{dropped}");
    let recorded: u64 = doc["threads"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["syscalls"].as_array().unwrap())
        .filter(|s| s["name"] == "getppid")
        .map(|s| s["calls"].as_u64().unwrap())
        .sum();
    assert_eq!(recorded, 0);
    let text = Command::new(TRACEKIT)
        .args(["trace", "summary", "--mode", "thread", "--max-entries", "3"])
        .args(["--", &w, "threads", "8", "100"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&text.stderr).contains("dropped:"));
}

#[test]
fn a_full_per_thread_probe_map_counts_the_rest_as_unattributed() {
    let target = tracekit_probe::test_support::target().display().to_string();
    let spec = format!("uprobe:{target}:tk_empty");
    let out = Command::new(TRACEKIT)
        .args([
            "probe",
            "--engine",
            "bpf",
            "--json",
            "--by",
            "thread",
            "--max-threads",
            "2",
        ])
        .args([
            &spec,
            "--",
            &target,
            "--threads",
            "3",
            "--only",
            "tk_empty",
            "1000",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let doc: Value = serde_json::from_str(&stderr[stderr.find('{').unwrap()..]).unwrap();
    let p = &doc["probes"][0];
    assert_eq!(p["hits"], 3000);
    assert_eq!(p["threads"].as_array().unwrap().len(), 2, "{p}");
    assert_eq!(p["unattributed"], 1000, "{p}");
}
