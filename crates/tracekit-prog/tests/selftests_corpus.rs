//! The kernel's own BPF selftest programs as a corpus (issue: `prog` on real programs).
//!
//! Set-up (once per kernel and source package, cached in /var/cache/tracekit, never in the
//! repository): unpack `tools/testing/selftests/bpf/progs` and the headers they need from
//! Debian's linux-source-6.12 tarball, generate `bpf_helper_defs.h` with the tree's own
//! `bpf_doc.py` and `vmlinux.h` from the running kernel with bpftool, and compile every
//! `progs/*.c` with clang-19 and the selftests' flags.
//!
//! Then, per object: tracekit lists it; `bpftool prog loadall` loads it (all or nothing) and,
//! where it does, tracekit must load every program of it, and both run each test-runnable
//! program on the same 64 zero bytes with the same result. The verifier tests' own
//! expectations (`__retval(N)` in verifier_*.c) are checked against tracekit's runs.
//! The counts are printed (`cargo test -p tracekit-prog --test selftests_corpus -- --nocapture`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use tracekit_prog::{BpfObject, Error, ProgKind, RunOptions};

const TARBALL: &str = "/usr/src/linux-source-6.12.tar.xz";
const TREE: &str = "linux-source-6.12";
const SELFTESTS: &str = "linux-source-6.12/tools/testing/selftests/bpf";

/// The input every run gets, as the selftests' test_loader gives it: 64 zero bytes.
const TEST_DATA_LEN: usize = 64;

/// `__retval(POINTER_VALUE)`: any value passes (bpf_misc.h's 0xcafe4all).
const POINTER_VALUE: i64 = 0xcafe4a;

/// Maps the selftests' harness fills before the verifier tests run (prog_tests/verifier.c,
/// `init_test_val_map`): key 0 holds a `struct test_val` with index 28 and foo[6] = 0xabcdef12.
const PREFILLED: &[(&str, &[&str])] = &[
    ("verifier_array_access", &["map_array_ro", "map_array_wo"]),
    ("verifier_value_ptr_arith", &["map_array_48b"]),
];

/// Programs tracekit cannot load yet, by the part of the reason that says why (each is a
/// missing loader feature named in the README); any other refusal fails the test.
const KNOWN_GAPS: &[(&str, &str)] = &[
    (
        "unexpected BTF type id",
        "arena maps: aya-obj 0.3 cannot parse a map_extra given as __ulong",
    ),
    ("unknown#195896080", CORE),
    ("(type 33)", "arena maps (BPF_MAP_TYPE_ARENA)"),
];

const CORE: &str = "CO-RE relocations against the selftests' own target BTF (`__btf_path`), \
     which tracekit cannot be given yet: against the kernel's they fail, as in libbpf";

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?} (cargo xtask test installs it): {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The cache folder for this tarball and this kernel, built if it is not there yet.
fn corpus() -> PathBuf {
    let size = std::fs::metadata(TARBALL)
        .unwrap_or_else(|e| {
            panic!("{TARBALL}: {e} (apt-get install linux-source-6.12; cargo xtask test does)")
        })
        .len();
    let release = run_ok(Command::new("uname").arg("-r"));
    let dir = PathBuf::from(format!(
        "/var/cache/tracekit/bpf-selftests-{size}-{}",
        release.trim()
    ));
    let stamp = dir.join("built");
    if !stamp.exists() {
        build_corpus(&dir);
        std::fs::write(&stamp, "").unwrap();
    }
    dir
}

fn build_corpus(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir.join("include/bpf")).unwrap();
    std::fs::create_dir_all(dir.join("obj")).unwrap();
    run_ok(
        Command::new("tar")
            .current_dir(dir)
            .args(["-xJf", TARBALL, "--wildcards"])
            .args([
                &format!("{SELFTESTS}/progs/*"),
                &format!("{SELFTESTS}/*.h"),
                &format!("{TREE}/tools/lib/bpf/*.h"),
                &format!("{TREE}/tools/include/*"),
                &format!("{TREE}/tools/arch/x86/include/*"),
                &format!("{TREE}/scripts/bpf_doc.py"),
                &format!("{TREE}/include/uapi/linux/bpf.h"),
            ]),
    );
    for header in std::fs::read_dir(dir.join(TREE).join("tools/lib/bpf")).unwrap() {
        let header = header.unwrap().path();
        std::fs::copy(
            &header,
            dir.join("include/bpf").join(header.file_name().unwrap()),
        )
        .unwrap();
    }
    let defs = run_ok(Command::new("python3").current_dir(dir).args([
        &format!("{TREE}/scripts/bpf_doc.py"),
        "--header",
        "--file",
        &format!("{TREE}/include/uapi/linux/bpf.h"),
    ]));
    std::fs::write(dir.join("include/bpf/bpf_helper_defs.h"), defs).unwrap();
    let vmlinux = run_ok(Command::new("bpftool").args([
        "btf",
        "dump",
        "file",
        "/sys/kernel/btf/vmlinux",
        "format",
        "c",
    ]));
    std::fs::write(dir.join("include/vmlinux.h"), vmlinux).unwrap();
    compile_all(dir);
}

/// Compiles every progs/*.c with the selftests' flags (their Makefile's BPF_CFLAGS and
/// CLANG_BPF_BUILD_RULE), two at a time; a source that does not compile is left out and
/// listed in `obj/not-compiled.txt`.
fn compile_all(dir: &Path) {
    let mut sources: Vec<PathBuf> = std::fs::read_dir(dir.join(SELFTESTS).join("progs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "c"))
        .collect();
    sources.sort();
    let next = AtomicUsize::new(0);
    let failed = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                while let Some(src) = sources.get(next.fetch_add(1, Ordering::Relaxed)) {
                    if !compile(dir, src) {
                        failed
                            .lock()
                            .unwrap()
                            .push(src.file_name().unwrap().to_string_lossy().into_owned());
                    }
                }
            });
        }
    });
    let mut failed = failed.into_inner().unwrap();
    failed.sort();
    std::fs::write(dir.join("obj/not-compiled.txt"), failed.join("\n")).unwrap();
}

fn compile(dir: &Path, src: &Path) -> bool {
    let stem = src.file_stem().unwrap().to_string_lossy();
    let out = dir.join("obj").join(format!("{stem}.bpf.o"));
    let extra: &[&str] = match stem.as_ref() {
        "test_l4lb_noinline" | "test_xdp_noinline" => &["-fno-inline"],
        _ => &[],
    };
    Command::new("clang-19")
        .current_dir(dir)
        .args([
            "-g",
            "-O2",
            "--target=bpf",
            "-mcpu=v3",
            "-c",
            "-D__TARGET_ARCH_x86",
            "-DENABLE_ATOMICS_TESTS",
        ])
        .args([
            "-Iinclude",
            &format!("-I{SELFTESTS}"),
            &format!("-I{TREE}/tools/include/uapi"),
        ])
        .args([
            "-Wno-compare-distinct-pointer-types",
            "-idirafter",
            "/usr/lib/llvm-19/lib/clang/19/include",
        ])
        .args([
            "-idirafter",
            "/usr/include/x86_64-linux-gnu",
            "-idirafter",
            "/usr/include",
        ])
        .args(extra)
        .arg(src)
        .arg("-o")
        .arg(&out)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn objects(dir: &Path) -> Vec<PathBuf> {
    let mut objs: Vec<PathBuf> = std::fs::read_dir(dir.join("obj"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".bpf.o"))
        .collect();
    objs.sort();
    objs
}

/// bpffs, where bpftool pins what it loads.
fn bpffs() -> PathBuf {
    let mounted = std::fs::read_to_string("/proc/mounts")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(1) == Some("/sys/fs/bpf") && l.contains(" bpf "));
    if !mounted {
        run_ok(Command::new("mount").args(["-t", "bpf", "bpf", "/sys/fs/bpf"]));
    }
    let dir = PathBuf::from(format!(
        "/sys/fs/bpf/tracekit-corpus-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn bpffs_entries() -> std::collections::BTreeSet<std::ffi::OsString> {
    std::fs::read_dir("/sys/fs/bpf")
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default()
}

/// What bpftool did with one object: `None` when `loadall` refused it, else each program's
/// return value on the test input (`None` for programs it did not run).
///
/// tracekit loads each program with fresh maps; bpftool's programs share theirs. Where the
/// object fills prog arrays at load (`.rel.maps`), the tail-called programs count in global
/// variables, so each program then gets an object loaded for it alone.
fn bpftool(
    obj: &Path,
    pins: &Path,
    runnable: &[(String, bool)],
    input: &Path,
) -> Option<BTreeMap<String, Option<u32>>> {
    if runnable.len() < 2 || !has_section(obj, ".rel.maps") {
        return bpftool_runs(obj, pins, runnable, input);
    }
    let mut results = BTreeMap::new();
    for program in runnable {
        results.extend(bpftool_runs(
            obj,
            pins,
            std::slice::from_ref(program),
            input,
        )?);
    }
    Some(results)
}

fn has_section(obj: &Path, name: &str) -> bool {
    use object::{Object, ObjectSection};
    let bytes = std::fs::read(obj).unwrap_or_default();
    object::File::parse(&*bytes).is_ok_and(|f| f.sections().any(|s| s.name() == Ok(name)))
}

/// `bpftool prog loadall`, then `bpftool prog run` of each of `runnable`.
fn bpftool_runs(
    obj: &Path,
    pins: &Path,
    runnable: &[(String, bool)],
    input: &Path,
) -> Option<BTreeMap<String, Option<u32>>> {
    // The maps are pinned too where bpftool can: unpinned, they lose their user references
    // when bpftool exits, and the kernel then empties the prog arrays that libbpf filled.
    // (bpffs refuses names with a dot.)
    let map_pins = PathBuf::from(format!("{}-maps", pins.display()));
    let unpin = || {
        let _ = std::fs::remove_dir_all(pins);
        let _ = std::fs::remove_dir_all(&map_pins);
    };
    let loadall = |pin_maps: bool| {
        let mut cmd = Command::new("bpftool");
        cmd.args(["prog", "loadall"]).arg(obj).arg(pins);
        if pin_maps {
            cmd.arg("pinmaps").arg(&map_pins);
        }
        let ok = cmd.output().is_ok_and(|o| o.status.success());
        if !ok {
            unpin();
        }
        ok
    };
    if !loadall(true) && !loadall(false) {
        return None;
    }
    let mut results = BTreeMap::new();
    for (name, packet) in runnable {
        let pin = pins.join(name);
        let mut cmd = Command::new("bpftool");
        cmd.arg("prog").arg("run").arg("pinned").arg(&pin);
        if *packet {
            cmd.arg("data_in").arg(input).args(["data_size_out", "256"]);
        }
        let out = cmd.arg("repeat").arg("1").output().ok();
        let retval = out.filter(|o| o.status.success()).and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            text.split("Return value: ")
                .nth(1)?
                .split(',')
                .next()?
                .trim()
                .parse()
                .ok()
        });
        results.insert(name.clone(), retval);
    }
    unpin();
    Some(results)
}

/// `__retval(N)` of each program that the verifier tests expect to load and run, from the
/// annotations between its `SEC(...)` line and its name.
fn expected_retvals(source: &str) -> BTreeMap<String, Option<i64>> {
    let mut out = BTreeMap::new();
    let mut annotations = String::new();
    let mut in_test = false;
    for line in source.lines() {
        let line = line.trim();
        if line.starts_with("SEC(") {
            annotations.clear();
            in_test = true;
            continue;
        }
        if !in_test {
            continue;
        }
        if let Some(name) = function_name(line) {
            in_test = false;
            let wanted = annotations.contains("__retval(")
                && !annotations.contains("__failure ")
                && !annotations.trim_end().ends_with("__failure")
                && !annotations.contains("__failure\n")
                && !annotations.contains("__flag(")
                && !annotations.contains("__auxiliary");
            if wanted {
                out.insert(name, parse_retval(&annotations));
            }
            continue;
        }
        annotations.push_str(line);
        annotations.push('\n');
    }
    out
}

/// The function defined on a line such as `__naked void add_sub_mul(void)` or
/// `int prog(struct __sk_buff *skb)`.
fn function_name(line: &str) -> Option<String> {
    if line.starts_with("__") && !line.contains(" void ") && !line.contains(" int ") {
        return None;
    }
    let head = line.split('(').next()?;
    let words: Vec<&str> = head.split_whitespace().collect();
    if words.len() < 2 {
        return None;
    }
    let name = words.last()?.trim_start_matches('*');
    name.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
        .then(|| name.to_owned())
}

/// The value inside `__retval(...)`: a number or one of the selftests' named constants.
fn parse_retval(annotations: &str) -> Option<i64> {
    let text = annotations.split("__retval(").nth(1)?;
    let text = text[..text.find(')')?].trim();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest.trim()),
        None => (false, text),
    };
    let value = match digits {
        // The selftests' loader accepts any return value for it (a pointer leaked).
        "POINTER_VALUE" => POINTER_VALUE,
        "TEST_DATA_LEN" => TEST_DATA_LEN as i64,
        "INT_MIN" => i64::from(i32::MIN),
        "INT_MAX" => i64::from(i32::MAX),
        hex if hex.starts_with("0x") => i64::from_str_radix(
            hex.trim_start_matches("0x")
                .trim_end_matches(['u', 'l', 'L', 'U']),
            16,
        )
        .ok()?,
        dec => dec.trim_end_matches(['u', 'l', 'L', 'U']).parse().ok()?,
    };
    Some(if negative { -value } else { value })
}

#[derive(Default)]
struct Counts {
    objects: usize,
    listed: usize,
    programs: usize,
    bpftool_objects: usize,
    bpftool_programs: usize,
    tracekit_loaded: usize,
    both_ran: usize,
    retvals_checked: usize,
    retvals_unparsed: usize,
}

#[test]
fn kernel_selftest_programs_load_and_run_as_with_bpftool() {
    let dir = corpus();
    let pins = bpffs();
    // Objects with LIBBPF_PIN_BY_NAME maps make bpftool pin them in /sys/fs/bpf: those are
    // removed at the end.
    let before = bpffs_entries();
    let input = dir.join("zero64.bin");
    std::fs::write(&input, [0u8; TEST_DATA_LEN]).unwrap();
    let mut c = Counts::default();
    let mut not_listed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut refused: Vec<String> = Vec::new();
    // Each known gap: the programs in it, and whether bpftool loads them.
    let mut gaps: BTreeMap<&str, Vec<(String, bool)>> = BTreeMap::new();
    let mut disagreements: Vec<String> = Vec::new();
    let mut wrong_retvals: Vec<String> = Vec::new();
    for path in objects(&dir) {
        c.objects += 1;
        let stem = path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .trim_end_matches(".bpf.o")
            .to_owned();
        let obj = match BpfObject::from_file(&path) {
            Ok(obj) => obj,
            Err(e) => {
                not_listed.entry(first_reason(&e)).or_default().push(stem);
                continue;
            }
        };
        c.listed += 1;
        c.programs += obj.programs().len();
        let runnable: Vec<(String, bool)> = obj
            .programs()
            .iter()
            .filter(|p| p.kind.test_run_supported())
            .map(|p| (p.name.clone(), p.kind.takes_packet()))
            .collect();
        let source =
            std::fs::read_to_string(dir.join(SELFTESTS).join("progs").join(format!("{stem}.c")))
                .unwrap_or_default();
        let expected = if stem.starts_with("verifier_") {
            expected_retvals(&source)
        } else {
            BTreeMap::new()
        };
        let by_bpftool = bpftool(&path, &pins, &runnable, &input);
        if by_bpftool.is_some() {
            c.bpftool_objects += 1;
            c.bpftool_programs += obj.programs().len();
        }
        for p in obj.programs() {
            let must_load = by_bpftool.is_some() || expected.contains_key(&p.name);
            if !must_load {
                continue;
            }
            let mut prog = match obj.load(&p.name) {
                Ok(prog) => prog,
                Err(e) => {
                    let summary = e.summary();
                    let fentry = matches!(&p.kind, ProgKind::Other(k) if k == "tracing" || k == "lsm")
                        && summary.contains("(EPERM)");
                    let gap = match KNOWN_GAPS.iter().find(|(key, _)| summary.contains(key)) {
                        Some((_, gap)) => *gap,
                        None if fentry => "fentry/lsm: EPERM on this kernel",
                        None => {
                            refused.push(format!("{stem}/{}: {summary}", p.name));
                            continue;
                        }
                    };
                    let program = (format!("{stem}/{}", p.name), by_bpftool.is_some());
                    gaps.entry(gap).or_default().push(program);
                    continue;
                }
            };
            prefill(&stem, &mut prog);
            c.tracekit_loaded += 1;
            if !p.kind.test_run_supported() {
                continue;
            }
            let data = [0u8; TEST_DATA_LEN];
            let opts = RunOptions {
                data_in: if p.kind.takes_packet() { &data } else { &[] },
                data_out_size: p.kind.takes_packet().then_some(256),
                ..Default::default()
            };
            let ours = prog.run(&opts).map(|r| r.retval).ok();
            if let Some(Some(theirs)) = by_bpftool
                .as_ref()
                .map(|r| r.get(&p.name).copied().flatten())
            {
                c.both_ran += 1;
                if ours != Some(theirs) {
                    disagreements.push(format!(
                        "{stem}/{}: tracekit {ours:?}, bpftool {theirs}",
                        p.name
                    ));
                }
            }
            match expected.get(&p.name) {
                Some(Some(want)) => {
                    c.retvals_checked += 1;
                    let matches =
                        ours.is_some_and(|r| *want == POINTER_VALUE || r as i32 == *want as i32);
                    if !matches {
                        wrong_retvals.push(format!(
                            "{stem}/{}: __retval({want}), tracekit {ours:?}",
                            p.name
                        ));
                    }
                }
                Some(None) => c.retvals_unparsed += 1,
                None => {}
            }
        }
    }
    for pinned in bpffs_entries().difference(&before) {
        let _ = std::fs::remove_file(Path::new("/sys/fs/bpf").join(pinned));
    }
    println!(
        "corpus: {} objects compiled from {TARBALL} (not compiled: {})",
        c.objects,
        std::fs::read_to_string(dir.join("obj/not-compiled.txt"))
            .unwrap_or_default()
            .lines()
            .count()
    );
    println!(
        "listed by tracekit: {} objects, {} programs",
        c.listed, c.programs
    );
    for (reason, objs) in &not_listed {
        println!(
            "  not listed ({}): {reason}: {}",
            objs.len(),
            objs.iter().take(6).cloned().collect::<Vec<_>>().join(", ")
        );
    }
    println!(
        "loaded by bpftool loadall: {} objects, {} programs",
        c.bpftool_objects, c.bpftool_programs
    );
    let gap_total: usize = gaps.values().map(Vec::len).sum();
    let bpftool_only: Vec<&str> = gaps
        .values()
        .flatten()
        .filter(|(_, by_bpftool)| *by_bpftool)
        .map(|(name, _)| name.as_str())
        .collect();
    println!(
        "loaded by tracekit: {} programs; not yet: {gap_total} ({} of them loaded by bpftool); refused otherwise: {}",
        c.tracekit_loaded,
        bpftool_only.len(),
        refused.len()
    );
    for (gap, programs) in &gaps {
        let names: Vec<&str> = programs.iter().map(|(name, _)| name.as_str()).collect();
        println!(
            "  not yet ({}): {gap}: {}",
            programs.len(),
            names.join(", ")
        );
    }
    if !bpftool_only.is_empty() {
        println!(
            "  loaded by bpftool, not by tracekit: {}",
            bpftool_only.join(", ")
        );
    }
    for r in &refused {
        println!("  refused: {r}");
    }
    println!(
        "run by both on {TEST_DATA_LEN} zero bytes: {}, disagreeing: {}",
        c.both_ran,
        disagreements.len()
    );
    println!(
        "__retval expectations checked: {}, wrong: {}, not parsed: {}",
        c.retvals_checked,
        wrong_retvals.len(),
        c.retvals_unparsed
    );
    for w in wrong_retvals.iter().take(40) {
        println!("  wrong: {w}");
    }
    assert!(
        bpftool_only.is_empty(),
        "programs bpftool loads and tracekit refuses: {}",
        bpftool_only.join(", ")
    );
    assert!(
        refused.is_empty(),
        "programs refused for a reason that is not a known gap:\n{}",
        refused.join("\n")
    );
    assert!(
        disagreements.is_empty(),
        "tracekit and bpftool disagree:\n{}",
        disagreements.join("\n")
    );
    assert!(
        wrong_retvals.is_empty(),
        "expected return values not met:\n{}",
        wrong_retvals.join("\n")
    );
}

/// Fills the maps the selftests' harness fills for this object.
fn prefill(stem: &str, prog: &mut tracekit_prog::Program) {
    let Some((_, maps)) = PREFILLED.iter().find(|(s, _)| *s == stem) else {
        return;
    };
    let mut value = [0u8; 48];
    value[0..4].copy_from_slice(&28u32.to_le_bytes());
    value[4 + 6 * 4..4 + 7 * 4].copy_from_slice(&0xabcdef12u32.to_le_bytes());
    for name in *maps {
        let map = prog
            .map_mut(name)
            .unwrap_or_else(|| panic!("{stem} has no map {name}"));
        let mut array: aya::maps::Array<_, [u8; 48]> = aya::maps::Array::try_from(map).unwrap();
        array.set(0, value, 0).unwrap();
    }
}

fn first_reason(e: &Error) -> String {
    let text = e.summary();
    let text = text.split(": ").skip(1).collect::<Vec<_>>().join(": ");
    text.chars().take(120).collect()
}

#[test]
fn retval_annotations_are_read_like_the_selftests_loader() {
    let src = r#"
SEC("socket")
__description("one")
__success __success_unpriv __retval(-1)
__naked void first(void)
{
}

SEC("tc")
__failure __msg("nope")
__naked void refused(void)
{
}

SEC("xdp")
__success __retval(POINTER_VALUE)
int named(struct xdp_md *ctx)
{
}

SEC("socket")
__success __flag(BPF_F_ANY_ALIGNMENT) __retval(1)
__naked void needs_flag(void)
{
}
"#;
    let got = expected_retvals(src);
    assert_eq!(
        got.into_iter().collect::<Vec<_>>(),
        [
            ("first".to_owned(), Some(-1)),
            ("named".to_owned(), Some(POINTER_VALUE))
        ]
    );
}
