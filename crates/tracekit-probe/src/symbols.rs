//! From a [`ProbeSpec`] to a place in a file: which binary, which ELF virtual address, which
//! file offset (what uprobes attach to), and, for a running process, which runtime address.
//!
//! Binaries are found the way a user thinks of them: a path, a bare program name on `PATH`, a
//! library name such as `libc.so.6` (in the target's `/proc/PID/maps` when a pid is known,
//! otherwise in the usual library directories). Symbols come from `.symtab` and `.dynsym`; a
//! name that is not there comes back with the closest names that are.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use object::{Object, ObjectSegment, ObjectSymbol, SymbolKind};

use crate::spec::{ProbeKind, ProbeLocation, ProbeSpec};

/// Directories searched for a library name when no process is given.
const LIBRARY_DIRS: &[&str] = &[
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
    "/usr/local/lib",
];

/// Why a probe could not be placed in a file.
#[derive(Debug, thiserror::Error)]
pub enum SymbolError {
    /// The binary named in the spec does not exist anywhere we looked.
    #[error("cannot find binary `{name}`: {hint}")]
    BinaryNotFound {
        /// The name as written.
        name: PathBuf,
        /// Where we looked and what to write instead.
        hint: String,
    },
    /// The file could not be read.
    #[error("cannot read {path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error (shown in the message, so not a `source`).
        error: std::io::Error,
    },
    /// The file is not an ELF object this tool can read.
    #[error(
        "{path} is not a usable ELF file ({reason}); point the probe at an executable or shared library"
    )]
    NotElf {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// The symbol is not in `.symtab` nor `.dynsym`.
    #[error("symbol `{symbol}` not found in {path}; {}", suggest(.suggestions, .path))]
    SymbolNotFound {
        /// The name asked for.
        symbol: String,
        /// The file searched.
        path: PathBuf,
        /// Close function names that do exist, best first.
        suggestions: Vec<String>,
    },
    /// `SYMBOL+OFF` with OFF past the end of the function.
    #[error("offset {offset:#x} is past the end of `{symbol}` ({size} bytes) in {path}")]
    OffsetOutOfRange {
        /// The symbol.
        symbol: String,
        /// The offset asked for.
        offset: u64,
        /// The symbol's size.
        size: u64,
        /// The file.
        path: PathBuf,
    },
    /// An address that no loadable segment of the file covers.
    #[error(
        "address {vaddr:#x} is not in any loaded segment of {path}; addresses are ELF virtual addresses as `nm` prints them"
    )]
    AddressNotMapped {
        /// The address.
        vaddr: u64,
        /// The file.
        path: PathBuf,
    },
    /// The probe address falls inside an instruction, where a breakpoint would corrupt it.
    #[error(
        "{vaddr:#x} is in the middle of the {len}-byte instruction at {insn:#x} ({text}) in {path}; \
         probe points must be instruction boundaries (try {insn:#x} or {next:#x})"
    )]
    MidInstruction {
        /// The address asked for.
        vaddr: u64,
        /// Start of the instruction that covers it.
        insn: u64,
        /// Length of that instruction.
        len: usize,
        /// Start of the next instruction.
        next: u64,
        /// The instruction, disassembled.
        text: String,
        /// The file.
        path: PathBuf,
    },
    /// A return probe placed inside a function: the return address is only at the top of the
    /// stack at the function's first instruction.
    #[error(
        "`{spec}`: a return probe must be at a function's first instruction ({symbol} starts at {start:#x}, not {vaddr:#x}); drop the +OFFSET"
    )]
    ReturnNotAtEntry {
        /// The spec.
        spec: String,
        /// The function.
        symbol: String,
        /// Its start.
        start: u64,
        /// The address asked for.
        vaddr: u64,
    },
    /// A return probe given as an address where no known function starts.
    #[error(
        "`{spec}`: a return probe must be at a function's start, and no function symbol starts at {vaddr:#x}; use uretprobe:BINARY:SYMBOL or a start address from `nm`"
    )]
    ReturnNotAtFunction {
        /// The spec as written.
        spec: String,
        /// The address given.
        vaddr: u64,
    },
    /// The address is not in an executable segment of the binary.
    #[error(
        "address {vaddr:#x} is not in the code of {path} (no executable segment covers it); give a function's address as `nm` or `objdump -d` shows it"
    )]
    NotCode {
        /// The address given.
        vaddr: u64,
        /// The binary.
        path: PathBuf,
    },
    /// The process does not exist (any more).
    #[error("no process {pid} (it may have exited); check the pid with `ps -p {pid}`")]
    NoProcess {
        /// The pid.
        pid: u32,
    },
    /// The binary is not mapped in the process at the probe's offset.
    #[error(
        "{path} is not mapped at file offset {offset:#x} in process {pid}; is the probe's binary the one the process runs?"
    )]
    NotMappedInProcess {
        /// The binary.
        path: PathBuf,
        /// The file offset.
        offset: u64,
        /// The process.
        pid: u32,
    },
    /// An IFUNC of a library whose selected implementation tracekit cannot learn.
    #[error(
        "`{symbol}` in {path} is an IFUNC (a resolver that picks an implementation at load time), and tracekit could not learn which implementation: {why}; probe an implementation by name instead (`nm {path}` lists them)"
    )]
    UnresolvedIfunc {
        /// The IFUNC.
        symbol: String,
        /// The library.
        path: PathBuf,
        /// Why: the library did not load, the resolver picked code outside it, ...
        why: String,
    },
    /// A C++ name without parameters that several overloads have.
    #[error(
        "`{symbol}` names {} functions in {path}: {}; give one with its parameters, in quotes",
        .candidates.len(),
        .candidates.join(", ")
    )]
    Ambiguous {
        /// The name given.
        symbol: String,
        /// The binary.
        path: PathBuf,
        /// The overloads, demangled.
        candidates: Vec<String>,
    },
    /// A glob pattern that cannot be parsed.
    #[error("bad pattern `{pattern}`: {reason}; patterns take *, ? and [...]")]
    BadPattern {
        /// The pattern.
        pattern: String,
        /// What is wrong.
        reason: String,
    },
    /// A pattern that matches no function, or more than allowed.
    #[error("{}", pattern_matches(.pattern, .path, *.count, *.max))]
    PatternMatches {
        /// The pattern.
        pattern: String,
        /// The binary.
        path: PathBuf,
        /// How many functions it matches.
        count: usize,
        /// How many probes were allowed.
        max: usize,
    },
    /// Every match of a pattern was left out.
    #[error("pattern `{pattern}` matches only functions tracekit cannot probe:\n  {}", .skipped.join("\n  "))]
    NothingProbeable {
        /// The pattern.
        pattern: String,
        /// Each match, with the reason.
        skipped: Vec<String>,
    },
    /// The SDT notes of a binary cannot be read.
    #[error("{path} has a malformed USDT note (.note.stapsdt): {reason}")]
    BadUsdtNote {
        /// The binary.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A `usdt:` spec on a binary without SDT notes.
    #[error(
        "{path} has no USDT probes (no .note.stapsdt notes); they come from <sys/sdt.h>'s macros (DTRACE_PROBE, STAP_PROBE) in the program or library"
    )]
    NoUsdtNotes {
        /// The binary.
        path: PathBuf,
    },
    /// No SDT note has the provider and name asked for.
    #[error("no USDT probe `{probe}` in {path}; {}", suggest_usdt(.suggestions, .path))]
    UsdtNotFound {
        /// `provider:name` (or the name) as asked.
        probe: String,
        /// The binary.
        path: PathBuf,
        /// Close `provider:name`s that exist, best first.
        suggestions: Vec<String>,
    },
    /// `usdt:BINARY:NAME` with a name several providers have.
    #[error(
        "USDT probe `{name}` in {path} exists under several providers: {}; write usdt:BINARY:PROVIDER:NAME",
        .candidates.join(", ")
    )]
    UsdtAmbiguous {
        /// The name given.
        name: String,
        /// The binary.
        path: PathBuf,
        /// Each `provider:name`.
        candidates: Vec<String>,
    },
    /// A kernel probe has no user binary.
    #[error("`{spec}` is a kernel probe; it has no user binary to resolve")]
    KernelProbe {
        /// The spec.
        spec: String,
    },
}

fn pattern_matches(pattern: &str, path: &Path, count: usize, max: usize) -> String {
    let path = path.display();
    if count == 0 {
        format!(
            "pattern `{pattern}` matches no function in {path}; `tracekit probe --list {path}` lists them"
        )
    } else {
        format!(
            "pattern `{pattern}` matches {count} functions in {path}, more than {max}; narrow it, or allow them with --max-probes {count}"
        )
    }
}

fn suggest_usdt(suggestions: &[String], path: &Path) -> String {
    format!(
        "did you mean: {}? (`tracekit probe --list usdt:{}` lists them all)",
        suggestions.join(", "),
        path.display()
    )
}

fn suggest(suggestions: &[String], path: &Path) -> String {
    if suggestions.is_empty() {
        format!(
            "no similar function names; list them with `nm -C {}` or `nm -D {}`",
            path.display(),
            path.display()
        )
    } else {
        format!("did you mean: {}?", suggestions.join(", "))
    }
}

/// Where the binaries of a run are looked up: the traced process (its `/proc/PID/maps`) and
/// the command about to be run (so `target:f -- ./target` finds `./target`).
#[derive(Debug, Clone, Default)]
pub struct Lookup {
    /// The traced process, if it already exists.
    pub pid: Option<u32>,
    /// The program of `-- COMMAND`, if any.
    pub command: Option<PathBuf>,
}

/// A probe placed in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedProbe {
    /// The spec this came from.
    pub spec: ProbeSpec,
    /// Canonical path of the binary (what uprobes attach to).
    pub binary: PathBuf,
    /// The symbol the probe is in (for addresses: the one containing it, if any).
    pub symbol: Option<String>,
    /// ELF virtual address of the symbol's start (the probe address when no symbol covers it).
    pub symbol_vaddr: u64,
    /// Size of the symbol in bytes (0 if unknown).
    pub symbol_size: u64,
    /// ELF virtual address of the probe point.
    pub vaddr: u64,
    /// Offset of the probe point in the file: what the kernel's uprobe API takes, and how a
    /// runtime address is found from `/proc/PID/maps`.
    pub file_offset: u64,
    /// The function's bytes from its start (the first up to 256 when the size is unknown),
    /// for engines that decode instructions.
    pub code: Vec<u8>,
    /// The file's instruction set.
    pub machine: Machine,
    /// When the symbol was an IFUNC (`strlen` in glibc): its name. The probe is then on the
    /// implementation this machine's dynamic loader selects, which `symbol` names when the
    /// file has a name for it.
    pub ifunc: Option<String>,
    /// For a USDT probe site: its probe's name, arguments and semaphore (`symbol` is then
    /// `provider:name`, `symbol_vaddr` the site).
    pub usdt: Option<crate::usdt::UsdtSite>,
}

/// The instruction set of an ELF file, as far as the engines care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Machine {
    /// x86-64: BPF uprobes (on this host) and the ptrace engine.
    X86_64,
    /// LoongArch64: the engine through a gdb remote stub (QEMU).
    LoongArch64,
    /// Anything else, by `object`'s name for it.
    Other(String),
}

impl std::fmt::Display for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Machine::X86_64 => f.write_str("x86-64"),
            Machine::LoongArch64 => f.write_str("LoongArch64"),
            Machine::Other(name) => f.write_str(name),
        }
    }
}

impl ResolvedProbe {
    /// The probe point's address in a running process that maps the binary.
    pub fn runtime_address(&self, pid: u32) -> Result<u64, SymbolError> {
        runtime_address(pid, &self.binary, self.file_offset)
    }
}

/// Resolves a user probe spec with no process context (binaries by path, `PATH` or
/// library directories).
pub fn resolve(spec: &ProbeSpec) -> Result<ResolvedProbe, SymbolError> {
    resolve_with(spec, &Lookup::default())
}

/// Resolves a user probe spec, finding bare binary names in the traced process or command first.
pub fn resolve_with(spec: &ProbeSpec, lookup: &Lookup) -> Result<ResolvedProbe, SymbolError> {
    if spec.kind == ProbeKind::Kprobe {
        return Err(SymbolError::KernelProbe {
            spec: spec.text.clone(),
        });
    }
    if spec.kind == ProbeKind::Usdt {
        // Every site of a USDT probe is a probe of its own; this is the first.
        return crate::usdt::resolve(spec, lookup, MAX_PROBES).map(|e| e.probes[0].clone());
    }
    let binary = find_binary(&spec.binary, lookup)?;
    let elf = Elf::load(&binary)?;
    place(spec, binary, &elf)
}

/// How many probes one pattern may become unless the caller allows more (`--max-probes`).
pub const MAX_PROBES: usize = 500;

/// Whether a spec's symbol is a glob pattern (`*`, `?`, `[...]`).
pub fn is_pattern(spec: &ProbeSpec) -> bool {
    spec.symbol().is_some_and(|s| s.contains(['*', '?', '[']))
}

/// Resolves a spec whose symbol may be a glob pattern into one probe per function it matches
/// (by its name in the file, without version, or demangled), in name order; aliases (one
/// address, several names) count once. A spec without a pattern gives exactly one probe.
/// More than `max` matches, none, or a malformed pattern are errors that say so.
pub fn resolve_all(
    spec: &ProbeSpec,
    lookup: &Lookup,
    max: usize,
) -> Result<Expansion, SymbolError> {
    let single = |p| Expansion {
        probes: vec![p],
        skipped: Vec::new(),
    };
    if spec.kind == ProbeKind::Usdt {
        return crate::usdt::resolve(spec, lookup, max);
    }
    if !is_pattern(spec) || spec.kind == ProbeKind::Kprobe {
        return resolve_with(spec, lookup).map(single);
    }
    let pattern_text = spec.symbol().unwrap_or_default();
    let binary = find_binary(&spec.binary, lookup)?;
    let elf = Elf::load(&binary)?;
    // A name that exists as written is that name (`operator[]`), not a pattern.
    if elf.functions.iter().any(|f| f.is_named(pattern_text)) {
        return place(spec, binary, &elf).map(single);
    }
    if let ProbeLocation::Symbol { offset, .. } = &spec.location
        && *offset != 0
    {
        return Err(SymbolError::BadPattern {
            pattern: pattern_text.into(),
            reason: format!(
                "an offset (+{offset}) cannot follow a pattern: each function's instructions differ"
            ),
        });
    }
    let pattern = glob::Pattern::new(pattern_text).map_err(|e| SymbolError::BadPattern {
        pattern: pattern_text.into(),
        reason: e.to_string(),
    })?;
    let matched = elf.matching(&pattern);
    if matched.is_empty() || matched.len() > max {
        return Err(SymbolError::PatternMatches {
            pattern: pattern_text.into(),
            path: binary,
            count: matched.len(),
            max,
        });
    }
    let mut expansion = Expansion::default();
    for f in matched {
        // An old version (`memcpy@GLIBC_2.2.5`) is told apart by it.
        let shown = if f.name.contains('@') && !f.name.contains("@@") {
            f.name.as_str()
        } else {
            f.display_name()
        };
        let concrete = spec.for_symbol(&f.name, shown);
        match place(&concrete, binary.clone(), &elf) {
            Ok(probe) => expansion.probes.push(probe),
            Err(e @ SymbolError::UnresolvedIfunc { .. }) => {
                expansion.skipped.push(format!("{}: {e}", concrete.text));
            }
            Err(e) => return Err(e),
        }
    }
    if expansion.probes.is_empty() {
        return Err(SymbolError::NothingProbeable {
            pattern: pattern_text.into(),
            skipped: expansion.skipped,
        });
    }
    Ok(expansion)
}

/// One function of a binary, as `tracekit probe --list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// The name users write and read (demangled, without version).
    pub name: String,
    /// The name in the file, when it differs (mangled, versioned).
    pub file_name: Option<String>,
    /// ELF virtual address.
    pub vaddr: u64,
    /// Size in bytes (0: unknown).
    pub size: u64,
    /// Its first bytes (up to 16), to decode the first instruction.
    pub code: Vec<u8>,
    /// Whether it is an IFUNC (probes go to the implementation the loader selects).
    pub ifunc: bool,
}

/// The functions `what` names: `BINARY`, `BINARY:PATTERN` or `BINARY:"PATTERN"` (for names
/// with `::`), one per address, by name; with the resolved path and the file's instruction set.
pub fn list(what: &str, lookup: &Lookup) -> Result<(PathBuf, Machine, Vec<Listing>), SymbolError> {
    let (binary, pattern) = match crate::spec::quoted(what) {
        Some((binary, pattern)) => (Path::new(binary), Some(pattern)),
        None => match what.split_once(':') {
            Some((binary, pattern)) => (Path::new(binary), Some(pattern)),
            None => (Path::new(what), None),
        },
    };
    let pattern =
        glob::Pattern::new(pattern.unwrap_or("*")).map_err(|e| SymbolError::BadPattern {
            pattern: pattern.unwrap_or_default().into(),
            reason: e.to_string(),
        })?;
    let path = find_binary(binary, lookup)?;
    let elf = Elf::load(&path)?;
    let listings = elf
        .matching(&pattern)
        .into_iter()
        .map(|f| Listing {
            name: f.display_name().to_owned(),
            file_name: (f.name != f.display_name()).then(|| f.name.clone()),
            vaddr: f.vaddr,
            size: f.size,
            code: elf
                .file_offset(f.vaddr)
                .map(|off| elf.bytes(off, f.size.clamp(1, 16)).to_vec())
                .unwrap_or_default(),
            ifunc: f.ifunc,
        })
        .collect();
    Ok((path, elf.machine.clone(), listings))
}

/// Every spec placed, patterns expanded (at most `max` probes each), in order; with what the
/// user should be told about the placing: which implementation an IFUNC probe went to, and
/// the matches of a pattern left out.
pub fn resolve_specs(
    specs: &[ProbeSpec],
    lookup: &Lookup,
    max: usize,
) -> Result<(Vec<ResolvedProbe>, Vec<String>), SymbolError> {
    let mut probes = Vec::new();
    let mut notes = Vec::new();
    for spec in specs {
        let expansion = resolve_all(spec, lookup, max)?;
        notes.extend(expansion.skipped.iter().map(|s| format!("left out {s}")));
        probes.extend(expansion.probes);
    }
    for p in &probes {
        let sites = probes.iter().filter(|q| q.spec.text == p.spec.text).count();
        if p.usdt.as_ref().is_some_and(|u| u.site == 0) && sites > 1 {
            notes.push(format!(
                "{}: {sites} sites (the probe is inlined or used in several places), probed and counted together",
                p.spec.text
            ));
        }
        let Some(ifunc) = &p.ifunc else { continue };
        let implementation = match &p.symbol {
            Some(name) if name != ifunc => name.clone(),
            _ => format!("the code at {:#x}", p.vaddr),
        };
        notes.push(format!(
            "{ifunc} is an IFUNC: probing {implementation}, the implementation this machine uses"
        ));
    }
    if let Some(pid) = lookup.pid
        && probes.iter().any(|p| p.ifunc.is_some())
    {
        notes.extend(crate::ifunc::tunables_differ(pid));
    }
    Ok((probes, notes))
}

/// What a spec became: its probes, and the matches of a pattern that could not be probed
/// (with the reason), which a report should mention.
#[derive(Debug, Clone, Default)]
pub struct Expansion {
    /// One per function, in name order.
    pub probes: Vec<ResolvedProbe>,
    /// `SPEC: reason` for each match left out.
    pub skipped: Vec<String>,
}

/// Places `spec` in `binary`, already read as `elf`.
fn place(spec: &ProbeSpec, binary: PathBuf, elf: &Elf) -> Result<ResolvedProbe, SymbolError> {
    let mut ifunc = None;
    let (symbol, vaddr) = match &spec.location {
        ProbeLocation::Symbol { name, offset } => {
            let sym = elf.symbol(name)?;
            if sym.ifunc {
                ifunc = Some(sym.name.to_owned());
            }
            let sym = if sym.ifunc {
                elf.ifunc_implementation(&sym)?
            } else {
                sym
            };
            if *offset > 0 && sym.size > 0 && *offset >= sym.size {
                return Err(SymbolError::OffsetOutOfRange {
                    symbol: name.clone(),
                    offset: *offset,
                    size: sym.size,
                    path: binary,
                });
            }
            (Some(sym), sym.vaddr + offset)
        }
        ProbeLocation::Usdt { .. } => {
            // Not reached (resolve_with and resolve_all send USDT specs to `usdt`); the file
            // is already found, so resolve it there by path.
            let mut by_path = spec.clone();
            by_path.binary = binary;
            return crate::usdt::resolve(&by_path, &Lookup::default(), MAX_PROBES)
                .map(|e| e.probes[0].clone());
        }
        ProbeLocation::Address(a) => {
            if !elf.is_code(*a) {
                return Err(SymbolError::NotCode {
                    vaddr: *a,
                    path: binary,
                });
            }
            let sym = elf.containing(*a);
            match sym {
                None if spec.kind == ProbeKind::Uretprobe => {
                    return Err(SymbolError::ReturnNotAtFunction {
                        spec: spec.text.clone(),
                        vaddr: *a,
                    });
                }
                Some(s) if spec.kind == ProbeKind::Uretprobe && s.vaddr != *a => {
                    return Err(SymbolError::ReturnNotAtEntry {
                        spec: spec.text.clone(),
                        symbol: s.name.to_owned(),
                        start: s.vaddr,
                        vaddr: *a,
                    });
                }
                _ => {}
            }
            (sym, *a)
        }
    };
    let file_offset = elf.file_offset(vaddr)?;
    let (symbol_vaddr, symbol_size) = symbol.map_or((vaddr, 0), |s| (s.vaddr, s.size));
    let code_len = if symbol_size > 0 { symbol_size } else { 256 };
    let start = elf.file_offset(symbol_vaddr)?;
    let code = elf.bytes(start, code_len).to_vec();
    let resolved = ResolvedProbe {
        spec: spec.clone(),
        symbol: symbol.map(|s| s.name.to_owned()),
        symbol_vaddr,
        symbol_size,
        vaddr,
        file_offset,
        code,
        machine: elf.machine.clone(),
        binary,
        ifunc,
        usdt: None,
    };
    check_boundary(&resolved)?;
    if spec.kind == ProbeKind::Uretprobe && resolved.vaddr != resolved.symbol_vaddr {
        return Err(SymbolError::ReturnNotAtEntry {
            spec: spec.text.clone(),
            symbol: resolved.symbol.clone().unwrap_or_default(),
            start: resolved.symbol_vaddr,
            vaddr: resolved.vaddr,
        });
    }
    Ok(resolved)
}

/// Refuses an x86-64 probe point inside an instruction, by decoding the function from its start.
fn check_boundary(p: &ResolvedProbe) -> Result<(), SymbolError> {
    use iced_x86::{Decoder, DecoderOptions, Formatter, GasFormatter};
    if p.machine != Machine::X86_64 || p.vaddr == p.symbol_vaddr || p.symbol_size == 0 {
        return Ok(());
    }
    let mut decoder = Decoder::with_ip(64, &p.code, p.symbol_vaddr, DecoderOptions::NONE);
    while decoder.can_decode() {
        let insn = decoder.decode();
        let (start, next) = (insn.ip(), insn.next_ip());
        if start == p.vaddr {
            return Ok(());
        }
        if start < p.vaddr && p.vaddr < next {
            let mut text = String::new();
            GasFormatter::new().format(&insn, &mut text);
            return Err(SymbolError::MidInstruction {
                vaddr: p.vaddr,
                insn: start,
                len: insn.len(),
                next,
                text,
                path: p.binary.clone(),
            });
        }
    }
    Ok(())
}

/// Finds the file a spec's BINARY names. See the module documentation for the search order.
pub fn find_binary(name: &Path, lookup: &Lookup) -> Result<PathBuf, SymbolError> {
    let canonical = |p: &Path| {
        fs::canonicalize(p).map_err(|source| SymbolError::Io {
            path: p.into(),
            error: source,
        })
    };
    if name.as_os_str().is_empty() {
        return Err(SymbolError::BinaryNotFound {
            name: name.into(),
            hint: "the spec names no binary".into(),
        });
    }
    let bare = name.components().count() == 1 && !name.to_string_lossy().contains('/');
    if !bare {
        if !name.exists() {
            return Err(SymbolError::BinaryNotFound {
                name: name.into(),
                hint: "no such file; check the path".into(),
            });
        }
        return canonical(name);
    }
    if let Some(pid) = lookup.pid
        && let Some(p) = find_in_maps(pid, name)?
    {
        return Ok(p);
    }
    if let Some(cmd) = &lookup.command
        && cmd.file_name() == Some(name.as_os_str())
    {
        let path = if cmd.components().count() > 1 {
            Some(cmd.clone())
        } else {
            which(name)
        };
        if let Some(p) = path.filter(|p| p.exists()) {
            return canonical(&p);
        }
    }
    if let Some(p) = which(name) {
        return canonical(&p);
    }
    for dir in LIBRARY_DIRS {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return canonical(&p);
        }
    }
    // `libc` for `libc.so.6`, `libz` for `libz.so.1`: the versioned file of a library name.
    let prefix = format!("{}.so", name.display());
    for dir in LIBRARY_DIRS {
        let Ok(entries) = fs::read_dir(dir) else {
            continue;
        };
        // Only ELF files: `libc.so` itself is often a linker script. Versioned names first.
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .is_some_and(|f| f.to_string_lossy().starts_with(&prefix))
                    && is_elf(p)
            })
            .collect();
        found.sort_by_key(|p| {
            (
                p.file_name().is_some_and(|f| f.len() == prefix.len()),
                p.clone(),
            )
        });
        if let Some(p) = found.first() {
            return canonical(p);
        }
    }
    let hint = if lookup.pid.is_some() {
        "not mapped by the process, not on PATH nor in the library directories; give a full path"
    } else {
        "not on PATH nor in the library directories; give a full path (or -p PID to search its libraries)"
    };
    Err(SymbolError::BinaryNotFound {
        name: name.into(),
        hint: hint.into(),
    })
}

fn is_elf(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == *b"\x7fELF"
}

fn which(name: &Path) -> Option<PathBuf> {
    tracekit_core::process::find_program(name).ok()
}

/// One line of `/proc/PID/maps` that maps a file.
struct MapLine {
    start: u64,
    end: u64,
    /// The permissions column (`r-xp`).
    perms: String,
    offset: u64,
    dev_ino: Option<(u64, u64)>,
    path: PathBuf,
}

fn read_maps(pid: u32) -> Result<Vec<MapLine>, SymbolError> {
    let text = fs::read_to_string(format!("/proc/{pid}/maps")).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => SymbolError::NoProcess { pid },
        _ => SymbolError::Io {
            path: format!("/proc/{pid}/maps").into(),
            error: e,
        },
    })?;
    let mut out = Vec::new();
    for line in text.lines() {
        let mut f = line.split_ascii_whitespace();
        let (Some(range), Some(perms), Some(off), Some(dev), Some(ino)) =
            (f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        let path: String = f.collect::<Vec<_>>().join(" ");
        if !path.starts_with('/') {
            continue;
        }
        let Some((s, e)) = range.split_once('-') else {
            continue;
        };
        let hex = |t: &str| u64::from_str_radix(t, 16).ok();
        let dev_ino = dev.split_once(':').and_then(|(ma, mi)| {
            let (ma, mi) = (hex(ma)?, hex(mi)?);
            Some((libc::makedev(ma as u32, mi as u32), ino.parse().ok()?))
        });
        if let (Some(start), Some(end), Some(offset)) = (hex(s), hex(e), hex(off)) {
            out.push(MapLine {
                start,
                end,
                perms: perms.into(),
                offset,
                dev_ino,
                path: path.into(),
            });
        }
    }
    Ok(out)
}

/// A library or executable mapped by `pid` whose file name is `name` (or starts with
/// `name.`/`name-`, so `libc` finds `libc.so.6`), seen through `/proc/PID/root`.
fn find_in_maps(pid: u32, name: &Path) -> Result<Option<PathBuf>, SymbolError> {
    let maps = read_maps(pid)?;
    let name = name.to_string_lossy();
    let file_name = |m: &MapLine| {
        m.path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let exact = maps.iter().find(|m| file_name(m) == name);
    let prefix = || {
        maps.iter().find(|m| {
            let f = file_name(m);
            f.starts_with(&format!("{name}.")) || f.starts_with(&format!("{name}-"))
        })
    };
    let Some(m) = exact.or_else(prefix) else {
        return Ok(None);
    };
    // Through the process's root, so a process in another mount namespace still works.
    let rooted = PathBuf::from(format!("/proc/{pid}/root{}", m.path.display()));
    let path = if m.path.exists() {
        m.path.clone()
    } else {
        rooted
    };
    Ok(Some(fs::canonicalize(&path).unwrap_or(path)))
}

/// The runtime address of `file_offset` of `binary` in process `pid`, from `/proc/PID/maps`.
/// Mappings are matched by device and inode, so a path seen differently still matches.
pub fn runtime_address(pid: u32, binary: &Path, file_offset: u64) -> Result<u64, SymbolError> {
    let meta = fs::metadata(binary).map_err(|source| SymbolError::Io {
        path: binary.into(),
        error: source,
    })?;
    let id = (meta.dev(), meta.ino());
    // The loader's mappings first: code is executable, data (a USDT semaphore) writable. A
    // process may also map the whole file read-only for itself (a symbolizer reading its own
    // libc does), which holds the same offset at another address.
    let rank = |m: &MapLine| match (m.perms.contains('x'), m.perms.contains('w')) {
        (true, _) => 0,
        (false, true) => 1,
        _ => 2,
    };
    read_maps(pid)?
        .iter()
        .filter(|m| m.dev_ino == Some(id) || m.path == binary)
        .filter(|m| m.offset <= file_offset && file_offset < m.offset + (m.end - m.start))
        .min_by_key(|m| rank(m))
        .map(|m| m.start + (file_offset - m.offset))
        .ok_or_else(|| SymbolError::NotMappedInProcess {
            path: binary.into(),
            offset: file_offset,
            pid,
        })
}

/// A function-like symbol of a file: a function, an IFUNC, or a global untyped symbol in an
/// executable section (an assembly routine written without `.type`).
#[derive(Debug, Clone)]
struct Function {
    /// As in the file (`_ZN2ns3Foo3barEi`, `memcpy@@GLIBC_2.14`).
    name: String,
    /// The C++ or Rust name, when `name` is mangled (`ns::Foo::bar(int)`).
    demangled: Option<String>,
    vaddr: u64,
    /// 0 when the file does not say.
    size: u64,
    /// `STT_GNU_IFUNC`: `vaddr` is the resolver, not the implementation.
    ifunc: bool,
}

impl Function {
    fn sym(&self) -> Sym<'_> {
        Sym {
            name: self.display_name(),
            file_name: &self.name,
            vaddr: self.vaddr,
            size: self.size,
            ifunc: self.ifunc,
        }
    }

    /// Which of several names of one address to show (lowest first): the public one (`getpid`
    /// over `__getpid`), the default version, then the shortest (`strtod` over `strtof64`,
    /// `strtoul` over `strtoull`), then by name, so the choice does not depend on table order.
    fn alias_rank(&self) -> (usize, bool, usize, &str) {
        let underscores = self.name.len() - self.name.trim_start_matches('_').len();
        let old_version = self.name.contains('@') && !self.name.contains("@@");
        let shown = self.display_name();
        (underscores, old_version, shown.len(), shown)
    }

    /// The name users read: demangled when mangled, without a symbol version.
    fn display_name(&self) -> &str {
        self.demangled
            .as_deref()
            .unwrap_or_else(|| self.name.split('@').next().unwrap_or(&self.name))
    }

    /// Whether a user's `name` means this symbol: the name as in the file, without its
    /// version (`memcpy` for `memcpy@@GLIBC_2.14`), with a given version, or demangled with or
    /// without its return type and parameter list (`ns::Foo::bar` for `ns::Foo::bar(int)`).
    fn is_named(&self, name: &str) -> bool {
        let unversioned = |n: &str| n.replace("@@", "@");
        self.name == name
            || self.name.split('@').next() == Some(name)
            || unversioned(&self.name) == unversioned(name)
            || self
                .demangled
                .as_deref()
                .is_some_and(|d| d == name || qualified_name(d) == name)
    }
}

/// The qualified name in a demangled signature, without return type, parameters and
/// qualifiers: `tk::twice<long>` in `long tk::twice<long>(long)`, `Adder::operator()` in
/// `Adder::operator()(int) const`, `(anonymous namespace)::f` in `(anonymous namespace)::f(int)`,
/// `main::{lambda(int)#1}::operator()` for a lambda.
fn qualified_name(demangled: &str) -> &str {
    // Brackets are counted on a copy where operator names (`operator<<`, `operator()`, ...)
    // are masked, so their characters do not open or close anything; offsets stay the same.
    let masked = mask_operators(demangled);
    let b = masked.as_bytes();
    let mut end = masked.trim_end().len();
    while let Some(q) = [" const", " volatile", " &&", " &", " noexcept"]
        .iter()
        .find(|q| masked[..end].ends_with(*q))
    {
        end -= q.len();
    }
    if end > 0
        && b[end - 1] == b')'
        && let Some(open) = matching_open(&b[..end - 1])
        && open > 0
    {
        end = open;
    }
    // A conversion operator or new/delete (`Foo::operator bool`): the space after
    // `operator` is part of the name, so the return type ends before it.
    let name_end = masked[..end].find("operator ").unwrap_or(end);
    let start = last_top_level_space(&b[..name_end]).map_or(0, |i| i + 1);
    &demangled[start..end]
}

/// `s` with the symbol characters of each operator name replaced by `#` (same length).
fn mask_operators(s: &str) -> String {
    const OPERATORS: [&str; 12] = [
        "operator<<=",
        "operator>>=",
        "operator<<",
        "operator>>",
        "operator<=>",
        "operator<=",
        "operator>=",
        "operator->*",
        "operator->",
        "operator()",
        "operator<",
        "operator>",
    ];
    let mut masked = s.to_owned();
    for op in OPERATORS {
        let mask = format!("operator{}", "#".repeat(op.len() - "operator".len()));
        masked = masked.replace(op, &mask);
    }
    masked
}

/// Where the bracket closed by the byte after `before` opens (any of `(<{[`), by depth.
fn matching_open(before: &[u8]) -> Option<usize> {
    let mut depth = 0i32;
    for (i, &c) in before.iter().enumerate().rev() {
        match c {
            b')' | b'>' | b'}' | b']' => depth += 1,
            b'(' | b'<' | b'{' | b'[' if depth == 0 => return Some(i),
            b'(' | b'<' | b'{' | b'[' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// The last space outside every bracket: the end of a return type.
fn last_top_level_space(s: &[u8]) -> Option<usize> {
    let mut depth = 0i32;
    let mut last = None;
    for (i, &c) in s.iter().enumerate() {
        match c {
            b'(' | b'<' | b'{' | b'[' => depth += 1,
            b')' | b'>' | b'}' | b']' => depth -= 1,
            b' ' if depth == 0 => last = Some(i),
            _ => {}
        }
    }
    last
}

/// Every defined function-like symbol of `file`, `.symtab` first, then `.dynsym`.
fn functions_of(file: &object::File<'_>) -> Vec<Function> {
    let ifuncs = ifunc_addresses(file);
    let versions = dynamic_versions(file);
    let mut found: Vec<Function> = file
        .symbols()
        .map(|s| (s, None))
        .chain(file.dynamic_symbols().map(|s| {
            let version = versions.get(&s.index().0).map(String::as_str);
            (s, version)
        }))
        .filter(|(s, _)| s.address() != 0 && defined_in_section(s))
        .filter(|(s, _)| match s.kind() {
            SymbolKind::Text => true,
            // Assembly without `.type`: global, in code.
            SymbolKind::Unknown => s.is_global() && in_code_section(file, s),
            _ => false,
        })
        .filter_map(|(s, version)| {
            let name = format!("{}{}", s.name().ok()?, version.unwrap_or(""));
            Some(Function {
                demangled: demangle(&name),
                vaddr: s.address(),
                size: s.size(),
                ifunc: ifuncs.contains(&s.address()),
                name,
            })
        })
        .collect();
    size_untyped(file, &mut found);
    found
}

/// Whether a symbol is defined in a section of the file (not undefined, absolute or common).
fn defined_in_section(s: &object::Symbol<'_, '_>) -> bool {
    matches!(s.section(), object::SymbolSection::Section(_))
}

fn in_code_section(file: &object::File<'_>, s: &object::Symbol<'_, '_>) -> bool {
    let object::SymbolSection::Section(index) = s.section() else {
        return false;
    };
    file.section_by_index(index)
        .is_ok_and(|section| is_code_section(&section))
}

/// Whether a section holds code (`SHF_EXECINSTR`).
fn is_code_section(section: &object::Section<'_, '_>) -> bool {
    use object::ObjectSection;
    matches!(section.flags(), object::SectionFlags::Elf { sh_flags } if sh_flags & u64::from(object::elf::SHF_EXECINSTR) != 0)
}

/// The version of each `.dynsym` symbol (by index) that has one, as `nm -D` shows it: `@@GLIBC_2.14`
/// for the default version, `@GLIBC_2.2.5` for an older one.
fn dynamic_versions(file: &object::File<'_>) -> std::collections::HashMap<usize, String> {
    use object::read::elf::ElfFile64;
    let object::File::Elf64(elf) = file else {
        return Default::default();
    };
    let elf: &ElfFile64<'_> = elf;
    let Ok(Some(table)) = elf.elf_section_table().versions(elf.endian(), elf.data()) else {
        return Default::default();
    };
    elf.dynamic_symbols()
        .filter_map(|s| {
            let index = table.version_index(elf.endian(), s.index());
            let version = table.version(index).ok()??;
            let at = if index.is_hidden() { "@" } else { "@@" };
            let name = std::str::from_utf8(version.name()).ok()?;
            Some((s.index().0, format!("{at}{name}")))
        })
        .collect()
}

/// The addresses of `STT_GNU_IFUNC` symbols (object's symbol kind does not tell them apart).
fn ifunc_addresses(file: &object::File<'_>) -> BTreeSet<u64> {
    use object::read::elf::{ElfFile64, FileHeader, Sym as _};
    let object::File::Elf64(elf) = file else {
        return BTreeSet::new();
    };
    let elf: &ElfFile64<'_> = elf;
    let endian = elf.elf_header().endian().unwrap_or_default();
    elf.symbols()
        .chain(elf.dynamic_symbols())
        .filter(|s| s.elf_symbol().st_type() == object::elf::STT_GNU_IFUNC)
        .map(|s| s.elf_symbol().st_value(endian))
        .collect()
}

/// Gives an untyped symbol of size 0 the size up to the next symbol, or the end of its section.
fn size_untyped(file: &object::File<'_>, functions: &mut [Function]) {
    use object::ObjectSection;
    let starts: BTreeSet<u64> = functions.iter().map(|f| f.vaddr).collect();
    let code_ends: Vec<(u64, u64)> = file
        .sections()
        .filter(is_code_section)
        // Saturating: a damaged section header can put its end past 2^64.
        .map(|s| (s.address(), s.address().saturating_add(s.size())))
        .collect();
    for f in functions.iter_mut().filter(|f| f.size == 0) {
        let next = starts.range(f.vaddr + 1..).next().copied();
        let section_end = code_ends
            .iter()
            .find(|(start, end)| *start <= f.vaddr && f.vaddr < *end)
            .map(|(_, end)| *end);
        if let Some(end) = [next, section_end].into_iter().flatten().min() {
            f.size = end - f.vaddr;
        }
    }
}

/// The C++ (Itanium) or Rust (legacy or v0) name behind a mangled symbol; `None` for C names.
fn demangle(name: &str) -> Option<String> {
    let bare = name.split('@').next().unwrap_or(name);
    if let Ok(rust) = rustc_demangle::try_demangle(bare) {
        return Some(format!("{rust:#}"));
    }
    if bare.starts_with("_Z") {
        return cpp_demangle::Symbol::new(bare)
            .ok()
            .and_then(|s| s.demangle().ok());
    }
    None
}

#[derive(Debug, Clone, Copy)]
struct Sym<'a> {
    name: &'a str,
    /// As in the file, with its version.
    file_name: &'a str,
    vaddr: u64,
    size: u64,
    ifunc: bool,
}

/// The parts of an ELF file symbol resolution needs.
pub(crate) struct Elf {
    path: PathBuf,
    pub(crate) data: Vec<u8>,
    /// Every defined function-like symbol, .symtab first.
    functions: Vec<Function>,
    /// (vaddr, memsz, file offset, filesz) of each loadable segment.
    segments: Vec<(u64, u64, u64, u64)>,
    /// (vaddr, memsz) of each executable (PF_X) segment.
    code: Vec<(u64, u64)>,
    pub(crate) machine: Machine,
}

impl Elf {
    pub(crate) fn load(path: &Path) -> Result<Elf, SymbolError> {
        let data = fs::read(path).map_err(|source| SymbolError::Io {
            path: path.into(),
            error: source,
        })?;
        let not_elf = |reason: String| SymbolError::NotElf {
            path: path.into(),
            reason,
        };
        let file = object::File::parse(&*data).map_err(|e| not_elf(e.to_string()))?;
        if file.format() != object::BinaryFormat::Elf {
            return Err(not_elf(format!("{:?} format", file.format())));
        }
        let functions = functions_of(&file);
        let segments = file
            .segments()
            .map(|s| {
                let (off, filesz) = s.file_range();
                (s.address(), s.size(), off, filesz)
            })
            .collect();
        let code = file
            .segments()
            .filter(|s| matches!(s.flags(), object::SegmentFlags::Elf { p_flags } if p_flags & object::elf::PF_X != 0))
            .map(|s| (s.address(), s.size()))
            .collect();
        let machine = match file.architecture() {
            object::Architecture::X86_64 => Machine::X86_64,
            object::Architecture::LoongArch64 => Machine::LoongArch64,
            other => Machine::Other(format!("{other:?}")),
        };
        Ok(Elf {
            path: path.into(),
            functions,
            segments,
            code,
            machine,
            data,
        })
    }

    fn symbol(&self, name: &str) -> Result<Sym<'_>, SymbolError> {
        let overloads: BTreeSet<&str> = self
            .functions
            .iter()
            .filter(|f| f.is_named(name) && f.demangled.as_deref().is_some_and(|d| d != name))
            .map(Function::display_name)
            .collect();
        if overloads.len() > 1 {
            return Err(SymbolError::Ambiguous {
                symbol: name.into(),
                path: self.path.clone(),
                candidates: overloads.into_iter().map(str::to_owned).collect(),
            });
        }
        self.functions
            .iter()
            .filter(|f| f.is_named(name))
            // A sized symbol over a label, the default version (`@@`) over an old one.
            .max_by_key(|f| (f.size > 0, !f.name.contains('@') || f.name.contains("@@")))
            .map(Function::sym)
            .ok_or_else(|| SymbolError::SymbolNotFound {
                symbol: name.into(),
                path: self.path.clone(),
                suggestions: self.close_matches(name),
            })
    }

    /// The functions whose name (as in the file without version, demangled, or demangled
    /// without return type and parameters) matches `pattern`, one per address, by name.
    fn matching(&self, pattern: &glob::Pattern) -> Vec<&Function> {
        let mut by_address: std::collections::BTreeMap<u64, &Function> = Default::default();
        for f in &self.functions {
            let plain = f.name.split('@').next().unwrap_or(&f.name);
            let display = f.display_name();
            if [plain, display, qualified_name(display)]
                .iter()
                .any(|n| pattern.matches(n))
            {
                by_address
                    .entry(f.vaddr)
                    .and_modify(|kept| {
                        if f.alias_rank() < kept.alias_rank() {
                            *kept = f;
                        }
                    })
                    .or_insert(f);
            }
        }
        let mut found: Vec<&Function> = by_address.into_values().collect();
        found.sort_by(|a, b| a.display_name().cmp(b.display_name()));
        found
    }

    /// The implementation IFUNC `sym` selects on this machine, named when the file names it
    /// (a `.symtab`), else under the IFUNC's own name with an unknown size.
    fn ifunc_implementation<'a>(&'a self, sym: &Sym<'a>) -> Result<Sym<'a>, SymbolError> {
        let unresolved = |why: String| SymbolError::UnresolvedIfunc {
            symbol: sym.name.to_owned(),
            path: self.path.clone(),
            why,
        };
        let vaddr = crate::ifunc::implementation(&self.path, sym.file_name).map_err(unresolved)?;
        if !self.is_code(vaddr) {
            // `time` and `gettimeofday`: the resolver picks the vDSO's code, not the file's.
            return Err(unresolved(
                "its resolver picks code outside the library (the vDSO's, for `time` and \
                 `gettimeofday`)"
                    .into(),
            ));
        }
        Ok(self
            .containing(vaddr)
            .filter(|s| s.vaddr == vaddr)
            .unwrap_or(Sym {
                name: sym.name,
                file_name: sym.file_name,
                vaddr,
                size: 0,
                ifunc: false,
            }))
    }

    /// Up to five function names near `name`: small edit distance first, then substrings.
    fn close_matches(&self, name: &str) -> Vec<String> {
        let names: BTreeSet<&str> = self.functions.iter().map(|f| f.display_name()).collect();
        let limit = (name.len() / 3).max(2);
        let lower = name.to_lowercase();
        let mut scored: Vec<(usize, &str)> = names
            .into_iter()
            .filter_map(|n| {
                // A demangled name is compared without its return type and parameters.
                let d = strsim::levenshtein(name, qualified_name(n));
                let l = qualified_name(n).to_lowercase();
                let sub = lower.len() >= 3
                    && (l.contains(&lower) || (l.len() >= 3 && lower.contains(&l)));
                (d <= limit || sub).then_some((if d <= limit { d } else { 100 + d }, n))
            })
            .collect();
        scored.sort();
        scored
            .into_iter()
            .take(5)
            .map(|(_, n)| n.to_owned())
            .collect()
    }

    fn containing(&self, vaddr: u64) -> Option<Sym<'_>> {
        self.functions
            .iter()
            .filter(|f| f.vaddr <= vaddr && vaddr < f.vaddr + f.size)
            .min_by_key(|f| f.alias_rank())
            .map(Function::sym)
    }

    /// Whether `vaddr` lies in an executable segment: a breakpoint anywhere else would never
    /// be hit (and the ptrace engine would use it as code).
    pub(crate) fn is_code(&self, vaddr: u64) -> bool {
        self.code
            .iter()
            .any(|(a, size)| *a <= vaddr && vaddr < a + size)
    }

    pub(crate) fn file_offset(&self, vaddr: u64) -> Result<u64, SymbolError> {
        self.segments
            .iter()
            .find(|(a, _, _, filesz)| *a <= vaddr && vaddr < a + filesz)
            .map(|(a, _, off, _)| vaddr - a + off)
            .ok_or_else(|| SymbolError::AddressNotMapped {
                vaddr,
                path: self.path.clone(),
            })
    }

    pub(crate) fn bytes(&self, offset: u64, len: u64) -> &[u8] {
        let start = (offset as usize).min(self.data.len());
        let end = start.saturating_add(len as usize).min(self.data.len());
        &self.data[start..end]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualified_names_drop_return_type_parameters_and_qualifiers() {
        for (demangled, name) in [
            ("long tk::twice<long>(long)", "tk::twice<long>"),
            ("main", "main"),
            (
                "(anonymous namespace)::hidden(int)",
                "(anonymous namespace)::hidden",
            ),
            ("Adder::operator()(int) const", "Adder::operator()"),
            (
                "main::{lambda(int)#1}::operator()(int) const",
                "main::{lambda(int)#1}::operator()",
            ),
            (
                "std::ostream& operator<<(std::ostream&, Foo const&)",
                "operator<<",
            ),
            ("bool ns::operator<(A const&, B const&)", "ns::operator<"),
            ("Foo::operator->() &&", "Foo::operator->"),
            (
                "void std::vector<int, std::allocator<int> >::push_back(int&&)",
                "std::vector<int, std::allocator<int> >::push_back",
            ),
            ("foo[abi:cxx11](int)", "foo[abi:cxx11]"),
            ("Foo::operator bool() const", "Foo::operator bool"),
            (
                "Foo::operator unsigned long() const",
                "Foo::operator unsigned long",
            ),
            ("void* operator new(unsigned long)", "operator new"),
        ] {
            assert_eq!(qualified_name(demangled), name, "{demangled}");
        }
    }

    fn libc() -> PathBuf {
        find_binary(Path::new("libc.so.6"), &Lookup::default()).unwrap()
    }

    fn spec(s: &str) -> ProbeSpec {
        ProbeSpec::parse(s).unwrap().remove(0)
    }

    #[test]
    fn patterns_expand_to_each_function_once() {
        let lookup = Lookup::default();
        let probes = resolve_all(&spec("uprobe:libc.so.6:getpp?d"), &lookup, MAX_PROBES)
            .unwrap()
            .probes;
        let names: Vec<_> = probes.iter().map(|p| p.spec.text.as_str()).collect();
        assert_eq!(names, ["uprobe:libc.so.6:getppid"]);
        // `*time*` in libc: every match is a distinct address, named once.
        let all = resolve_all(&spec("uprobe:libc.so.6:*time*"), &lookup, MAX_PROBES).unwrap();
        let probes = all.probes;
        // `time` is an IFUNC whose implementation is the vDSO's: left out, and said.
        assert!(
            all.skipped
                .iter()
                .any(|s| s.starts_with("uprobe:libc.so.6:time:")),
            "{:?}",
            all.skipped
        );
        let addresses: BTreeSet<u64> = probes.iter().map(|p| p.vaddr).collect();
        assert_eq!(addresses.len(), probes.len());
        assert!(
            probes
                .iter()
                .any(|p| p.spec.text == "uprobe:libc.so.6:strftime")
        );
        // Aliases show their plainest name: strtod, not its alias strtof64.
        let texts: Vec<String> = resolve_all(&spec("uprobe:libc.so.6:strto[dfl]*"), &lookup, 50)
            .unwrap()
            .probes
            .into_iter()
            .map(|p| p.spec.text)
            .collect();
        assert!(
            texts.contains(&"uprobe:libc.so.6:strtod".to_owned()),
            "{texts:?}"
        );
        assert!(
            !texts.contains(&"uprobe:libc.so.6:strtof64".to_owned()),
            "{texts:?}"
        );
        let err = resolve_all(&spec("uprobe:libc.so.6:*"), &lookup, 10).unwrap_err();
        assert!(
            matches!(err, SymbolError::PatternMatches { count, max: 10, .. } if count > 1000),
            "{err}"
        );
        assert!(err.to_string().contains("--max-probes"), "{err}");
        let err = resolve_all(&spec("uprobe:libc.so.6:tk_none*"), &lookup, 10).unwrap_err();
        assert!(err.to_string().contains("matches no function"), "{err}");
        let err = resolve_all(&spec("uprobe:libc.so.6:a[b"), &lookup, 10).unwrap_err();
        assert!(matches!(err, SymbolError::BadPattern { .. }), "{err}");
    }

    #[test]
    fn finds_libc_symbol_and_its_file_offset() {
        let r = resolve(&spec("uprobe:libc.so.6:getpid")).unwrap();
        assert_eq!(r.binary, libc());
        assert_eq!(r.symbol.as_deref(), Some("getpid"));
        assert_eq!(r.vaddr, r.symbol_vaddr);
        assert!(r.symbol_size > 0);
        // The bytes at the file offset are the function's first bytes.
        let data = fs::read(&r.binary).unwrap();
        assert_eq!(&data[r.file_offset as usize..][..4], &r.code[..4]);
        // And this process maps them at the runtime address.
        let addr = r.runtime_address(std::process::id()).unwrap();
        assert_eq!(addr, libc::getpid as *const () as usize as u64);
    }

    /// A process that also maps its libc file for reading (a symbolizer printing a backtrace
    /// does) has the code's offset at a second address: the probe goes to the loader's.
    #[test]
    fn a_second_read_only_mapping_of_the_file_is_not_taken_for_the_code() {
        let r = resolve(&spec("uprobe:libc.so.6:getpid")).unwrap();
        let file = fs::File::open(&r.binary).unwrap();
        let len = file.metadata().unwrap().len() as usize;
        // Below the loader's mappings, so that it comes first in /proc/PID/maps.
        let hint = 0x1000_0000 as *mut libc::c_void;
        // SAFETY: a new private read-only mapping of a file we opened, at an address nothing
        // else uses (MAP_FIXED_NOREPLACE fails rather than replace a mapping); unmapped below.
        let copy = unsafe {
            libc::mmap(
                hint,
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_FIXED_NOREPLACE,
                std::os::fd::AsRawFd::as_raw_fd(&file),
                0,
            )
        };
        assert_eq!(copy, hint);
        let addr = r.runtime_address(std::process::id());
        // SAFETY: unmaps exactly the mapping made above.
        unsafe { libc::munmap(copy, len) };
        assert_eq!(addr.unwrap(), libc::getpid as *const () as usize as u64);
    }

    #[test]
    fn bare_program_names_are_found_on_path() {
        let sh = find_binary(Path::new("sh"), &Lookup::default()).unwrap();
        assert_eq!(sh, fs::canonicalize("/bin/sh").unwrap());
        let e = resolve(&spec("uprobe:no-such-program-xyz:main")).unwrap_err();
        assert!(matches!(e, SymbolError::BinaryNotFound { .. }), "{e}");
        assert!(e.to_string().contains("full path"), "{e}");
    }

    #[test]
    fn library_names_are_found_in_a_process() {
        let lookup = Lookup {
            pid: Some(std::process::id()),
            command: None,
        };
        assert_eq!(find_binary(Path::new("libc"), &lookup).unwrap(), libc());
        // Without a process, the library directories give the same file (not the `libc.so`
        // linker script next to it).
        assert_eq!(
            find_binary(Path::new("libc"), &Lookup::default()).unwrap(),
            libc()
        );
        let e = find_binary(
            Path::new("libc"),
            &Lookup {
                pid: Some(0x7fff_fff0),
                command: None,
            },
        )
        .unwrap_err();
        assert!(matches!(e, SymbolError::NoProcess { .. }), "{e}");
    }

    #[test]
    fn missing_symbol_lists_close_matches() {
        let e = resolve(&spec("uprobe:libc.so.6:getpidd")).unwrap_err();
        let SymbolError::SymbolNotFound { suggestions, .. } = &e else {
            panic!("{e}")
        };
        assert_eq!(
            suggestions.first().map(String::as_str),
            Some("getpid"),
            "{e}"
        );
        assert!(e.to_string().contains("did you mean: getpid"), "{e}");
    }

    #[test]
    fn garbage_is_not_elf() {
        let path = std::env::temp_dir().join(format!("tk-garbage-{}", std::process::id()));
        fs::write(&path, b"this is not an ELF file at all, just text\n").unwrap();
        let e = resolve(&spec(&format!("uprobe:{}:main", path.display()))).unwrap_err();
        fs::remove_file(&path).unwrap();
        assert!(matches!(e, SymbolError::NotElf { .. }), "{e}");
        assert!(e.to_string().contains("not a usable ELF file"), "{e}");
    }

    #[test]
    fn offsets_must_be_inside_and_on_instruction_boundaries() {
        let r = resolve(&spec("uprobe:libc.so.6:getpid")).unwrap();
        let e = resolve(&spec(&format!(
            "uprobe:libc.so.6:getpid+{}",
            r.symbol_size + 1
        )))
        .unwrap_err();
        assert!(matches!(e, SymbolError::OffsetOutOfRange { .. }), "{e}");
        // Find the first instruction longer than one byte and probe its second byte.
        let mut d = iced_x86::Decoder::with_ip(64, &r.code, r.symbol_vaddr, 0);
        let insn = std::iter::from_fn(|| d.can_decode().then(|| d.decode()))
            .find(|i| i.len() > 1)
            .unwrap();
        let off = insn.ip() - r.symbol_vaddr;
        resolve(&spec(&format!("uprobe:libc.so.6:getpid+{off}"))).unwrap();
        let e = resolve(&spec(&format!("uprobe:libc.so.6:getpid+{}", off + 1))).unwrap_err();
        assert!(matches!(e, SymbolError::MidInstruction { .. }), "{e}");
        // An address resolves to the symbol containing it.
        let a = resolve(&spec(&format!("uprobe:libc.so.6:{:#x}", insn.ip()))).unwrap();
        assert_eq!(a.symbol.as_deref(), Some("getpid"));
        assert_eq!(a.file_offset, r.file_offset + off);
    }

    #[test]
    fn return_probes_only_at_function_entry() {
        let r = resolve(&spec("uretprobe:libc.so.6:getpid")).unwrap();
        assert_eq!(r.vaddr, r.symbol_vaddr);
        let off = iced_x86::Decoder::with_ip(64, &r.code, r.symbol_vaddr, 0)
            .decode()
            .len();
        let e = resolve(&spec(&format!("uretprobe:libc.so.6:getpid+{off}"))).unwrap_err();
        assert!(matches!(e, SymbolError::ReturnNotAtEntry { .. }), "{e}");
    }

    #[test]
    fn kernel_probes_have_no_binary() {
        assert!(matches!(
            resolve(&spec("kprobe:vfs_read")),
            Err(SymbolError::KernelProbe { .. })
        ));
    }
}
