//! The outside tools the test suite and CI run, the Debian package of each, and installing the
//! missing ones. The tests fail (never skip) without them; this is what makes one command enough.

use crate::cmd;
use std::path::Path;

/// How to tell that a tool is there.
enum Probe {
    /// A program on PATH.
    Command(&'static str),
    /// A file a package installs (headers have no program to look for).
    File(&'static str),
}

/// One tool: how to find it, its Debian package, and what needs it.
pub struct Tool {
    probe: Probe,
    package: &'static str,
    why: &'static str,
}

impl Tool {
    fn present(&self) -> bool {
        match self.probe {
            Probe::Command(name) => cmd::on_path(name),
            Probe::File(path) => Path::new(path).exists(),
        }
    }

    fn name(&self) -> &'static str {
        match self.probe {
            Probe::Command(name) | Probe::File(name) => name,
        }
    }
}

const fn command(name: &'static str, package: &'static str, why: &'static str) -> Tool {
    Tool {
        probe: Probe::Command(name),
        package,
        why,
    }
}

const fn file(path: &'static str, package: &'static str, why: &'static str) -> Tool {
    Tool {
        probe: Probe::File(path),
        package,
        why,
    }
}

/// What `cargo test --workspace --release` runs besides tracekit.
pub const TEST: &[Tool] = &[
    command(
        "gcc",
        "gcc",
        "builds the C programs that probe and summary tests trace",
    ),
    command(
        "g++",
        "g++",
        "builds the C++ program whose demangled names the probe tests look up",
    ),
    file(
        "/usr/include/stdio.h",
        "libc6-dev",
        "C headers and libc for those programs",
    ),
    file(
        "/usr/include/x86_64-linux-gnu/sys/sdt.h",
        "systemtap-sdt-dev",
        "<sys/sdt.h>: the USDT probes of the program the usdt probe tests build",
    ),
    command(
        "nm",
        "binutils",
        "the probe tests compare symbol addresses with nm",
    ),
    command(
        "clang-19",
        "clang-19",
        "builds the LoongArch64 test programs",
    ),
    command("ld.lld-19", "lld-19", "links the LoongArch64 test programs"),
    command(
        "llvm-mc-19",
        "llvm-19",
        "the LoongArch64 decoder is checked against LLVM's disassembler",
    ),
    command(
        "qemu-loongarch64-static",
        "qemu-user-static",
        "runs the LoongArch64 programs the probe engine is tested on",
    ),
    file(
        "/usr/src/linux-source-6.12.tar.xz",
        "linux-source-6.12",
        "the kernel's BPF selftest programs, the corpus `prog` is tested on",
    ),
    command(
        "bpftool",
        "bpftool",
        "the peer the corpus results are compared with, and vmlinux.h",
    ),
    command("xz", "xz-utils", "unpacks the kernel source tarball"),
    command(
        "ip",
        "iproute2",
        "the live-frames test's network namespace, veth pair and receiving XDP program",
    ),
    command(
        "python3",
        "python3",
        "generates bpf_helper_defs.h with the kernel tree's bpf_doc.py",
    ),
    command(
        "tmux",
        "tmux",
        "the `trace top` test drives the live view in a terminal it can read back",
    ),
    command(
        "as",
        "binutils",
        "assembles the 32-bit (ia32) program the summary tests trace",
    ),
    command(
        "prometheus",
        "prometheus",
        "the exporter test is scraped by a real Prometheus and queries its API",
    ),
    command(
        "promtool",
        "prometheus",
        "the exporter test checks a scrape with `promtool check metrics`",
    ),
];

/// What CI needs on top of [`TEST`]: rebuilding the BPF objects and the opcode table.
pub const CI: &[Tool] = &[
    file(
        "/usr/include/bpf/bpf_helpers.h",
        "libbpf-dev",
        "bpf/build.sh compiles the BPF programs against libbpf's headers",
    ),
    command(
        "python3",
        "python3",
        "regenerates the LoongArch64 opcode table",
    ),
    command(
        "git",
        "git",
        "compares regenerated files with the committed ones",
    ),
    command(
        "as",
        "binutils",
        "assembles the kill-safety SIGTRAP handler to compare with its committed bytes",
    ),
];

/// Installs the missing tools of every list with apt-get, saying what and why. Without root or
/// apt-get, the error names the packages to install.
pub fn ensure(lists: &[&[Tool]]) -> Result<(), String> {
    let missing: Vec<&Tool> = lists
        .iter()
        .flat_map(|l| l.iter())
        .filter(|t| !t.present())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut packages: Vec<&str> = Vec::new();
    for tool in &missing {
        if !packages.contains(&tool.package) {
            packages.push(tool.package);
        }
    }
    let list = packages.join(" ");
    if !is_root() || !cmd::on_path("apt-get") {
        return Err(format!(
            "the tests need packages that are not installed: {list}\n{}\ninstall them as root (apt-get install {list}) and run this again",
            reasons(&missing)
        ));
    }
    eprintln!(
        "xtask: installing what the tests need:\n{}",
        reasons(&missing)
    );
    apt(&["update", "-q"])?;
    let mut install = vec!["install", "-y", "-q", "--no-install-recommends"];
    install.extend(&packages);
    apt(&install)?;
    let still: Vec<&str> = missing
        .iter()
        .filter(|t| !t.present())
        .map(|t| t.name())
        .collect();
    if still.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "apt-get installed {list}, but these are still missing: {}",
            still.join(", ")
        ))
    }
}

/// `cargo xtask tools`: every tool, its package, whether it is there.
pub fn list() -> Result<(), String> {
    use std::io::Write;
    let mut text = String::new();
    for (list, title) in [(TEST, "tests"), (CI, "CI")] {
        text.push_str(&format!("{title}:\n"));
        for tool in list {
            let state = if tool.present() { "ok" } else { "MISSING" };
            text.push_str(&format!(
                "  {:<8} {:<40} {:<18} {}\n",
                state,
                tool.name(),
                tool.package,
                tool.why
            ));
        }
    }
    // A closed pipe (`| head`) is not an error worth a message.
    let _ = std::io::stdout().write_all(text.as_bytes());
    Ok(())
}

fn reasons(tools: &[&Tool]) -> String {
    tools
        .iter()
        .map(|t| format!("  {} ({}): {}", t.package, t.name(), t.why))
        .collect::<Vec<_>>()
        .join("\n")
}

fn apt(args: &[&str]) -> Result<(), String> {
    let mut apt = std::process::Command::new("apt-get");
    apt.args(args).env("DEBIAN_FRONTEND", "noninteractive");
    cmd::run(&mut apt)
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the effective uid of whoever looks at it.
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}
