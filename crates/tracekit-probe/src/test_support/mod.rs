//! The C test programs of `testdata/`, compiled with gcc on first use (once per process), for
//! this crate's tests and the CLI's. Only with the `test-support` feature.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

pub mod loongarch;
pub mod qemu;

/// Compiles `testdata/<source>` with `gcc -O1 -g -o <output> <source> <flags>` into a
/// per-process temporary folder, once per output name, and returns the output's path.
pub fn compile(source: &str, output: &str, flags: &[&str]) -> PathBuf {
    compile_with("gcc", &["-O1", "-g"], source, output, flags)
}

/// Compiles `testdata/<source>` into a static LoongArch64 program (no libc) with clang-19 and
/// lld-19, for the LoongArch tests under `qemu-loongarch64-static`.
pub fn compile_loongarch(source: &str, output: &str) -> PathBuf {
    // QEMU 7.2 has no LSX; clang-19 would use its vector registers for struct copies.
    let flags = [
        "--target=loongarch64-linux-gnu",
        "-nostdlib",
        "-static",
        "-fuse-ld=lld",
        "-ffreestanding",
        "-fno-stack-protector",
        "-O1",
        "-g",
        "-mno-lsx",
    ];
    compile_with("clang-19", &flags, source, output, &[])
}

fn compile_with(
    compiler: &str,
    first: &[&str],
    source: &str,
    output: &str,
    flags: &[&str],
) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let mut built = BUILT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    built
        .entry(output.to_owned())
        .or_insert_with(|| {
            let dir = std::env::temp_dir().join(format!("tracekit-testdata-{}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("create the test folder");
            let out = dir.join(output);
            let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata").join(source);
            let status = Command::new(compiler)
                .args(first)
                .arg("-o")
                .arg(&out)
                .arg(&src)
                .args(flags)
                .status()
                .unwrap_or_else(|e| panic!("{compiler} must be installed to build the probe test programs (cargo xtask test installs it): {e}"));
            assert!(status.success(), "{compiler} failed to build {}", src.display());
            out
        })
        .clone()
}

/// `testdata/target.c`, the program every probe test runs (see its header for its options).
pub fn target() -> PathBuf {
    compile("target.c", "probe-target", &["-lpthread"])
}
