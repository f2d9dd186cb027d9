//! `tracekit probe` on USDT probes, with both engines, exact counts and values: the program
//! crates/tracekit-probe/testdata/usdt.c (built here with <sys/sdt.h>, from Debian's
//! systemtap-sdt-dev, at -O1 and -O0 so that arguments are in registers, in memory relative to
//! a register and relative to rip), and libstdc++'s own probes (libstdcxx:throw and :catch)
//! under testdata/usdt_throw.cpp. `cargo xtask test` installs gcc, g++ and the header.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use serde_json::Value;

const TRACEKIT: &str = env!("CARGO_BIN_EXE_tracekit");
const ENGINES: [&str; 2] = ["bpf", "ptrace"];
/// Steps of a run: small enough that every argument's expected value fits its type.
const STEPS: i64 = 20;

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tracekit-probe/testdata")
        .join(name)
}

fn dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tracekit-usdt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn build(compiler: &str, args: &[&str], source: &str, output: &str) -> PathBuf {
    let out = dir().join(output);
    let status = Command::new(compiler)
        .args(args)
        .arg("-o")
        .arg(&out)
        .arg(testdata(source))
        .status()
        .unwrap_or_else(|e| panic!("{compiler} is needed (cargo xtask test installs it): {e}"));
    assert!(
        status.success(),
        "{compiler} could not build {source} (is systemtap-sdt-dev installed?)"
    );
    out
}

fn usdt_o1() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| build("gcc", &["-O1", "-g"], "usdt.c", "usdt-o1"))
}

fn usdt_o0() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| build("gcc", &["-O0", "-g"], "usdt.c", "usdt-o0"))
}

/// testdata/usdt_lib.c: the library (semaphore in its data) and the program linked to it.
fn usdt_lib() -> &'static (PathBuf, PathBuf) {
    static P: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    P.get_or_init(|| {
        let flags = ["-O1", "-g", "-shared", "-fPIC", "-DTK_LIB"];
        let lib = build("gcc", &flags, "usdt_lib.c", "libtkusdt.so");
        // build() puts the source last; the library must come after it, so link here.
        let program = dir().join("usdt-lib");
        let status = Command::new("gcc")
            .args(["-O1", "-g", "-o"])
            .arg(&program)
            .arg(testdata("usdt_lib.c"))
            .arg(&lib)
            .arg(format!("-Wl,-rpath,{}", dir().display()))
            .status()
            .unwrap();
        assert!(status.success(), "gcc could not build usdt-lib");
        (lib, program)
    })
}

fn thrower() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| build("g++", &["-O1", "-g"], "usdt_throw.cpp", "usdt-throw"))
}

/// A run of `tracekit probe --engine ENGINE --print --json -o FILE SPECS -- PROGRAM ARGS`:
/// the program's stdout, the streamed hits (stderr lines naming a probe) and the report.
struct Run {
    stdout: String,
    stderr: String,
    hits: Vec<String>,
    report: Value,
}

fn run(engine: &str, specs: &[String], program: &Path, args: &[&str]) -> Run {
    let report_path = dir().join(format!("report-{engine}-{}.json", rand_suffix()));
    let out = Command::new(TRACEKIT)
        .args(["probe", "--engine", engine, "--print", "--json", "-o"])
        .arg(&report_path)
        .args(specs)
        .arg("--")
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{engine}: {stderr}");
    let report = std::fs::read_to_string(&report_path).unwrap();
    Run {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        // A hit line is the thread id, then the probe and its arguments.
        hits: stderr
            .lines()
            .filter_map(|l| l.trim_start().split_once(' '))
            .filter(|(tid, _)| tid.parse::<u32>().is_ok())
            .map(|(_, hit)| hit.to_owned())
            .collect(),
        stderr,
        report: serde_json::from_str(&report).unwrap_or_else(|e| panic!("{e}: {report}")),
    }
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn hits(report: &Value) -> Vec<u64> {
    report["probes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["hits"].as_u64().unwrap())
        .collect()
}

/// The lines `--print` must show for tk:step and tk:plain over a run of `STEPS` steps (see
/// the header of usdt.c for the values).
fn expected_lines(program: &Path) -> Vec<String> {
    let p = program.display();
    let mut lines = Vec::new();
    for i in 1..=STEPS {
        lines.push(format!(
            "usdt:{p}:tk:step arg0={i} arg1={} arg2={} arg3={:#x} arg4={}",
            -i,
            200 + i,
            0xdead_beef_0000_0000u64 + i as u64,
            -1000 * i
        ));
        lines.push(format!("usdt:{p}:tk:plain arg0={i}"));
        let second = if i % 2 == 1 { -i } else { 2 * i };
        lines.push(format!("usdt:{p}:tk:plain arg0={second}"));
    }
    lines
}

#[test]
fn usdt_probes_count_print_arguments_and_hold_the_semaphore_with_both_engines() {
    for program in [usdt_o1(), usdt_o0()] {
        let steps = STEPS.to_string();
        // Untraced, the guarded branch never runs.
        let alone = Command::new(program).arg(&steps).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&alone.stdout), "guarded=0 sema=0\n");
        let p = program.display();
        let specs = [format!("usdt:{p}:tk:step"), format!("usdt:{p}:plain")];
        for engine in ENGINES {
            let r = run(engine, &specs, program, &[&steps]);
            let what = format!("{engine} on {p}");
            // tk:plain has three sites, folded into one row.
            assert_eq!(hits(&r.report), [STEPS as u64, 2 * STEPS as u64], "{what}");
            assert_eq!(r.report["probes"][1]["spec"], format!("usdt:{p}:tk:plain"));
            assert!(r.stderr.contains("tk:plain: 3 sites"), "{}", r.stderr);
            assert_eq!(r.report["probes"][0]["kind"], "usdt");
            // Every step ran the guarded branch; the semaphore was held (one site: 1).
            assert_eq!(r.stdout, format!("guarded={STEPS} sema=1\n"), "{what}");
            assert_eq!(r.hits, expected_lines(program), "{what}");
        }
    }
}

/// The steps program, driven line by line.
struct Steps {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Steps {
    fn start(program: &Path) -> Steps {
        let mut child = Command::new(program)
            .arg("steps")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Steps {
            child,
            stdin,
            stdout,
        }
    }

    fn ask(&mut self, command: &str) -> String {
        writeln!(self.stdin, "{command}").unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line.trim_end().to_owned()
    }

    fn fire(&mut self, times: usize) -> String {
        (0..times).map(|_| self.ask("fire")).last().unwrap()
    }
}

/// tracekit's stderr, line by line, from a thread.
fn lines_of(stderr: std::process::ChildStderr) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

#[test]
fn the_guarded_branch_runs_only_while_tracekit_is_attached() {
    for engine in ENGINES {
        let mut steps = Steps::start(usdt_o1());
        let pid = steps.child.id();
        assert_eq!(steps.fire(3), "guarded=0", "{engine}: before attaching");
        assert_eq!(steps.ask("peek"), "sema=0");
        let spec = format!("usdt:{}:tk:step", usdt_o1().display());
        let mut tracer = Command::new(TRACEKIT)
            .args([
                "probe",
                "--engine",
                engine,
                "--json",
                "-p",
                &pid.to_string(),
                &spec,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = lines_of(tracer.stderr.take().unwrap());
        if engine == "bpf" {
            // The kernel holds the semaphore from the uprobe's registration, the program from
            // the link just after: wait for the link.
            let line = stderr.recv_timeout(Duration::from_secs(60)).unwrap();
            assert!(line.contains("1 probe attached"), "{line}");
        }
        let t0 = Instant::now();
        while steps.ask("peek") != "sema=1" {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "{engine}: never attached"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(steps.fire(7), "guarded=7", "{engine}: while attached");
        // SIGINT: tracekit detaches and reports.
        // SAFETY: signalling the child we started.
        unsafe { libc::kill(tracer.id() as i32, libc::SIGINT) };
        let out = tracer.wait_with_output().unwrap();
        let rest: Vec<String> = stderr.try_iter().collect();
        assert!(out.status.success(), "{engine}: {rest:?}");
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(hits(&report), [7], "{engine}");
        assert_eq!(steps.ask("peek"), "sema=0", "{engine}: after detach");
        assert_eq!(steps.fire(5), "guarded=7", "{engine}: after detach");
        steps.ask("quit");
        assert!(steps.child.wait().unwrap().success());
    }
}

#[test]
fn a_semaphore_in_a_shared_library_is_held_once_the_library_is_loaded() {
    const CALLS: i64 = 9;
    let (lib, program) = usdt_lib();
    let alone = Command::new(program).arg("3").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&alone.stdout), "guarded=0\n");
    let spec = format!("usdt:{}:tklib:call", lib.display());
    for engine in ENGINES {
        let r = run(
            engine,
            std::slice::from_ref(&spec),
            program,
            &[&CALLS.to_string()],
        );
        assert_eq!(r.stdout, format!("guarded={CALLS}\n"), "{engine}");
        assert_eq!(hits(&r.report), [CALLS as u64], "{engine}");
        let expected: Vec<String> = (1..=CALLS).map(|i| format!("{spec} arg0={i}")).collect();
        assert_eq!(r.hits, expected, "{engine}");
    }
}

#[test]
fn libstdcxx_throw_and_catch_probes_count_every_exception() {
    const THROWS: u64 = 123;
    let specs = [
        "usdt:libstdc++:libstdcxx:throw".to_owned(),
        "usdt:libstdc++:catch".to_owned(),
    ];
    for engine in ENGINES {
        let r = run(engine, &specs, thrower(), &[&THROWS.to_string()]);
        assert_eq!(r.stdout, format!("caught={THROWS}\n"));
        assert_eq!(hits(&r.report), [THROWS, THROWS], "{engine}");
        assert_eq!(
            r.report["probes"][1]["spec"],
            "usdt:libstdc++:libstdcxx:catch"
        );
        // throw's arguments are the exception object and its type_info: pointers, the same
        // type_info every time.
        let types: std::collections::BTreeSet<&str> = r
            .hits
            .iter()
            .filter(|l| l.contains(":throw "))
            .map(|l| l.rsplit_once(" arg1=").unwrap().1)
            .collect();
        assert_eq!(types.len(), 1, "{engine}: {types:?}");
        assert!(types.first().unwrap().starts_with("0x"), "{types:?}");
    }
}

#[test]
fn list_shows_usdt_sites_and_errors_say_what_exists() {
    let p = usdt_o1().display().to_string();
    let list = |what: &str| {
        let out = Command::new(TRACEKIT)
            .args(["probe", "--json", "--list", what])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let names = |v: &Value| -> Vec<String> {
        v["usdt"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                format!(
                    "{}:{}",
                    n["provider"].as_str().unwrap(),
                    n["name"].as_str().unwrap()
                )
            })
            .collect()
    };
    let all = list(&p);
    assert_eq!(names(&all), ["tk:step", "tk:plain", "tk:plain", "tk:plain"]);
    assert!(all["usdt"][0]["semaphore"].as_u64().unwrap() > 0);
    assert!(!all["functions"].as_array().unwrap().is_empty());
    let step = list(&format!("usdt:{p}:tk:s*"));
    assert_eq!(names(&step), ["tk:step"]);
    assert_eq!(
        step["usdt"][0]["arguments"]
            .as_str()
            .unwrap()
            .split(' ')
            .count(),
        5
    );

    let fail = |spec: &str| {
        let out = Command::new(TRACEKIT)
            .args(["probe", spec, "--", "true"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = fail(&format!("usdt:{p}:tk:stepp"));
    assert!(e.contains("no USDT probe `tk:stepp`"), "{e}");
    assert!(e.contains("did you mean: tk:step"), "{e}");
    let e = fail("usdt:libc:setjmp");
    assert!(e.contains("libc.so.6 has no USDT probes"), "{e}");
    let e = fail(&format!("usdt:{p}"));
    assert!(e.contains("usdt:BINARY:PROVIDER:NAME"), "{e}");
}

#[test]
fn interval_reports_fold_a_probes_sites_and_add_up() {
    let program = usdt_o1();
    let p = program.display();
    for engine in ENGINES {
        let out = Command::new(TRACEKIT)
            .args(["probe", "--engine", engine, "-i", "0.05", "--json"])
            .arg(format!("usdt:{p}:tk:plain"))
            .arg(format!("usdt:{p}:tk:step"))
            .arg("--")
            .arg(program)
            .arg("3000")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        let mut totals = [0u64; 2];
        for line in stderr.lines().filter(|l| l.starts_with('{')) {
            let doc: Value = serde_json::from_str(line).unwrap();
            let rows = doc["probes"].as_array().unwrap();
            // tk:plain's three sites are one row in every interval, not only at the end.
            assert_eq!(rows.len(), 2, "{engine}: {line}");
            for (total, row) in totals.iter_mut().zip(rows) {
                *total += row["hits"].as_u64().unwrap();
            }
        }
        assert_eq!(totals, [6000, 3000], "{engine}: {stderr}");
    }
}
