//! `tracekit probe --print` names and types arguments from DWARF (both engines): each integer
//! size and sign, char, bool, pointer, and parameters after a float or a struct on the stack;
//! without debug information the raw registers, as before. The program is
//! crates/tracekit-probe/testdata/params.c, built here with gcc.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

const TRACEKIT: &str = env!("CARGO_BIN_EXE_tracekit");

/// `params.c` built with `-g`, and a copy with the debug information removed.
fn programs() -> &'static (PathBuf, PathBuf) {
    static P: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    P.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("tracekit-print-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let source =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../tracekit-probe/testdata/params.c");
        let with = dir.join("params");
        let without = dir.join("params-nodebug");
        let gcc = Command::new("gcc")
            .args(["-O1", "-g", "-o"])
            .arg(&with)
            .arg(source)
            .status()
            .expect("gcc is needed (cargo xtask test installs it)");
        assert!(gcc.success());
        let objcopy = Command::new("objcopy")
            .arg("--strip-debug")
            .arg(&with)
            .arg(&without)
            .status()
            .expect("objcopy (binutils) is needed");
        assert!(objcopy.success());
        (with, without)
    })
}

/// The `--print` lines of a run, without the thread id, in order.
fn printed(engine: &str, program: &Path, extra: &[&str], functions: &[&str]) -> Vec<String> {
    let specs = functions.iter().map(|f| match f.split_once(':') {
        Some((kind, f)) => format!("{kind}:{}:{f}", program.display()),
        None => format!("uprobe:{}:{f}", program.display()),
    });
    let out = Command::new(TRACEKIT)
        .args(["probe", "--engine", engine, "--print"])
        .args(extra)
        .args(specs)
        .arg("--")
        .arg(program)
        .arg("3")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "270\n");
    let prefixes = ["uprobe", "uretprobe"].map(|k| format!("{k}:{}:", program.display()));
    stderr
        .lines()
        .filter_map(|l| l.trim_start().split_once(' '))
        .filter_map(|(_, rest)| prefixes.iter().find_map(|p| rest.strip_prefix(p.as_str())))
        .map(str::to_owned)
        .collect()
}

fn pointer_free(lines: Vec<String>) -> Vec<String> {
    lines
        .into_iter()
        .map(|l| match l.split_once("name=0x") {
            Some((head, tail)) => format!("{head}name=PTR{}", &tail[tail.find(',').unwrap()..]),
            None => l,
        })
        .collect()
}

#[test]
fn arguments_are_named_and_typed_from_dwarf() {
    let (with, _) = programs();
    for engine in ["bpf", "ptrace"] {
        let lines = pointer_free(printed(
            engine,
            with,
            &[],
            &["work", "after_struct", "after_float"],
        ));
        let mut expected = Vec::new();
        for i in 0..3 {
            expected.push(format!(
                "work(n={}, c='A', name=PTR, flag={}, s=-300)",
                -5 - i,
                i % 2 == 1
            ));
            expected.push("after_struct(x=7, y=-9)".to_owned());
            expected.push("after_float(a=1, b=18446744073709551615)".to_owned());
        }
        assert_eq!(lines, expected, "{engine}");
    }
}

#[test]
fn hidden_and_double_registers_are_accounted_for_and_returns_typed() {
    let (with, _) = programs();
    for engine in ["bpf", "ptrace"] {
        let lines = printed(engine, with, &[], &["make_big", "wide"]);
        let rets = printed(engine, with, &[], &["uretprobe:wide"]);
        // make_big returns a struct in memory: rdi holds its address, x is in rsi. wide's
        // __int128 takes rdi and rsi: nothing can be named, so the registers stay raw.
        assert_eq!(
            lines,
            ["make_big(x=11, y=22)", "wide(33, 0, 44)"].repeat(3),
            "{engine}"
        );
        // wide returns a short: -999, not 4294966297.
        assert!(
            rets.iter().all(|l| l.starts_with("wide = -999 ")),
            "{engine}: {rets:?}"
        );
        assert_eq!(rets.len(), 3);
    }
}

#[test]
fn args_limits_the_named_arguments() {
    let (with, _) = programs();
    let lines = printed("ptrace", with, &["--args", "2"], &["work"]);
    assert_eq!(
        lines,
        [
            "work(n=-5, c='A')",
            "work(n=-6, c='A')",
            "work(n=-7, c='A')"
        ]
    );
}

#[test]
fn without_debug_information_the_registers_are_raw() {
    let (_, without) = programs();
    for engine in ["bpf", "ptrace"] {
        let lines = printed(engine, without, &["--args", "2"], &["after_struct"]);
        // x in rdi, then b's stack copy leaves rsi to y: -9 as a full register.
        assert_eq!(lines, ["after_struct(7, -9)"; 3], "{engine}");
    }
}
