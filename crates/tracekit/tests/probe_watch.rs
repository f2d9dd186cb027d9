//! `tracekit probe` for watching a program: `--by thread` (hits and latency per thread) and
//! `-i SECS` (one report per interval, NDJSON with `--json`), with both engines, exact counts
//! from testdata/target.c.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

const TRACEKIT: &str = env!("CARGO_BIN_EXE_tracekit");

fn target() -> String {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    let path: &Path = PATH.get_or_init(tracekit_probe::test_support::target);
    path.display().to_string()
}

fn probe(args: &[&str]) -> Output {
    let out = Command::new(TRACEKIT)
        .arg("probe")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The JSON documents on stderr (a command's run writes its reports there), one per line.
fn documents(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

#[test]
fn by_thread_counts_every_thread_exactly() {
    let spec = format!("{}:tk_empty", target());
    for engine in ["bpf", "ptrace"] {
        let out = probe(&[
            "--engine",
            engine,
            "--by",
            "thread",
            "--json",
            &spec,
            "--",
            &target(),
            "--threads",
            "3",
            "--only",
            "tk_empty",
            "1000",
        ]);
        let text = String::from_utf8_lossy(&out.stderr);
        let report: Value = serde_json::from_str(&text[text.find('{').unwrap()..]).unwrap();
        for probe in report["probes"].as_array().unwrap() {
            assert_eq!(u(&probe["hits"]), 3000, "{engine}: {probe}");
            assert_eq!(u(&probe["unattributed"]), 0);
            let threads = probe["threads"].as_array().unwrap();
            assert_eq!(threads.len(), 3, "{engine}: {probe}");
            let mut tids: Vec<i64> = threads.iter().map(|t| t["tid"].as_i64().unwrap()).collect();
            tids.dedup();
            assert_eq!(tids.len(), 3, "distinct and sorted: {probe}");
            for t in threads {
                assert_eq!(u(&t["hits"]), 1000, "{engine}: {t}");
                if probe["kind"] == "uretprobe" {
                    assert_eq!(u(&t["latency"]["count"]), 1000, "{engine}: {t}");
                }
            }
        }
    }
}

#[test]
fn intervals_add_up_to_the_total() {
    let spec = format!("uretprobe:{}:tk_sleep_1ms", target());
    // The jump engine's counters live in the target and are read while it runs.
    for engine in ["bpf", "ptrace", "jump"] {
        // 2 threads x 150 sleeps of 1 ms: about 0.2 s, so several 0.05 s intervals.
        let out = probe(&[
            "--engine",
            engine,
            "-i",
            "0.05",
            "--json",
            &spec,
            "--",
            &target(),
            "--threads",
            "2",
            "--only",
            "tk_sleep_1ms",
            "--sleep",
            "150",
            "1",
        ]);
        let intervals = documents(&out);
        assert!(intervals.len() >= 3, "{engine}: {intervals:?}");
        let mut total = 0;
        let mut latencies = 0;
        for (i, doc) in intervals.iter().enumerate() {
            assert_eq!(u(&doc["interval"]), i as u64 + 1, "numbered from 1");
            let p = &doc["probes"][0];
            total += u(&p["hits"]);
            latencies += p["latency"]["count"].as_u64().unwrap_or(0);
            assert!(p["latency"].get("min_ns").is_none(), "no min per interval");
        }
        assert_eq!(total, 300, "{engine}: {intervals:?}");
        assert_eq!(latencies, 300, "{engine}");
    }
}

#[test]
fn interval_tables_have_no_min_or_max() {
    let spec = format!("uretprobe:{}:tk_sleep_1ms", target());
    let out = probe(&[
        "--engine",
        "ptrace",
        "-i",
        "10",
        &spec,
        "--",
        &target(),
        "--only",
        "tk_sleep_1ms",
        "--sleep",
        "20",
        "1",
    ]);
    let text = String::from_utf8_lossy(&out.stderr);
    // One interval: the run ends before 10 s; its row has hits, total, -, avg, -.
    let row = text
        .lines()
        .find(|l| l.trim_start().starts_with("uretprobe:"))
        .unwrap_or_else(|| panic!("{text}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[1], "20", "{row}");
    assert_eq!((cells[4], cells[6]), ("-", "-"), "{row}");
    assert!(text.contains("Interval 1 ("), "{text}");
    assert!(!text.contains("Interval 2"), "{text}");
}

#[test]
fn bad_watch_flags_get_clear_errors() {
    let spec = format!("{}:tk_empty", target());
    let out = Command::new(TRACEKIT)
        .args(["probe", "-i", "0", &spec, "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--interval must be at least 0.01"));
    let out = Command::new(TRACEKIT)
        .args([
            "probe",
            "--by",
            "thread",
            "--target",
            "qemu-gdb:127.0.0.1:1",
            &spec,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a usage error");
    let out = Command::new(TRACEKIT)
        .args([
            "probe", "--engine", "jump", "--by", "thread", &spec, "--", "true",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not per thread"));
}
