//! Targets of tracekit-summary and tracekit-core: saved reports for `trace diff`, syscall
//! lists (`-e`), /proc files, sizes and CPU lists of the command line.

use crate::{Target, scratch, text};
use std::time::Duration;
use tracekit_core::report::Style;
use tracekit_core::syscalls::Arch;
use tracekit_core::{process, syscall_set, units};
use tracekit_summary::diff;

/// The targets of these crates.
pub fn targets() -> Vec<Target> {
    vec![
        Target {
            name: "summary-json",
            about: "diff::read, compare and table: saved `trace summary --json` reports",
            seeds: summary_seeds,
            dictionary: &[
                b"\"syscalls\"",
                b"\"processes\"",
                b"\"threads\"",
                b"\"cgroups\"",
                b"\"calls\"",
                b"\"hist_log2_ns\"",
                b"\"total_ns\"",
                b"null",
                b"[",
                b"]",
                b"{",
                b"}",
                b"\n",
                b"1e309",
                b"-1",
            ],
            max_len: 8 << 10,
            limit: Duration::from_millis(500),
            run: summary_json,
        },
        Target {
            name: "syscall-list",
            about: "syscall_set::select: `-e` lists (names, globs, %classes, !exclusions) for every architecture",
            seeds: || {
                [
                    "open*,read,!write",
                    "%file,%net",
                    "!%process",
                    "epoll_*,[a-c]*",
                    "?",
                ]
                .iter()
                .map(|s| s.as_bytes().to_vec())
                .collect()
            },
            dictionary: &[
                b",", b"!", b"%", b"*", b"?", b"[", b"]", b"%file", b"%memory", b"\\",
            ],
            max_len: 256,
            limit: Duration::from_millis(500),
            run: |input| {
                for arch in [Arch::X86_64, Arch::Aarch64, Arch::I386] {
                    let _ = syscall_set::select(arch, &text(input));
                }
            },
        },
        Target {
            name: "proc",
            about: "process::stat_alive, status_tgid, mounts_cgroup2: /proc/PID/stat, status, mounts",
            seeds: || {
                vec![
                b"1234 (a) b) ) S 1 1234 1234 0 -1 4194560 110 0 0 0".to_vec(),
                b"Name:\tbash\nState:\tS (sleeping)\nTgid:\t1234\nNgid:\t0\nPid:\t1235\n".to_vec(),
                b"sysfs /sys sysfs rw,nosuid 0 0\ncgroup2 /sys/fs/cgroup cgroup2 rw,nosuid 0 0\n".to_vec(),
            ]
            },
            dictionary: &[
                b") ", b"(", b"Tgid:", b"\t", b"\n", b"cgroup2", b" ", b"Z", b"X",
            ],
            max_len: 4 << 10,
            limit: Duration::from_millis(200),
            run: |input| {
                let s = text(input);
                let _ = process::stat_alive(&s);
                let _ = process::status_tgid(&s);
                let _ = process::mounts_cgroup2(&s);
            },
        },
        Target {
            name: "cli-size",
            about: "units::parse_size, parse_cpu_list and parse_address: `-b 64M`, `--cpus 0-3,6`, `--gpa 0x100000000`",
            seeds: || {
                [
                    "64M",
                    "2GiB",
                    "4096",
                    " 1t ",
                    "0-3,6",
                    "0,1",
                    "7",
                    "0x100000000",
                    "4G",
                ]
                .iter()
                .map(|s| s.as_bytes().to_vec())
                .collect()
            },
            dictionary: &[
                b"K", b"M", b"G", b"T", b"iB", b"B", b"-", b",", b"0x", b"0X",
            ],
            max_len: 64,
            limit: Duration::from_millis(200),
            run: |input| {
                let s = text(input);
                let _ = units::parse_size(&s);
                let _ = units::parse_cpu_list(&s);
                let _ = units::parse_address(&s);
            },
        },
    ]
}

fn summary_seeds() -> Vec<Vec<u8>> {
    let one = r#"{"syscalls":[{"name":"read","calls":10,"errors":1,"total_ns":5000,"hist_log2_ns":[0,0,3,7]},{"name":"write","calls":3,"errors":0,"total_ns":900}]}"#;
    let by_process = r#"{"processes":[{"pid":1,"comm":"a","syscalls":[{"name":"openat","calls":2,"errors":2}]}]}"#;
    let intervals = format!("{one}\n{one}\n");
    [one.to_owned(), by_process.to_owned(), intervals]
        .into_iter()
        .map(String::into_bytes)
        .collect()
}

fn summary_json(input: &[u8]) {
    if let Ok(totals) = diff::read(&scratch("summary.json", input)) {
        let rows = diff::compare(&totals, &totals);
        let _ = diff::table(&rows, Style::default());
    }
}
