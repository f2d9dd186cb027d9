//! `tracekit trace summary` end to end: the real binary, the real kernel (root in CI).

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

const TRACEKIT: &str = env!("CARGO_BIN_EXE_tracekit");

/// The workload binary of tracekit-summary, built beside this one by `cargo test --workspace`.
fn workload() -> PathBuf {
    let dir = PathBuf::from(TRACEKIT).parent().unwrap().to_path_buf();
    let path = dir.join("tracekit-syscall-workload");
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace`",
        path.display()
    );
    path
}

fn tracekit(args: &[&str]) -> Output {
    Command::new(TRACEKIT).args(args).output().unwrap()
}

fn summary_json(extra: &[&str], steps: &[&str]) -> (serde_json::Value, Output) {
    let w = workload();
    let mut args = vec!["trace", "summary", "--json"];
    args.extend(extra);
    args.push("--");
    args.push(w.to_str().unwrap());
    args.extend(steps);
    let out = tracekit(&args);
    // The report goes to stderr when a command is traced, leaving its stdout alone.
    let doc = serde_json::from_slice(&out.stderr)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (doc, out)
}

fn calls(syscalls: &serde_json::Value, name: &str) -> u64 {
    syscalls
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .map_or(0, |s| s["calls"].as_u64().unwrap())
}

#[test]
fn json_reports_exactly_1000_getppid() {
    let (doc, out) = summary_json(&[], &["1000"]);
    assert!(out.status.success());
    assert_eq!(calls(&doc["syscalls"], "getppid"), 1000);
    let row = doc["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "getppid")
        .unwrap();
    for key in [
        "name",
        "nr",
        "calls",
        "errors",
        "total_ns",
        "min_ns",
        "avg_ns",
        "max_ns",
        "stddev_ns",
    ] {
        assert!(row.get(key).is_some(), "missing {key} in {row}");
    }
    assert_eq!(row["nr"], 110);
    assert_eq!(doc["dropped_total"], 0);
}

#[test]
fn errno_breakdown_and_exit_status() {
    let (doc, out) = summary_json(&["--errno"], &["ebadf", "12", "exit", "42"]);
    assert_eq!(
        out.status.code(),
        Some(42),
        "the command's exit status is passed through"
    );
    let close = doc["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "close")
        .unwrap();
    assert_eq!(close["errors"], 12);
    assert_eq!(close["errnos"]["EBADF"], 12);
}

#[test]
fn per_process_mode_groups() {
    let (doc, _) = summary_json(&["--mode", "process"], &["fork", "2", "30"]);
    let procs = doc["processes"].as_array().unwrap();
    let counts: Vec<u64> = procs
        .iter()
        .map(|p| calls(&p["syscalls"], "getppid"))
        .filter(|&c| c > 0)
        .collect();
    assert_eq!(counts, vec![30, 30]);
    assert!(
        procs
            .iter()
            .all(|p| p["pid"].as_u64().is_some() && p["comm"].is_string())
    );
}

#[test]
fn table_to_file_and_command_output_untouched() {
    let dir = std::env::temp_dir().join(format!("tracekit-trace-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let report = dir.join("report.txt");
    let out = Command::new(TRACEKIT)
        .args([
            "trace",
            "summary",
            "--sort",
            "calls",
            "-o",
            report.to_str().unwrap(),
            "--",
            "echo",
            "hello",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, b"hello\n");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&report).unwrap();
    assert!(
        text.contains("syscall") && text.contains("stddev(msec)") && text.contains("write"),
        "{text}"
    );
    assert!(!text.contains('\x1b'), "no colour in files");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn sigint_prints_the_summary_so_far() {
    let w = workload();
    let child = Command::new(TRACEKIT)
        .args(["trace", "summary", "--json", "--"])
        .arg(&w)
        .args(["getppid", "77", "wait"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(calls(&doc["syscalls"], "getppid"), 77);
    // The workload still waits on its stdin (closed now): it ends with status 0 or by tracekit's deadline.
    assert!(out.status.code().is_some());
}

#[test]
fn bad_input_gives_clear_errors() {
    let out = tracekit(&["trace", "summary", "--", "/no/such/command"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&out.stderr).contains("command not found"));

    let out = tracekit(&["trace", "summary", "--", "/tmp"]);
    assert_eq!(out.status.code(), Some(126));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is a directory"));

    let out = tracekit(&[
        "trace",
        "summary",
        "-o",
        "/no/such/dir/report",
        "-a",
        "--duration",
        "0.1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot write report to /no/such/dir/report")
    );

    let out = tracekit(&["trace", "summary", "--duration", "-1", "-a"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("non-negative"));

    let out = tracekit(&["trace", "summary", "-p", "0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such process: 0"));

    let out = tracekit(&["trace", "summary", "-p", "999999999"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such process: 999999999"));

    let out = tracekit(&["trace", "summary", "--mode", "cpu", "--", "true"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("possible values: total, process, thread")
    );

    let out = tracekit(&["trace", "summary"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to trace"));

    for out in [
        &tracekit(&["trace", "summary", "--help"]),
        &tracekit(&["--help"]),
    ] {
        assert!(out.status.success());
    }
}

#[test]
fn pid_and_all_targets_with_duration() {
    let w = workload();
    for target in [
        vec!["-p".to_string()],
        vec!["-a".to_string(), "--mode".into(), "process".into()],
    ] {
        let mut victim = Command::new(&w)
            .args(["wait", "getppid", "555"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        let mut args: Vec<String> = vec![
            "trace".into(),
            "summary".into(),
            "--json".into(),
            "--duration".into(),
            "2".into(),
        ];
        args.extend(target.iter().cloned());
        if target[0] == "-p" {
            args.push(victim.id().to_string());
        }
        let tk = Command::new(TRACEKIT)
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(800));
        use std::io::Write;
        victim.stdin.take().unwrap().write_all(b"go\n").unwrap();
        victim.wait().unwrap();
        let out = tk.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let n = if target[0] == "-p" {
            calls(&doc["syscalls"], "getppid")
        } else {
            let procs = doc["processes"].as_array().unwrap();
            let me = procs
                .iter()
                .find(|p| p["pid"] == victim.id())
                .expect("victim in system-wide report");
            calls(&me["syscalls"], "getppid")
        };
        assert_eq!(n, 555, "{target:?}");
    }
}

#[test]
fn interval_reports_are_json_lines_that_add_up() {
    let w = workload();
    let out = tracekit(&[
        "trace",
        "summary",
        "--json",
        "-i",
        "0.1",
        "-e",
        "getppid",
        "--",
        w.to_str().unwrap(),
        "getppid",
        "100",
        "sleep",
        "250000000",
        "getppid",
        "50",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stderr);
    let docs: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(docs.len() >= 3, "{text}");
    let total: u64 = docs.iter().map(|d| calls(&d["syscalls"], "getppid")).sum();
    assert_eq!(total, 150);
    for (i, doc) in docs.iter().enumerate() {
        assert_eq!(doc["interval"], i as u64 + 1);
        // Per interval, min and max are unknown and left out.
        for row in doc["syscalls"].as_array().unwrap() {
            assert!(row.get("min_ns").is_none() && row.get("avg_ns").is_some());
        }
    }
}

#[test]
fn top_percentiles_and_counts_only_shape_the_report() {
    let (doc, _) = summary_json(
        &["--top", "1", "--sort", "calls", "--percentiles"],
        &["getppid", "300", "ebadf", "7"],
    );
    let rows = doc["syscalls"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0]["name"].as_str(), rows[0]["calls"].as_u64()),
        (Some("getppid"), Some(300))
    );
    let buckets: u64 = rows[0]["hist_log2_ns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_u64().unwrap())
        .sum();
    assert_eq!(buckets, 300);
    assert!(rows[0]["percentiles_ns"]["p99"].as_f64().unwrap() > 0.0);

    let (doc, _) = summary_json(&["--no-latency"], &["getppid", "300"]);
    let rows = doc["syscalls"].as_array().unwrap();
    assert_eq!(calls(&doc["syscalls"], "getppid"), 300);
    assert!(rows.iter().all(|r| r.get("total_ns").is_none()));
}

#[test]
fn bad_watch_options_get_clear_errors() {
    let cases: [(&[&str], &str); 5] = [
        (&["-e", "getppdi"], "did you mean 'getppid'"),
        (&["-e", "%nope"], "unknown syscall class"),
        (
            &["--cgroup", "/nonexistent/cgroup"],
            "no such cgroup directory",
        ),
        (&["-i", "0"], "--interval must be at least"),
        (&["-u", "no-such-user-tk"], "no such user"),
    ];
    for (flags, message) in cases {
        let mut args = vec!["trace", "summary"];
        args.extend(flags);
        args.extend(["--", "true"]);
        let out = tracekit(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{flags:?}: {err}");
        assert!(err.contains(message), "{flags:?}: {err}");
    }
    // -t needs a thread that exists.
    let out = tracekit(&["trace", "summary", "-t", "999999999"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such process"));
}

/// Runs `tmux` with `args`, returning its standard output.
fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux")
        .args(args)
        .output()
        .expect("tmux (cargo xtask test installs it)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_for_pane(session: &str, what: &str) -> String {
    let mut screen = String::new();
    for _ in 0..100 {
        screen = tmux(&["capture-pane", "-p", "-t", session]);
        if screen.contains(what) {
            return screen;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("'{what}' never appeared on the screen:\n{screen}");
}

/// Where the cgroup v2 hierarchy is mounted.
fn cgroup2_mount() -> PathBuf {
    tracekit_core::process::cgroup2_mount().expect("a cgroup v2 hierarchy mounted")
}

#[test]
fn top_shows_the_workload_live_and_quits_cleanly() {
    let session = format!("tracekit-top-{}", std::process::id());
    let status = std::env::temp_dir().join(format!("{session}.status"));
    let w = workload();
    // The workload makes getppid calls for a while (each step of 20000 calls, with pauses).
    let steps = "getppid 20000 sleep 100000000 ".repeat(100);
    // The shell joins a cgroup of its own first: tracekit and the workload inherit it.
    let cgroup = cgroup2_mount().join(&session);
    std::fs::create_dir(&cgroup).unwrap();
    let shell = format!(
        "echo $$ > {}/cgroup.procs; {TRACEKIT} trace top -i 0.2 -e getppid,nanosleep -- {} {steps}; echo exit=$? > {}",
        cgroup.display(),
        w.display(),
        status.display()
    );
    tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "120",
        "-y",
        "30",
        &shell,
    ]);
    let screen = wait_for_pane(&session, "getppid");
    assert!(
        screen.contains("calls/s") && screen.contains("tracekit top"),
        "{screen}"
    );
    // Sort by errors, then group by process: the view follows the keys.
    tmux(&["send-keys", "-t", &session, "s"]);
    wait_for_pane(&session, "sort: errors/s");
    tmux(&["send-keys", "-t", &session, "g"]);
    let by_process = wait_for_pane(&session, "process");
    assert!(by_process.contains("tracekit-syscal"), "{by_process}");
    // Then by cgroup: the workload's cgroup path is shown.
    tmux(&["send-keys", "-t", &session, "g"]);
    wait_for_pane(&session, &format!("/{session} "));
    tmux(&["send-keys", "-t", &session, "q"]);
    let mut done = String::new();
    for _ in 0..100 {
        done = std::fs::read_to_string(&status).unwrap_or_default();
        if !done.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = tmux(&["kill-session", "-t", &session]);
    let _ = std::fs::remove_file(&status);
    let _ = std::fs::remove_dir(&cgroup);
    // q ended the view; the command got SIGTERM after its grace period: 128 + 15.
    assert!(done.starts_with("exit="), "the view did not end: {done:?}");
    assert_eq!(done.trim(), "exit=143");
}

#[test]
fn top_without_a_terminal_points_to_intervals() {
    let out = tracekit(&["trace", "top", "--", "true"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("needs a terminal") && err.contains("-i SECS"),
        "{err}"
    );
}

#[test]
fn diff_compares_two_saved_summaries() {
    let dir = std::env::temp_dir().join(format!("tracekit-diff-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (a, b) = (dir.join("a.json"), dir.join("b.json"));
    let w = workload();
    for (file, n) in [(&a, "100"), (&b, "150")] {
        let out = tracekit(&[
            "trace",
            "summary",
            "--percentiles",
            "--json",
            "-o",
            file.to_str().unwrap(),
            "--",
            w.to_str().unwrap(),
            "getppid",
            n,
            "ebadf",
            "3",
        ]);
        assert!(out.status.success());
    }
    let out = tracekit(&[
        "trace",
        "diff",
        "--json",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let getppid = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "getppid")
        .unwrap();
    assert_eq!(getppid["before"]["calls"], 100);
    assert_eq!(getppid["after"]["calls"], 150);
    let table = tracekit(&["trace", "diff", a.to_str().unwrap(), b.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&table.stdout);
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("getppid"))
        .unwrap();
    assert!(line.contains("+50.0%"), "{text}");
    // A file that is not a summary gets a clear error.
    std::fs::write(dir.join("junk.json"), "{\"hello\": 1}").unwrap();
    let out = tracekit(&[
        "trace",
        "diff",
        a.to_str().unwrap(),
        dir.join("junk.json").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a report of"));
    let _ = std::fs::remove_dir_all(&dir);
}
