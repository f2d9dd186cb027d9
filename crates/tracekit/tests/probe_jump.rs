//! `tracekit probe --engine jump` end to end: the program keeps running correctly when
//! tracekit is stopped with SIGTERM (detach) or killed with SIGKILL (no detach at all).
//!
//! This test binary makes itself a child subreaper, so that the traced program, orphaned
//! when tracekit ends, becomes its child and its exit status can be checked.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

const TRACEKIT: &str = env!("CARGO_BIN_EXE_tracekit");

fn target() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(tracekit_probe::test_support::target)
}

/// The traced program: tracekit's child running `target()` (not its waker process).
fn traced_child(tracekit: u32) -> Option<i32> {
    let children =
        std::fs::read_to_string(format!("/proc/{tracekit}/task/{tracekit}/children")).ok()?;
    children
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
        .find(|p| std::fs::read_link(format!("/proc/{p}/exe")).is_ok_and(|e| e == target()))
}

/// Runs the target under the jump engine with return addresses hijacked in both threads
/// (inside `tk_sleep_1ms`), sends `signal` to tracekit mid-run, and checks that the program
/// ends with the output and exit status it has untraced.
fn program_survives(signal: i32) {
    // SAFETY: plain prctl; orphaned descendants are reparented to this process.
    assert_eq!(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) }, 0);
    let t = target().display().to_string();
    let args = ["--threads", "2", "--sleep", "500", "--exit", "3", "2000"];
    let plain = Command::new(target()).args(args).output().unwrap();
    let specs = [
        format!("uprobe:{t}:tk_empty"),
        format!("uretprobe:{t}:tk_sleep_1ms"),
        format!("uprobe:{t}:tk_call"),
    ];
    let mut tk = Command::new(TRACEKIT)
        .args(["probe", "--engine", "jump"])
        .args(&specs)
        .arg("--")
        .arg(&t)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pid = None;
    for _ in 0..200 {
        pid = pid.or_else(|| traced_child(tk.id()));
        if pid.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let pid = pid.expect("the traced program never started");
    // Past the calls, into the sleeps (500 ms of them per thread).
    std::thread::sleep(Duration::from_millis(250));
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(tk.id() as i32, signal) }, 0);
    let mut stdout = tk.stdout.take().unwrap();
    let mut stderr = String::new();
    tk.stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let tk_status = tk.wait().unwrap();
    let mut out = Vec::new();
    // EOF once the program (which shares the pipe) has exited.
    stdout.read_to_end(&mut out).unwrap();
    let mut status = 0;
    // SAFETY: waiting for our (adopted) descendant; status is a valid out pointer.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(waited, pid, "{stderr}");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 3,
        "program ended with wait status {status:#x}; tracekit: {tk_status:?} {stderr}"
    );
    assert_eq!(
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(&plain.stdout)
    );
    if signal == libc::SIGTERM {
        assert!(tk_status.success(), "{stderr}");
        assert!(stderr.contains("jump engine"), "{stderr}");
    }
}

#[test]
fn sigkill_of_tracekit_leaves_the_program_running_correctly() {
    program_survives(libc::SIGKILL);
}

#[test]
fn sigterm_detaches_and_the_program_finishes_correctly() {
    program_survives(libc::SIGTERM);
}
