//! `tracekit exporter` scraped by a real Prometheus (Debian's `prometheus`, installed by
//! `cargo xtask test`): exact counts through Prometheus' query API, a scrape checked by
//! `promtool`, and clear errors for bad addresses. Needs root (BPF, cgroups).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tracekit_probe::test_support::qemu::free_port;

const TRACEKIT: &str = env!("CARGO_BIN_EXE_tracekit");

fn workload() -> PathBuf {
    PathBuf::from(TRACEKIT)
        .parent()
        .unwrap()
        .join("tracekit-syscall-workload")
}

/// GET `path` on 127.0.0.1:`port`: the body, or `None` if nothing answers.
fn get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response.split_once("\r\n\r\n")?.1.to_owned())
}

fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + Duration::from_secs(30);
    while Instant::now() < until {
        if let Some(v) = probe() {
            return v;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out waiting for {what}");
}

/// Kills a child process when dropped (a failing test leaves nothing running).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The value of a PromQL query with one result, as Prometheus' HTTP API returns it.
fn query(port: u16, promql: &str) -> Option<f64> {
    let encoded: String = promql
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let body = get(port, &format!("/api/v1/query?query={encoded}"))?;
    let doc: serde_json::Value = serde_json::from_str(&body).ok()?;
    let result = doc["data"]["result"].as_array()?;
    result.first()?["value"][1].as_str()?.parse().ok()
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

fn cgroup2() -> PathBuf {
    tracekit_core::process::cgroup2_mount().expect("a cgroup v2 hierarchy mounted")
}

/// `tracekit exporter ARGS --listen 127.0.0.1:PORT`, once it answers on /metrics; killed when
/// dropped.
fn start_exporter(port: u16, args: &[&str]) -> Running {
    let exporter = Running(
        Command::new(TRACEKIT)
            .arg("exporter")
            .args(args)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("the exporter to answer", || get(port, "/metrics"));
    exporter
}

fn start_prometheus(dir: &Path, target_port: u16, port: u16) -> Running {
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: tracekit\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
        ),
    )
    .unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus (cargo xtask test installs it)");
    Running(child)
}

#[test]
fn prometheus_sees_exact_counts_and_errors() {
    let dir = std::env::temp_dir().join(format!("tracekit-exporter-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cgroup = cgroup2().join(format!("tracekit-exporter-{}", std::process::id()));
    std::fs::create_dir(&cgroup).unwrap();
    let (exporter_port, prometheus_port) = (free_port(), free_port());
    let _exporter = start_exporter(
        exporter_port,
        &[
            "--by",
            "cgroup",
            "-e",
            "getppid,close",
            "--cgroup",
            path_str(&cgroup),
        ],
    );
    let _prometheus = start_prometheus(&dir, exporter_port, prometheus_port);
    wait_for("Prometheus to scrape the exporter", || {
        (query(prometheus_port, "up{job=\"tracekit\"}")? == 1.0).then_some(())
    });

    // The workload joins the cgroup before it makes its calls.
    let mut child = Command::new(workload())
        .args(["wait", "getppid", "4321", "ebadf", "17"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    std::fs::write(cgroup.join("cgroup.procs"), child.id().to_string()).unwrap();
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    assert!(child.wait().unwrap().success());

    let path = format!("/{}", cgroup.file_name().unwrap().to_string_lossy());
    let calls =
        format!("tracekit_syscall_duration_seconds_count{{cgroup=\"{path}\",syscall=\"getppid\"}}");
    let got = wait_for("the workload's calls in Prometheus", || {
        query(prometheus_port, &calls).filter(|&v| v == 4321.0)
    });
    assert_eq!(got, 4321.0);
    // The +Inf bucket holds every call too.
    let inf = format!(
        "tracekit_syscall_duration_seconds_bucket{{cgroup=\"{path}\",syscall=\"getppid\",le=\"+Inf\"}}"
    );
    assert_eq!(query(prometheus_port, &inf), Some(4321.0));
    let errors = format!(
        "tracekit_syscall_errors_total{{cgroup=\"{path}\",syscall=\"close\",errno=\"EBADF\"}}"
    );
    let got = wait_for("the workload's errors in Prometheus", || {
        query(prometheus_port, &errors)
    });
    assert_eq!(got, 17.0);

    // promtool accepts a scrape as it is.
    let scrape = get(exporter_port, "/metrics").unwrap();
    let promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .output_with_stdin(scrape.as_bytes());
    assert!(
        promtool.status.success(),
        "{}",
        String::from_utf8_lossy(&promtool.stdout)
    );
    assert!(get(exporter_port, "/").unwrap().contains("/metrics"));

    drop(_exporter);
    let _ = std::fs::remove_dir(&cgroup);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `Command::output` with bytes on standard input.
trait OutputWithStdin {
    fn output_with_stdin(&mut self, input: &[u8]) -> std::process::Output;
}

impl OutputWithStdin for Command {
    fn output_with_stdin(&mut self, input: &[u8]) -> std::process::Output {
        let mut child = self
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    }
}

#[test]
fn sigterm_detaches_and_exits_zero() {
    let port = free_port();
    let mut exporter = start_exporter(port, &[]);
    let sent = Command::new("kill")
        .args(["-TERM", &exporter.0.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = exporter.0.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    // Detached: nothing answers any more.
    assert!(get(port, "/metrics").is_none());
}

#[test]
fn bad_addresses_get_clear_errors() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let cases = [
        (format!("127.0.0.1:{port}"), "choose another with --listen"),
        ("nonsense".to_owned(), "give ADDR:PORT"),
        ("192.0.2.1:9464".to_owned(), "not one of this machine's"),
    ];
    for (listen, message) in cases {
        let out = Command::new(TRACEKIT)
            .args(["exporter", "--listen", &listen])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{listen}: {err}");
        assert!(err.contains(message), "{listen}: {err}");
    }
}

/// The sum of a metric's samples in a scrape, and how many samples it has.
fn samples(scrape: &str, metric: &str) -> (f64, usize) {
    let values: Vec<f64> = scrape
        .lines()
        .filter(|l| l.starts_with(metric))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (values.iter().sum(), values.len())
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap()
}

#[test]
fn a_process_churn_under_scrapes_stays_capped_and_exact() {
    let cgroup = cgroup2().join(format!("tracekit-churn-{}", std::process::id()));
    std::fs::create_dir(&cgroup).unwrap();
    let port = free_port();
    let exporter = start_exporter(
        port,
        &[
            "--by",
            "process",
            "--max-series",
            "200",
            "-e",
            "getppid",
            "--cgroup",
            path_str(&cgroup),
        ],
    );
    let rss_before = rss_kib(exporter.0.id());
    // 1000 short-lived processes, 10 getppid calls each: 100 every 3 s for 30 s.
    let mut steps = vec!["wait"];
    for _ in 0..10 {
        steps.extend(["fork", "100", "10", "sleep", "3000000000"]);
    }
    let mut churn = Command::new(workload())
        .args(&steps)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    std::fs::write(cgroup.join("cgroup.procs"), churn.id().to_string()).unwrap();
    churn.stdin.take().unwrap().write_all(b"go\n").unwrap();
    // 20 scrapes a second while the processes come and go.
    let mut scrapes = 0u32;
    let started = Instant::now();
    while churn.try_wait().unwrap().is_none() {
        let next = started + Duration::from_millis(50) * (scrapes + 1);
        let scrape = get(port, "/metrics").expect("every scrape answers");
        let (_, series) = samples(&scrape, "tracekit_syscall_duration_seconds_count{");
        assert!(
            series <= 201,
            "{series} series beyond the cap of 200 (+ other)"
        );
        scrapes += 1;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let rate = f64::from(scrapes) / started.elapsed().as_secs_f64();
    assert!(churn.wait().unwrap().success());
    let scrape = get(port, "/metrics").unwrap();
    let rss_after = rss_kib(exporter.0.id());
    let (calls, series) = samples(&scrape, "tracekit_syscall_duration_seconds_count{");
    let (folded, _) = samples(&scrape, "tracekit_series_dropped_total");
    println!(
        "{scrapes} scrapes ({rate:.1}/s); {series} series; exporter RSS {rss_before} KiB before, {rss_after} KiB after"
    );
    assert!(rate > 18.0, "{rate:.1} scrapes/s");
    drop(exporter);
    let _ = std::fs::remove_dir(&cgroup);
    assert_eq!(calls, 10_000.0, "no call lost, folded ones included");
    assert_eq!(series, 201);
    assert_eq!(folded, 800.0);
    assert!(
        rss_after < rss_before + 32 * 1024,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
}

/// Runs the workload with `steps` inside `cgroup`, to its end.
fn run_in_cgroup(cgroup: &Path, steps: &[&str]) -> u32 {
    let mut child = Command::new(workload())
        .arg("wait")
        .args(steps)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    std::fs::write(cgroup.join("cgroup.procs"), child.id().to_string()).unwrap();
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    assert!(child.wait().unwrap().success());
    child.id()
}

#[test]
fn expired_series_make_room_and_sighup_is_harmless() {
    let cgroup = cgroup2().join(format!("tracekit-expire-{}", std::process::id()));
    std::fs::create_dir(&cgroup).unwrap();
    let port = free_port();
    let exporter = start_exporter(
        port,
        &[
            "--by",
            "process",
            "--max-series",
            "1",
            "--expire",
            "1",
            "-e",
            "getppid",
            "--cgroup",
            path_str(&cgroup),
        ],
    );
    let first = run_in_cgroup(&cgroup, &["getppid", "300"]);
    let series_of = |pid: u32| format!("pid=\"{pid}\",syscall=\"getppid\"}} ");
    let scrape = get(port, "/metrics").unwrap();
    assert!(
        scrape.contains(&format!("{}300", series_of(first))),
        "{scrape}"
    );
    // No new call for over a second: the series goes, and frees its place under the cap.
    let gone = wait_for("the first series to expire", || {
        let s = get(port, "/metrics")?;
        (!s.contains(&series_of(first))).then_some(s)
    });
    assert!(!gone.contains("pid=\"other\""));
    let sent = Command::new("kill")
        .args(["-HUP", &exporter.0.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let second = run_in_cgroup(&cgroup, &["getppid", "200"]);
    let scrape = wait_for("the exporter after SIGHUP", || get(port, "/metrics"));
    assert!(
        scrape.contains(&format!("{}200", series_of(second))),
        "{scrape}"
    );
    let (folded, _) = samples(&scrape, "tracekit_series_dropped_total");
    assert_eq!(folded, 0.0, "the second process had its own series");
    drop(exporter);
    let _ = std::fs::remove_dir(&cgroup);
}

#[test]
fn probes_are_exported_with_exact_hits_and_durations() {
    let target = tracekit_probe::test_support::target();
    let port = free_port();
    let t = target.display().to_string();
    let (entry, ret) = (
        format!("uprobe:{t}:tk_empty"),
        format!("uretprobe:{t}:tk_sleep_1ms"),
    );
    let _exporter = start_exporter(port, &["-e", "getppid", "--probe", &entry, "--probe", &ret]);
    for args in [
        &["--only", "tk_empty", "500"][..],
        &["--only", "tk_sleep_1ms", "--sleep", "5", "0"],
    ] {
        let out = Command::new(&target).args(args).output().unwrap();
        assert!(out.status.success());
    }
    let scrape = get(port, "/metrics").unwrap();
    let value = |metric: &str, probe: &str| -> f64 {
        let prefix = format!("{metric}{{probe=\"{probe}\"}} ");
        scrape
            .lines()
            .find_map(|l| l.strip_prefix(&prefix)?.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in:\n{scrape}"))
    };
    assert_eq!(value("tracekit_probe_hits_total", &entry), 500.0);
    assert_eq!(value("tracekit_probe_hits_total", &ret), 5.0);
    assert_eq!(value("tracekit_probe_duration_seconds_count", &ret), 5.0);
    let sum = value("tracekit_probe_duration_seconds_sum", &ret);
    assert!(sum >= 0.005, "five 1 ms sleeps took {sum} s");
    assert_eq!(value("tracekit_probe_missed_total", &ret), 0.0);
}

#[test]
fn without_bpf_privilege_the_error_says_what_to_do() {
    // A copy nobody can run (the build folder may not be readable by other users).
    let copy = std::env::temp_dir().join(format!("tracekit-unprivileged-{}", std::process::id()));
    std::fs::copy(TRACEKIT, &copy).unwrap();
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(&copy)
        .args([
            "exporter",
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&copy);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("CAP_BPF"), "{err}");
}
