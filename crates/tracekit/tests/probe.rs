//! `tracekit probe` end to end: the real binary, the real kernel, testdata/target.c.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use serde_json::Value;
use tracekit_probe::test_support::qemu::{self as la, Qemu};

const TRACEKIT: &str = env!("CARGO_BIN_EXE_tracekit");

/// crates/tracekit-probe/testdata/target.c, built once per test binary.
fn target() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(tracekit_probe::test_support::target)
}

fn t() -> String {
    target().display().to_string()
}

fn tracekit(args: &[&str]) -> Output {
    Command::new(TRACEKIT)
        .arg("probe")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The JSON report of a run with a command: on stderr (stdout is the command's), after any
/// streamed lines.
fn json_of(out: &Output) -> Value {
    let text = String::from_utf8_lossy(&out.stderr);
    let start = if text.starts_with('{') {
        0
    } else {
        text.find("\n{").map_or(0, |i| i + 1)
    };
    serde_json::from_str(&text[start..]).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn hits(v: &Value, i: usize) -> u64 {
    v["probes"][i]["hits"].as_u64().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bpf_counts_exact_hits_from_one_and_four_threads() {
    let spec = format!("uprobe:{}:tk_empty", t());
    for (threads, n, want) in [("1", "1000", 1000), ("4", "2500", 10_000)] {
        let out = tracekit(&[
            "--engine",
            "bpf",
            "--json",
            &spec,
            "--",
            &t(),
            "--only",
            "tk_empty",
            "--threads",
            threads,
            n,
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let v = json_of(&out);
        assert_eq!(v["engine"], "bpf");
        assert_eq!(v["probes"][0]["spec"], spec.as_str());
        assert_eq!(v["probes"][0]["kind"], "uprobe");
        assert_eq!(hits(&v, 0), want);
        assert_eq!(v["probes"][0]["missed"], 0);
        assert_eq!(v["exit"]["code"], 0);
    }
}

#[test]
fn bpf_attaches_to_a_running_process() {
    let mut child = Command::new(target())
        .args([
            "--wait-stdin",
            "--only",
            "tk_empty",
            "--threads",
            "4",
            "500",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let mut tk = Command::new(TRACEKIT)
        .args([
            "probe",
            "--engine",
            "bpf",
            "--json",
            "-p",
            &pid,
            &format!("uprobe:{}:tk_empty", t()),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(tk.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.contains("1 probe attached"), "{line}");
    child.stdin.take().unwrap().write_all(b"x").unwrap();
    assert!(child.wait().unwrap().success());
    let out = tk.wait_with_output().unwrap();
    assert!(out.status.success());
    // Without a command (-p), the report goes to stdout.
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(hits(&v, 0), 2000);
}

#[test]
fn bpf_return_probe_measures_a_1ms_sleep() {
    let out = tracekit(&[
        "--engine",
        "bpf",
        "--json",
        &format!("{}:tk_sleep_1ms", t()),
        "--",
        &t(),
        "--only",
        "tk_sleep_1ms",
        "--sleep",
        "25",
        "0",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v = json_of(&out);
    assert_eq!(v["probes"].as_array().unwrap().len(), 2);
    assert_eq!((hits(&v, 0), hits(&v, 1)), (25, 25));
    assert_eq!(v["probes"][1]["kind"], "uretprobe");
    let lat = &v["probes"][1]["latency"];
    assert_eq!(lat["count"], 25);
    let avg = lat["avg_ns"].as_f64().unwrap();
    assert!((900_000.0..5_000_000.0).contains(&avg), "{lat}");
    assert!(lat["min_ns"].as_u64().unwrap() >= 900_000, "{lat}");
    let buckets: u64 = v["probes"][1]["histogram_log2"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_u64().unwrap())
        .sum();
    assert_eq!(buckets, 25);
    assert!(v["probes"][0]["latency"].is_null());
}

#[test]
fn text_report_to_file_with_histogram() {
    let file = std::env::temp_dir().join(format!("tk-probe-report-{}.txt", std::process::id()));
    let out = tracekit(&[
        "--engine",
        "bpf",
        "-o",
        file.to_str().unwrap(),
        &format!("uretprobe:{}:tk_sleep_1ms", t()),
        "--",
        &t(),
        "--only",
        "tk_sleep_1ms",
        "--sleep",
        "5",
        "0",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::remove_file(&file).unwrap();
    // stdout holds only the command's own output, byte for byte as without tracekit.
    let plain = Command::new(target())
        .args(["--only", "tk_sleep_1ms", "--sleep", "5", "0"])
        .output()
        .unwrap();
    assert_eq!(out.stdout, plain.stdout);
    assert!(
        text.contains("Probes (bpf engine), command exited with status 0"),
        "{text}"
    );
    let row = text.lines().find(|l| l.contains("uretprobe:")).unwrap();
    assert_eq!(row.split_whitespace().nth(1), Some("5"), "{text}");
    assert!(text.contains("@latency_ns[uretprobe:"), "{text}");
    assert!(
        text.contains("[512K, 1M)") || text.contains("[1M, 2M)"),
        "{text}"
    );
}

#[test]
fn print_streams_each_hit_and_exit_status_passes_through() {
    let out = tracekit(&[
        "--engine",
        "bpf",
        "--print",
        &format!("{}:tk_empty", t()),
        "--",
        &t(),
        "--only",
        "tk_empty",
        "--exit",
        "3",
        "3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    // With a command, streamed hits and the report go to stderr.
    let stdout = String::from_utf8_lossy(&out.stderr);
    let entries: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains(" uprobe:") && l.contains("tk_empty("))
        .collect();
    let returns: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains(" uretprobe:") && l.contains(" = "))
        .collect();
    assert_eq!(entries.len(), 3, "{stdout}");
    // probe-target has DWARF: the two parameters by name, no third register.
    assert!(entries[1].contains("tk_empty(a=1, b=2)"), "{stdout}");
    assert_eq!(returns.len(), 3, "{stdout}");
    assert!(returns[2].contains("tk_empty = 4"), "{stdout}");
    assert!(stdout.contains("command exited with status 3"), "{stdout}");
}

fn assert_fails(args: &[&str], needle: &str) {
    let out = tracekit(args);
    assert!(!out.status.success(), "should fail: {args:?}");
    let err = stderr(&out);
    assert!(err.contains(needle), "expected `{needle}` in: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_input_gets_clear_errors() {
    let tt = t();
    assert_fails(&["uprobe:/bin/true", "--", "true"], "BINARY:SYMBOL");
    assert_fails(&["bogus:a:b", "--", "true"], "unknown probe type");
    assert_fails(
        &[&format!("uprobe:{tt}:tk_emtpy"), "--", &tt, "1"],
        "did you mean: tk_empty",
    );
    assert_fails(
        &["uprobe:/no/such/binary:main", "--", "true"],
        "no such file",
    );
    let garbage = std::env::temp_dir().join(format!("tk-garbage-cli-{}", std::process::id()));
    std::fs::write(&garbage, "not an elf\n").unwrap();
    assert_fails(
        &[&format!("uprobe:{}:main", garbage.display()), "--", "true"],
        "not a usable ELF file",
    );
    std::fs::remove_file(&garbage).unwrap();
    assert_fails(
        &["-p", "2147483600", &format!("uprobe:{tt}:tk_empty")],
        "no process with pid 2147483600",
    );
    assert_fails(&[&format!("uprobe:{tt}:tk_empty")], "nothing to trace");
    assert_fails(
        &[&format!("uprobe:{tt}:tk_empty"), "--", "/no/such/cmd"],
        "cannot run the command",
    );
    assert_fails(&["kprobe:vfs_read", "--", "true"], "CONFIG_KPROBES");
    assert_fails(
        &["--engine", "bpf", "kprobe:vfs_read", "--", "true"],
        "tracekit trace summary",
    );
}

#[test]
fn ptrace_engine_counts_exact_hits_and_output_is_unchanged() {
    let spec = format!("{}:tk_empty", t());
    let plain = Command::new(target())
        .args(["--only", "tk_empty", "--threads", "4", "300"])
        .output()
        .unwrap();
    for (threads, n, want) in [("1", "500", 500), ("4", "300", 1200)] {
        let file = std::env::temp_dir().join(format!(
            "tk-probe-ptrace-{}-{threads}.json",
            std::process::id()
        ));
        let out = tracekit(&[
            "--engine",
            "ptrace",
            "--json",
            "-o",
            file.to_str().unwrap(),
            &spec,
            "--",
            &t(),
            "--only",
            "tk_empty",
            "--threads",
            threads,
            n,
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        std::fs::remove_file(&file).unwrap();
        assert_eq!(v["engine"], "ptrace");
        assert_eq!((hits(&v, 0), hits(&v, 1)), (want, want), "{v}");
        assert_eq!(v["probes"][1]["latency"]["count"], want);
        if threads == "4" {
            assert_eq!(out.stdout, plain.stdout);
        }
    }
}

#[test]
fn sigint_ends_a_pid_run_and_leaves_the_process_running() {
    let plain = Command::new(target())
        .args(["--only", "tk_sleep_1ms", "--sleep", "1000", "0"])
        .output()
        .unwrap();
    let mut child = Command::new(target())
        .args([
            "--wait-stdin",
            "--only",
            "tk_sleep_1ms",
            "--sleep",
            "1000",
            "0",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let tk = Command::new(TRACEKIT)
        .args([
            "probe",
            "--engine",
            "bpf",
            "-p",
            &pid,
            &format!("{}:tk_sleep_1ms", t()),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let tk_pid = tk.id() as i32;
    let mut tk = tk;
    let mut err = BufReader::new(tk.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.contains("2 probes attached"), "{line}");
    child.stdin.take().unwrap().write_all(b"x").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    // SAFETY: plain kill(2) on the tracekit child we spawned.
    assert_eq!(unsafe { libc::kill(tk_pid, libc::SIGINT) }, 0);
    let out = tk.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let row = text
        .lines()
        .find(|l| l.contains("uprobe:"))
        .unwrap_or_else(|| panic!("{text}"));
    let n: u64 = row.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(n > 0 && n < 1000, "{text}");
    // The process ran on to the end with the same output as without probes.
    let rest = child.wait_with_output().unwrap();
    assert!(rest.status.success());
    assert_eq!(rest.stdout, plain.stdout);
}

/// Without privileges the kernel refuses BPF (EPERM); `--engine auto` says so and uses ptrace.
#[test]
fn auto_engine_falls_back_to_ptrace_when_bpf_is_refused() {
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            TRACEKIT,
            "probe",
            "--json",
        ])
        .arg(format!("uprobe:{}:tk_empty", t()))
        .args(["--", &t(), "--only", "tk_empty", "200"])
        .output()
        .expect("setpriv (util-linux) is installed");
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("BPF engine refused") && err.contains("falling back to the ptrace engine"),
        "{err}"
    );
    let v = json_of(&out);
    assert_eq!(v["engine"], "ptrace");
    assert_eq!(hits(&v, 0), 200);
}

#[test]
fn ptrace_follow_forks_counts_the_child_too() {
    for (flag, want) in [(None, 100), (Some("--follow-forks"), 200)] {
        let file =
            std::env::temp_dir().join(format!("tk-probe-forks-{}-{want}.json", std::process::id()));
        let spec = format!("uprobe:{}:tk_empty", t());
        let mut args = vec!["--engine", "ptrace", "--json", "-o", file.to_str().unwrap()];
        args.extend(flag);
        let target = t();
        args.extend([
            spec.as_str(),
            "--",
            &target,
            "--fork",
            "--only",
            "tk_empty",
            "100",
        ]);
        let out = tracekit(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        std::fs::remove_file(&file).unwrap();
        assert_eq!(hits(&v, 0), want, "{flag:?}: {v}");
    }
}

#[test]
fn return_probes_survive_longjmp_in_both_engines() {
    let e = tracekit_probe::test_support::compile("longjmp.c", "longjmp", &[])
        .display()
        .to_string();
    for engine in ["ptrace", "bpf"] {
        let specs = [
            format!("{e}:rec"),
            format!("{e}:jumper"),
            format!("{e}:leaf"),
        ];
        let mut args = vec!["--engine", engine, "--json"];
        args.extend(specs.iter().map(String::as_str));
        args.extend(["--", &e, "10", "100"]);
        let out = tracekit(&args);
        assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
        let v = json_of(&out);
        // Short forms expand to entry then return: probes 0..5 are rec, rec ret, jumper, jumper ret, leaf, leaf ret.
        let got: Vec<u64> = (0..6).map(|i| hits(&v, i)).collect();
        assert_eq!(got, vec![1100, 1100, 1100, 0, 100, 100], "{engine}: {v}");
        assert_eq!(v["probes"][5]["missed"], 0, "{engine}: {v}");
    }
}

#[test]
fn addresses_outside_code_or_function_starts_are_refused() {
    for engine in ["bpf", "ptrace"] {
        // 0x1 is in the ELF header: not code. Neither engine may place a breakpoint there.
        assert_fails(
            &[
                "--engine",
                engine,
                &format!("uprobe:{}:0x1", t()),
                "--",
                &t(),
                "1",
            ],
            "is not in the code of",
        );
    }
    // The return probe of a function given by an address that is not a function's start.
    let out = Command::new("nm").arg(target()).output().unwrap();
    let nm = String::from_utf8_lossy(&out.stdout);
    let start = nm
        .lines()
        .find_map(|l| l.strip_suffix(" T tk_empty"))
        .map(|a| u64::from_str_radix(a, 16).unwrap())
        .unwrap();
    assert_fails(
        &[
            &format!("uretprobe:{}:{:#x}", t(), start + 1),
            "--",
            &t(),
            "1",
        ],
        "a return probe must be at a function's",
    );
}

#[test]
fn json_separates_lost_records_and_has_no_latency_without_returns() {
    // tk_sleep_1ms is never called here: its return probe has no hits and no latency (null,
    // not zeros); nothing was streamed, so nothing was lost.
    let out = tracekit(&[
        "--engine",
        "bpf",
        "--json",
        &format!("uretprobe:{}:tk_sleep_1ms", t()),
        "--",
        &t(),
        "--only",
        "tk_empty",
        "3",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v = json_of(&out);
    assert_eq!(hits(&v, 0), 0);
    assert_eq!(v["probes"][0]["lost"], 0);
    assert!(v["probes"][0]["latency"].is_null(), "{v}");
    assert!(v["probes"][0]["histogram_log2"].is_null(), "{v}");
}

#[test]
fn loongarch_under_qemu_json_report_to_a_file_exit_status_and_output_unchanged() {
    let program = la::probe_target();
    let p = program.display().to_string();
    let q = Qemu::start(&program, &["25"]);
    let report = std::env::temp_dir().join(format!("tk-probe-la-{}.json", std::process::id()));
    let out = tracekit(&[
        "--target",
        &q.target(),
        "--json",
        "-o",
        report.to_str().unwrap(),
        &format!("{p}:work"),
        &format!("uprobe:{p}:first_b"),
        &format!("uprobe:{p}:first_pcadd"),
        &format!("uprobe:{p}:first_bceqz"),
    ]);
    let (stdout, code, _) = q.finish();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(code, Some(3));
    let plain = Command::new("qemu-loongarch64-static")
        .arg(&program)
        .arg("25")
        .output()
        .unwrap();
    assert_eq!(stdout.as_bytes(), &plain.stdout[..]);
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    std::fs::remove_file(&report).unwrap();
    assert_eq!(v["engine"], "qemu-gdb");
    for i in 0..5 {
        assert_eq!(hits(&v, i), 25, "{v}");
    }
    assert_eq!(v["probes"][1]["latency"]["count"], 25, "{v}");
    assert_eq!(v["exit"]["code"], 3, "{v}");
}

#[test]
fn loongarch_text_report_and_refusals() {
    let program = la::probe_target();
    let p = program.display().to_string();
    let q = Qemu::start(&program, &["3"]);
    let out = tracekit(&["--target", &q.target(), &format!("uprobe:{p}:first_addi")]);
    let _ = q.finish();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("qemu-gdb engine"), "{text}");
    assert!(text.contains("first_addi"), "{text}");
    // LL/SC refused before anything runs, naming the instruction and why.
    let q = Qemu::start(&program, &[]);
    let target = q.target();
    assert_fails(
        &["--target", &target, &format!("uprobe:{p}:first_llsc")],
        "LL/SC",
    );
    drop(q);
    assert_fails(
        &["--target", "gdb:1.2.3.4:1", &format!("uprobe:{p}:work")],
        "qemu-gdb:HOST:PORT",
    );
    assert_fails(
        &[
            "--target",
            &target,
            "--engine",
            "bpf",
            &format!("uprobe:{p}:work"),
        ],
        "--engine bpf",
    );
    assert_fails(
        &["--target", &target, &format!("uprobe:{}:tk_empty", t())],
        "x86-64 code but the target runs LoongArch64",
    );
}
