//! Targets of tracekit-probe: probe specs, ELF files (symbols, USDT notes, DWARF), USDT
//! argument formats.

use crate::{Target, files, scratch, text};
use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;
use tracekit_probe::symbols::{self, Lookup};
use tracekit_probe::{ProbeSpec, dwarf, usdt};

const ELF_TOKENS: &[&[u8]] = &[
    b"\x7fELF",
    b".symtab",
    b".dynsym",
    b".note.stapsdt",
    b"stapsdt",
    b".debug_info",
    b".gnu_debuglink",
];

/// The targets of this crate.
pub fn targets() -> Vec<Target> {
    vec![
        Target {
            name: "probe-spec",
            about: "ProbeSpec::parse: uprobe:/uretprobe:/kprobe:/usdt: specs and the short form",
            seeds: spec_seeds,
            dictionary: &[
                b"uprobe:",
                b"uretprobe:",
                b"u:",
                b"ur:",
                b"kprobe:",
                b"usdt:",
                b":",
                b"\"",
                b"::",
                b"+0x",
                b"cpp:",
                b"rust:",
            ],
            max_len: 512,
            limit: Duration::from_millis(200),
            run: probe_spec,
        },
        Target {
            name: "elf-symbols",
            about: "symbols::list: the functions of an ELF file (symbol tables, IFUNCs, code bytes)",
            seeds: elf_seeds,
            dictionary: ELF_TOKENS,
            max_len: 64 << 10,
            limit: Duration::from_secs(1),
            run: |input| drop(symbols::list(&elf_file(input), &Lookup::default())),
        },
        Target {
            name: "usdt-notes",
            about: "usdt::list_report: an ELF file's USDT notes (.note.stapsdt) and their arguments",
            seeds: elf_seeds,
            dictionary: ELF_TOKENS,
            max_len: 64 << 10,
            limit: Duration::from_secs(1),
            run: usdt_notes,
        },
        Target {
            name: "dwarf",
            about: "dwarf::parameters: function parameters from an ELF file's DWARF (gimli)",
            seeds: elf_seeds,
            dictionary: ELF_TOKENS,
            max_len: 64 << 10,
            limit: Duration::from_secs(1),
            run: dwarf_parameters,
        },
        Target {
            name: "usdt-args",
            about: "usdt::parse_args: a USDT note's argument format",
            seeds: || {
                [
                    "-4@%edi 8@-16(%rbp) 8@$5",
                    "8@tk_mem_arg(%rip) -2@8(%rax,%rbx,4)",
                    "1@%al -8@%r12 4@$-7",
                ]
                .iter()
                .map(|s| s.as_bytes().to_vec())
                .collect()
            },
            dictionary: &[b"@", b"%", b"$", b"(", b")", b",", b"(%rip)", b"-", b" "],
            max_len: 512,
            limit: Duration::from_millis(200),
            run: |input| drop(usdt::parse_args(&text(input), &|_| Some(0x1000))),
        },
    ]
}

fn spec_seeds() -> Vec<Vec<u8>> {
    [
        "uprobe:/bin/bash:readline",
        "uretprobe:libc.so.6:malloc+0x10",
        "u:bash:main+4",
        "uprobe:./target:0x1139",
        r#"uprobe:./app:cpp:"ns::Foo::bar(int)""#,
        r#"/usr/lib/x.so:"a::b""#,
        "kprobe:do_sys_openat2",
        "usdt:./app:tk:step",
        "usdt:/a:b:p:n",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

fn probe_spec(input: &[u8]) {
    if let Ok(specs) = ProbeSpec::parse(&text(input)) {
        for spec in &specs {
            let _ = spec.symbol();
            let _ = spec.for_symbol("f", "f");
        }
    }
}

/// The committed seed program (`corpus/elf/seed.c`).
fn elf_seeds() -> Vec<Vec<u8>> {
    files("crates/tracekit-fuzz/corpus/elf", "seed")
}

/// The input as an executable file (the symbol lookup wants one) under an absolute path.
fn elf_file(input: &[u8]) -> String {
    let path = scratch("elf", input);
    let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755));
    path.display().to_string()
}

fn usdt_notes(input: &[u8]) {
    let path = elf_file(input);
    let _ = usdt::list_report(&path, &Lookup::default());
    let _ = usdt::list_report(&format!("usdt:{path}:fz:*"), &Lookup::default());
}

/// The functions' addresses come from the damaged file itself, plus the seed's own.
fn dwarf_parameters(input: &[u8]) {
    let path = PathBuf::from(elf_file(input));
    let mut addresses: HashSet<u64> = [0x1139, 0x1150].into();
    if let Ok((_, _, listings)) = symbols::list(&path.display().to_string(), &Lookup::default()) {
        addresses.extend(listings.iter().map(|l| l.vaddr));
    }
    let _ = dwarf::parameters(&path, &addresses);
}
