//! Every subcommand run as user `nobody` (no capabilities): a clear error that names the
//! missing privilege and says what to do, exit status 1, never a panic; `probe` falls back to
//! its ptrace engine, which needs no privilege for the user's own programs, and counts exactly.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const TRACEKIT: &str = env!("CARGO_BIN_EXE_tracekit");

/// Removes the folder when the last test that uses it ends.
struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static ENDED: AtomicUsize = AtomicUsize::new(0);
        if ENDED.fetch_add(1, Ordering::SeqCst) + 1 == TESTS {
            let _ = std::fs::remove_dir_all(folder());
        }
    }
}

/// The tests of this file (each holds a [`Cleanup`]).
const TESTS: usize = 2;

/// A folder `nobody` can read, with copies of tracekit, the probe test program and two BPF
/// objects (the build folders may not be reachable by other users).
fn folder() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("tracekit-nobody-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let objects = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bpf/obj");
        let target = tracekit_probe::test_support::target();
        for (from, name) in [
            (Path::new(TRACEKIT).to_path_buf(), "tracekit"),
            (target, "probe-target"),
            (
                objects.join("xdp_port_filter.bpf.o"),
                "xdp_port_filter.bpf.o",
            ),
            (objects.join("xdp_count.bpf.o"), "xdp_count.bpf.o"),
        ] {
            let to = dir.join(name);
            std::fs::copy(&from, &to).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        dir
    })
}

/// Runs the copied tracekit as `nobody` (setpriv, from util-linux) with `args`; `{dir}` in an
/// argument is the folder.
fn as_nobody(args: &[&str]) -> Output {
    let dir = folder().display().to_string();
    Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .arg(folder().join("tracekit"))
        .args(args.iter().map(|a| a.replace("{dir}", &dir)))
        .current_dir("/")
        .output()
        .expect("setpriv (util-linux) runs a command as another user")
}

fn refused(args: &[&str], message: &str) {
    let out = as_nobody(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    assert!(
        stderr.contains(message),
        "{args:?}: expected {message:?} in {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn each_subcommand_names_the_missing_privilege() {
    let _cleanup = Cleanup;
    refused(
        &["trace", "summary", "--", "true"],
        "run as root (or with CAP_BPF and CAP_PERFMON)",
    );
    refused(
        &["trace", "summary", "-a", "--duration", "0.1"],
        "run as root",
    );
    refused(&["exporter", "--listen", "127.0.0.1:0"], "run as root");
    refused(
        &[
            "probe",
            "--engine",
            "bpf",
            "uprobe:{dir}/probe-target:tk_empty",
            "--",
            "{dir}/probe-target",
            "1",
        ],
        "run as root or grant CAP_BPF and CAP_PERFMON, or use --engine ptrace",
    );
    refused(
        &[
            "probe",
            "--engine",
            "ptrace",
            "-p",
            "1",
            "uprobe:{dir}/probe-target:tk_empty",
        ],
        "not allowed to trace pid 1",
    );
    refused(
        &[
            "prog",
            "run",
            "{dir}/xdp_port_filter.bpf.o",
            "xdp_port_filter",
            "--data-hex",
            "00",
        ],
        "not permitted to load 'xdp_port_filter' (EPERM): loading a BPF program needs root",
    );
    refused(
        &[
            "prog",
            "run",
            "{dir}/xdp_count.bpf.o",
            "xdp_count",
            "--data-hex",
            "00",
        ],
        "creating BPF maps needs root or CAP_BPF",
    );
    refused(
        &["bench", "demand-paging", "-b", "8M"],
        "cannot open /dev/kvm: Permission denied",
    );
}

#[test]
fn probe_falls_back_to_ptrace_and_counts_exactly() {
    let _cleanup = Cleanup;
    let out = as_nobody(&[
        "probe",
        "--json",
        "uprobe:{dir}/probe-target:tk_empty",
        "--",
        "{dir}/probe-target",
        "--only",
        "tk_empty",
        "7",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("BPF engine refused"), "{stderr}");
    assert!(
        stderr.contains("falling back to the ptrace engine"),
        "{stderr}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&stderr[stderr.find('{').unwrap()..]).unwrap();
    assert_eq!(report["engine"], "ptrace");
    assert_eq!(report["probes"][0]["hits"], 7);
    assert!(String::from_utf8_lossy(&out.stdout).contains("total calls 7 "));
}
