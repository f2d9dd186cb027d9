//! `kill -9` of tracekit while its ptrace engine probes a program, at random moments: the
//! program must finish with its normal output and exit status every time (issue 17).
//!
//! Each run probes testdata/target.c (4 threads; entry and return probes on functions called
//! all the time) and SIGKILLs, at a moment drawn from a seeded generator, the tracekit CLI,
//! its waker (the only other tracekit process), or both; some runs first send SIGINT so the
//! kill lands during detach. The test process is a child subreaper, so a program orphaned by
//! its tracer's death is reparented here and its exit status can be read.

use std::fs::File;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const TRACEKIT: &str = env!("CARGO_BIN_EXE_tracekit");
/// Kills per variant (`TRACEKIT_KILL_RUNS` for more when searching).
const RUNS: usize = 50;
/// The program's exit status: not 0, so a lost status would show.
const EXIT: i32 = 3;

fn target() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(tracekit_probe::test_support::target)
}

/// One run's result: `Err` says what went wrong.
type Outcome = Result<(), String>;

/// xorshift64*: reproducible moments without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Which tracekit processes get SIGKILL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Victims {
    Cli,
    All,
    Waker,
    /// SIGINT first (detach starts), then SIGKILL of all a moment later.
    AllDuringDetach,
}

impl Victims {
    fn pick(rng: &mut Rng) -> Self {
        match rng.below(8) {
            0..=2 => Victims::Cli,
            3..=5 => Victims::All,
            6 => Victims::Waker,
            _ => Victims::AllDuringDetach,
        }
    }
}

fn probes() -> Vec<String> {
    let t = target().display().to_string();
    [
        "uprobe:{}:tk_empty",
        "uretprobe:{}:tk_push",
        "uretprobe:{}:tk_riprel",
    ]
    .iter()
    .chain(&[
        "uprobe:{}:tk_call",
        "uretprobe:{}:tk_jcc",
        "uprobe:{}:tk_lea",
    ])
    .map(|p| p.replace("{}", &t))
    .collect()
}

const PROGRAM_ARGS: [&str; 5] = ["--threads", "4", "--exit", "3", "1500"];

/// The program's output without probes.
fn baseline() -> Vec<u8> {
    let out = Command::new(target()).args(PROGRAM_ARGS).output().unwrap();
    assert_eq!(out.status.code(), Some(EXIT));
    out.stdout
}

fn set_subreaper() {
    // SAFETY: prctl with integer arguments only.
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(r, 0, "PR_SET_CHILD_SUBREAPER");
}

/// `pid`'s children (every thread's).
fn children(pid: u32) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return vec![];
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("children")).ok())
        .flat_map(|s| {
            s.split_whitespace()
                .filter_map(|c| c.parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}

fn exe_is(pid: i32, path: &Path) -> bool {
    std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|e| e == path)
}

/// The tracekit processes of a CLI: itself and its children that are not the program
/// (the waker; a child still before its exec is also taken, and killing it would only make
/// the program never start, which the caller sees). Only children running tracekit count.
fn tracekit_children(cli: u32) -> Vec<i32> {
    let exe = std::fs::read_link(format!("/proc/{cli}/exe")).unwrap_or_default();
    children(cli)
        .into_iter()
        .filter(|&c| exe_is(c, &exe))
        .collect()
}

fn kill(pid: i32, sig: i32) {
    // SAFETY: plain kill of a process this test started (or its child).
    unsafe { libc::kill(pid, sig) };
}

/// Sends SIGKILL as `victims` says (SIGINT first for `AllDuringDetach`) and returns the
/// wakers it killed. The program is never a victim.
fn strike(cli: &Child, victims: Victims, rng: &mut Rng) -> Vec<i32> {
    let cli_pid = cli.id();
    let mut wakers: Vec<i32> = tracekit_children(cli_pid);
    // Before its exec the program's child still runs tracekit: spare it. The waker was
    // forked before it (the lower pid).
    wakers.sort();
    wakers.truncate(1);
    if matches!(victims, Victims::Cli) {
        wakers.clear();
    }
    match victims {
        Victims::Cli => kill(cli_pid as i32, libc::SIGKILL),
        Victims::Waker => wakers.iter().for_each(|&w| kill(w, libc::SIGKILL)),
        Victims::All => {
            kill(cli_pid as i32, libc::SIGKILL);
            wakers.iter().for_each(|&w| kill(w, libc::SIGKILL));
        }
        Victims::AllDuringDetach => {
            kill(cli_pid as i32, libc::SIGINT);
            std::thread::sleep(Duration::from_micros(rng.below(3000)));
            kill(cli_pid as i32, libc::SIGKILL);
            wakers.iter().for_each(|&w| kill(w, libc::SIGKILL));
        }
    }
    wakers
}

/// Reaps every child (the CLI, then what was reparented here: the program and the waker)
/// and returns the exit statuses of the others but `killed`.
fn reap_all(cli: &mut Child, killed: &[i32]) -> Vec<i32> {
    let _ = cli.wait();
    let mut statuses = vec![];
    loop {
        let mut status = 0;
        // SAFETY: status is a valid out pointer.
        let r = unsafe { libc::waitpid(-1, &mut status, libc::__WALL) };
        if r < 0 {
            return statuses;
        }
        if !killed.contains(&r) {
            statuses.push(status);
        }
    }
}

/// Waits (2 s at most) until the CLI has forked the program (its second child, after the
/// waker): kill moments are drawn from then on.
fn wait_forked(cli: u32) {
    let t0 = Instant::now();
    while children(cli).len() < 2 && t0.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_micros(100));
    }
}

fn describe(status: i32) -> String {
    if libc::WIFEXITED(status) {
        format!("exit {}", libc::WEXITSTATUS(status))
    } else {
        format!("signal {}", libc::WTERMSIG(status))
    }
}

/// One spawn run: whether the program finished as without probes.
fn spawn_run(rng: &mut Rng, want: &[u8], span_ms: u64, dir: &Path) -> (Victims, Outcome) {
    let out_path = dir.join("out");
    let out = File::create(&out_path).unwrap();
    let victims = Victims::pick(rng);
    // A third of the moments in the first 30 ms after the fork (exec, loader, placing).
    let delay = match rng.below(3) {
        0 => rng.below(30_000),
        _ => rng.below(span_ms * 1000),
    }
    .min(max_delay_us());
    let mut cli = Command::new(TRACEKIT)
        .args(["probe", "--engine", "ptrace"])
        .args(probes())
        .arg("--")
        .arg(target())
        .args(PROGRAM_ARGS)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_forked(cli.id());
    std::thread::sleep(Duration::from_micros(delay));
    let killed = strike(&cli, victims, rng);
    let statuses = reap_all(&mut cli, &killed);
    let got = std::fs::read(&out_path).unwrap();
    let what = format!("{victims:?} {delay} µs after the fork");
    let programs: Vec<_> = statuses
        .iter()
        .filter(|&&s| !(libc::WIFEXITED(s) && libc::WEXITSTATUS(s) == 0))
        .collect();
    let cli_status = cli.try_wait().ok().flatten();
    // The program ran under a dead tracer (reparented here), or under a live one to its end.
    // Killed after it reaped the program (which had finished), tracekit took the program's
    // status with it: then its complete output is the evidence.
    let reaped_by_tracekit = cli_status.is_some_and(|s| s.signal() == Some(libc::SIGKILL));
    let ok_status = match programs.as_slice() {
        [s] => libc::WIFEXITED(**s) && libc::WEXITSTATUS(**s) == EXIT,
        [] => reaped_by_tracekit || cli_status.is_some_and(|s| s.code() == Some(EXIT)),
        _ => false,
    };
    let statuses: Vec<_> = statuses.iter().map(|&s| describe(s)).collect();
    if !ok_status {
        let e = format!("{what}: statuses {statuses:?}, tracekit {cli_status:?}");
        return (victims, Err(e));
    }
    if got != want {
        let e = format!("{what}: output differs:\n{}", String::from_utf8_lossy(&got));
        return (victims, Err(e));
    }
    (victims, Ok(()))
}

/// One attach run (`-p PID`): the program waits for a byte on stdin, tracekit attaches.
fn attach_run(rng: &mut Rng, want: &[u8], span_ms: u64, dir: &Path) -> (Victims, Outcome) {
    let out_path = dir.join("out-attach");
    let out = File::create(&out_path).unwrap();
    let mut program = Command::new(target())
        .arg("--wait-stdin")
        .args(PROGRAM_ARGS)
        .stdin(Stdio::piped())
        .stdout(out)
        .spawn()
        .unwrap();
    let victims = Victims::pick(rng);
    let pid = program.id().to_string();
    let mut cli = Command::new(TRACEKIT)
        .args(["probe", "--engine", "ptrace", "-p", &pid])
        .args(probes())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let early = rng.below(4) == 0;
    if !early {
        wait_traced(program.id());
    }
    program.stdin.take().unwrap().write_all(b"x").unwrap();
    let delay = match early {
        true => rng.below(30_000),
        false => rng.below(span_ms * 1000),
    }
    .min(max_delay_us());
    std::thread::sleep(Duration::from_micros(delay));
    let killed = strike(&cli, victims, rng);
    let status = program.wait().unwrap();
    reap_all(&mut cli, &killed);
    let got = std::fs::read(&out_path).unwrap();
    let what = format!(
        "{victims:?} after {delay} µs (early {early}) pid {}",
        program.id()
    );
    if status.code() != Some(EXIT) {
        return (victims, Err(format!("{what}: program {status:?}")));
    }
    if got != want {
        return (victims, Err(format!("{what}: output differs")));
    }
    (victims, Ok(()))
}

/// `TRACEKIT_KILL_MAX_US`: kill no later than this after the fork, to search one phase
/// (startup, say) with many runs.
fn max_delay_us() -> u64 {
    env_or("TRACEKIT_KILL_MAX_US", u64::MAX)
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Waits (2 s at most) until `pid` has a tracer and a moment more for the probes.
fn wait_traced(pid: u32) {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(2) {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        if status
            .lines()
            .any(|l| l.starts_with("TracerPid:") && l.split_whitespace().nth(1) != Some("0"))
        {
            std::thread::sleep(Duration::from_millis(20));
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// How long a probed run takes, in ms (the span kill moments are drawn from).
fn probed_span() -> u64 {
    let t0 = Instant::now();
    let out = Command::new(TRACEKIT)
        .args(["probe", "--engine", "ptrace"])
        .args(probes())
        .arg("--")
        .arg(target())
        .args(PROGRAM_ARGS)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(EXIT),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (t0.elapsed().as_millis() as u64).max(50)
}

/// Runs `RUNS` kills with `run` and fails unless every one left the program intact.
fn campaign(name: &str, seed: u64, run: fn(&mut Rng, &[u8], u64, &Path) -> (Victims, Outcome)) {
    let want = baseline();
    let span = probed_span();
    let dir = std::env::temp_dir().join(format!("tracekit-kill-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut rng = Rng(seed);
    let mut failures = vec![];
    let mut mix = std::collections::BTreeMap::new();
    let runs = env_or("TRACEKIT_KILL_RUNS", RUNS as u64) as usize;
    for i in 0..runs {
        let (victims, outcome) = run(&mut rng, &want, span, &dir);
        *mix.entry(victims).or_insert(0) += 1;
        if let Err(e) = outcome {
            failures.push(format!("run {i}: {e}"));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "{name}: the program survived {} of {runs} kills (seed {seed:#x}, probed run {span} ms; \
         victims {mix:?})",
        runs - failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Both variants in one test: orphans are reaped with waitpid(-1), which must not take
/// another test's children.
#[test]
fn sigkill_of_tracekit_never_kills_the_traced_program() {
    set_subreaper();
    let seed = env_or("TRACEKIT_KILL_SEED", 0x5eed_0017);
    // TRACEKIT_KILL_ONLY=spawn or attach: one variant, when searching.
    let only = std::env::var("TRACEKIT_KILL_ONLY").unwrap_or_default();
    if only != "attach" {
        campaign("spawn", seed, spawn_run);
    }
    if only != "spawn" {
        campaign("attach (-p PID)", seed ^ 0xa77a, attach_run);
    }
}
