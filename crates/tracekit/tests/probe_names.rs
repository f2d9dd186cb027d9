//! `tracekit probe` on symbols that are not plain C functions: an assembly routine without
//! `.type`, glibc's IFUNC `strlen`, versioned symbols, C++ and Rust names (both manglings),
//! with both engines, exact counts. The programs are crates/tracekit-probe/testdata/names.*,
//! built here with gcc, g++ and rustc (cargo xtask test installs the compilers).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

const TRACEKIT: &str = env!("CARGO_BIN_EXE_tracekit");
const CALLS: u64 = 1234;

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tracekit-probe/testdata")
        .join(name)
}

/// Builds `source` with `compiler args` into a per-process folder, once.
fn build(compiler: &str, args: &[&str], source: &str, output: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tracekit-names-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join(output);
    let status = Command::new(compiler)
        .args(args.iter().filter(|a| !a.starts_with("-l")))
        .arg("-o")
        .arg(&out)
        .arg(testdata(source))
        // Libraries after the source that needs them.
        .args(args.iter().filter(|a| a.starts_with("-l")))
        .status()
        .unwrap_or_else(|e| panic!("{compiler} is needed (cargo xtask test installs it): {e}"));
    assert!(status.success(), "{compiler} could not build {source}");
    out
}

fn names_c() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| build("gcc", &["-O1", "-g"], "names.c", "names"))
}

fn names_cpp() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| build("g++", &["-O1", "-g"], "names.cpp", "names_cpp"))
}

/// `legacy` is rustc's default; asking for it by name needs a nightly compiler.
fn names_rust(mangling: &str) -> PathBuf {
    let flag = format!("symbol-mangling-version={mangling}");
    let args: &[&str] = match mangling {
        "legacy" => &["-O"],
        _ => &["-O", "-C", &flag],
    };
    build("rustc", args, "names.rs", &format!("names_rust_{mangling}"))
}

/// Runs `tracekit probe --engine ENGINE --json SPECS -- PROGRAM CALLS` and returns the report.
fn probe(engine: &str, specs: &[String], program: &Path) -> Value {
    probe_calls(engine, specs, program, CALLS)
}

fn probe_calls(engine: &str, specs: &[String], program: &Path, calls: u64) -> Value {
    let out: Output = Command::new(TRACEKIT)
        .args(["probe", "--engine", engine, "--json"])
        .args(specs)
        .arg("--")
        .arg(program)
        .arg(calls.to_string())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    let start = text
        .find('{')
        .unwrap_or_else(|| panic!("no report: {text}"));
    serde_json::from_str(&text[start..]).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn hits(report: &Value) -> Vec<u64> {
    report["probes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["hits"].as_u64().unwrap())
        .collect()
}

#[test]
fn an_assembly_routine_without_a_type_is_probed() {
    let spec = format!("uprobe:{}:tk_asm_untyped", names_c().display());
    for engine in ["bpf", "ptrace"] {
        assert_eq!(
            hits(&probe(engine, std::slice::from_ref(&spec), names_c())),
            [CALLS],
            "{engine}"
        );
    }
}

#[test]
fn an_ifunc_is_probed_on_the_implementation_the_program_runs() {
    // The program calls strlen CALLS times through a pointer, so the calls go to the
    // implementation the dynamic loader chose; the resolver runs once, at relocation. libc's
    // start-up makes a few calls of its own: a run with 0 calls measures them.
    let spec = ["uprobe:libc:strlen".to_owned()];
    for engine in ["bpf", "ptrace"] {
        let baseline = hits(&probe_calls(engine, &spec, names_c(), 0))[0];
        let with_calls = hits(&probe(engine, &spec, names_c()))[0];
        assert_eq!(
            with_calls - baseline,
            CALLS,
            "{engine}: {baseline} then {with_calls}"
        );
    }
}

/// An IFUNC of a library tracekit has not loaded (libatomic): a helper process loads it and
/// asks its loader, and every one of the program's calls is counted on the implementation.
#[test]
fn an_ifunc_of_a_library_tracekit_has_not_loaded_is_resolved() {
    static P: OnceLock<PathBuf> = OnceLock::new();
    let program = P.get_or_init(|| build("gcc", &["-O1", "-latomic"], "atomic16.c", "atomic16"));
    let spec = ["uprobe:libatomic:__atomic_fetch_add_16".to_owned()];
    for engine in ["bpf", "ptrace"] {
        assert_eq!(hits(&probe(engine, &spec, program)), [CALLS], "{engine}");
    }
}

#[test]
fn versioned_symbols_are_accepted() {
    let specs = [
        "uprobe:libc:\"strlen@@GLIBC_2.2.5\"",
        "uprobe:libc:strlen@GLIBC_2.2.5",
    ]
    .map(str::to_owned);
    let baseline = hits(&probe_calls("bpf", &specs, names_c(), 0));
    let got = hits(&probe("bpf", &specs, names_c()));
    assert_eq!(got[0], got[1]);
    assert_eq!(got[0] - baseline[0], CALLS, "{baseline:?} then {got:?}");
}

#[test]
fn cpp_names_are_found_demangled_and_mangled() {
    let p = names_cpp().display().to_string();
    let specs = [
        format!("uprobe:{p}:\"tk::Foo::bar\""),
        format!("uprobe:{p}:cpp:\"tk::twice<long>\""),
        format!("uprobe:{p}:\"tk::Foo::bar(int)\""),
        format!("uprobe:{p}:_ZN2tk3Foo3barEi"),
    ];
    for engine in ["bpf", "ptrace"] {
        assert_eq!(
            hits(&probe(engine, &specs, names_cpp())),
            [CALLS; 4],
            "{engine}"
        );
    }
}

#[test]
fn rust_names_are_found_in_both_manglings() {
    for mangling in ["legacy", "v0"] {
        let program = names_rust(mangling);
        let spec = format!("uprobe:{}:\"names::shapes::area\"", program.display());
        assert_eq!(
            hits(&probe("bpf", &[spec], &program)),
            [CALLS],
            "{mangling}"
        );
    }
}

#[test]
fn an_unknown_cpp_name_suggests_the_demangled_ones() {
    let out = Command::new(TRACEKIT)
        .args([
            "probe",
            &format!("uprobe:{}:\"tk::Foo::baz\"", names_cpp().display()),
        ])
        .args(["--", "true"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("did you mean: tk::Foo::bar(int)"), "{text}");
}

#[test]
fn a_pattern_becomes_one_probe_per_function_with_exact_counts() {
    let spec = format!("uprobe:{}:\"tk::*\"", names_cpp().display());
    for engine in ["bpf", "ptrace"] {
        let report = probe(engine, std::slice::from_ref(&spec), names_cpp());
        let specs: Vec<&str> = report["probes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["spec"].as_str().unwrap())
            .collect();
        let p = names_cpp().display().to_string();
        assert_eq!(
            specs,
            [
                format!("uprobe:{p}:\"long tk::twice<long>(long)\""),
                format!("uprobe:{p}:\"tk::Adder::operator()(int) const\""),
                format!("uprobe:{p}:\"tk::Foo::bar(int)\""),
                format!("uprobe:{p}:\"tk::Foo::operator[](int)\""),
            ],
            "{engine}"
        );
        assert_eq!(hits(&report), [CALLS; 4], "{engine}");
    }
}

#[test]
fn patterns_that_match_nothing_or_too_much_are_clear_errors() {
    let run = |args: &[&str]| {
        let out = Command::new(TRACEKIT)
            .arg("probe")
            .args(args)
            .args(["--", "true"])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, text) = run(&["uprobe:libc.so.6:*", "--max-probes", "5"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("more than 5") && text.contains("--max-probes"),
        "{text}"
    );
    let (code, text) = run(&["uprobe:libc.so.6:tk_no_such_*"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("matches no function"), "{text}");
    let (code, text) = run(&["uprobe:libc.so.6:[a"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("bad pattern"), "{text}");
    let (code, text) = run(&["uprobe:libc.so.6:getpp*+4"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("an offset (+4) cannot follow a pattern"),
        "{text}"
    );
}

#[test]
fn a_name_that_holds_pattern_characters_is_found_as_written() {
    // `[` starts a class in a pattern; a name that exists as written is that name.
    let p = names_cpp().display().to_string();
    for name in [
        "tk::Foo::operator[](int)",
        "tk::Foo::operator[]",
        "(anonymous namespace)::hidden",
        "tk::Adder::operator()",
        "main::{lambda(int)#1}::operator()",
    ] {
        let spec = format!("uprobe:{p}:\"{name}\"");
        assert_eq!(hits(&probe("bpf", &[spec], names_cpp())), [CALLS], "{name}");
    }
}

#[test]
fn list_shows_what_would_be_probed() {
    let out = Command::new(TRACEKIT)
        .args(["probe", "--json", "--list"])
        .arg(format!("{}:tk_asm_u*", names_c().display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let f = &v["functions"];
    assert_eq!(f.as_array().unwrap().len(), 1, "{v}");
    assert_eq!(f[0]["name"], "tk_asm_untyped");
    // `mov $42, %eax; ret`: 6 bytes up to the next symbol.
    assert_eq!(f[0]["size"], 6);
    assert_eq!(f[0]["first_instruction"], "mov eax,2Ah");
    assert_eq!(f[0]["bpf"], true);
    assert_eq!(f[0]["ptrace"], "out of line");
    let out = Command::new(TRACEKIT)
        .args(["probe", "--json", "--list"])
        .arg(format!("{}:tk_asm_evex", names_c().display()))
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["functions"][0]["bpf"], false, "{v}");
}

#[test]
fn the_bpf_engine_refuses_an_avx512_first_instruction_and_auto_falls_back() {
    let spec = format!("uprobe:{}:tk_asm_evex", names_c().display());
    let out = Command::new(TRACEKIT)
        .args(["probe", "--engine", "bpf", &spec, "--"])
        .arg(names_c())
        .arg("0")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("is on an AVX-512 instruction (vpbroadcastb ymm17,esi)"),
        "{text}"
    );
    // auto: the ptrace engine takes it (the function is never called: 0 hits).
    let report = probe_calls("auto", &[spec], names_c(), 0);
    assert_eq!(report["engine"], "ptrace");
    assert_eq!(hits(&report), [0]);
}

#[test]
fn both_engines_count_calls_made_before_main() {
    // A constructor calls tk_ctor_target once before main; main calls it CALLS times. The
    // breakpoint engine places its probes at the loader's first consistent state, before any
    // constructor runs, so it sees that call as the kernel's uprobes do.
    let spec = format!("uprobe:{}:tk_ctor_target", names_c().display());
    for engine in ["bpf", "ptrace"] {
        let got = hits(&probe(engine, std::slice::from_ref(&spec), names_c()));
        assert_eq!(got, [CALLS + 1], "{engine}");
    }
}

#[test]
fn both_engines_agree_on_malloc_in_ls() {
    let count = |engine: &str| {
        let out = Command::new(TRACEKIT)
            .args([
                "probe",
                "--engine",
                engine,
                "--json",
                "uprobe:libc.so.6:malloc",
                "--",
            ])
            .args(["ls", "/usr/bin"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{text}");
        let report: Value = serde_json::from_str(&text[text.find('{').unwrap()..]).unwrap();
        hits(&report)[0]
    };
    let (bpf, ptrace) = (count("bpf"), count("ptrace"));
    assert!(bpf > 100, "{bpf}");
    assert_eq!(ptrace, bpf);
}
