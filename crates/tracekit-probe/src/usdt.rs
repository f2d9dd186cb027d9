//! USDT probes (`usdt:BINARY:PROVIDER:NAME`): the SystemTap SDT notes a program or library
//! carries (`<sys/sdt.h>`'s `DTRACE_PROBE*`/`STAP_PROBE*` macros), each one probe site.
//!
//! A note (`.note.stapsdt`, owner `stapsdt`, type 3) holds the site's address, the address of
//! `.stapsdt.base` when it was linked (a prelinked file moved since: every address moves by
//! the same amount), the address of the probe's semaphore (0: none), provider, name, and the
//! argument format (`-4@%edi 8@-16(%rbp)`: size in bytes, negative when signed, then the
//! operand in AT&T syntax). The site is a `nop`, so both engines probe it like any instruction.
//!
//! A probe may have several sites (inlined, or called from several places): they are resolved
//! as one [`ResolvedProbe`] each, with the same spec; the report folds them into one row
//! ([`crate::report::ProbeReport::fold_sites`]).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use object::{Object, ObjectSection, ObjectSymbol};

use crate::spec::{ProbeLocation, ProbeSpec};
use crate::symbols::{
    Elf, Expansion, Listing, Lookup, Machine, ResolvedProbe, SymbolError, find_binary,
};

/// The note type of SDT probe descriptors.
const NT_STAPSDT: u32 = 3;

/// An x86-64 register an argument operand names (its full 64-bit register).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Reg {
    Rax,
    Rbx,
    Rcx,
    Rdx,
    Rsi,
    Rdi,
    Rbp,
    Rsp,
    R8,
    R9,
    R10,
    R11,
    R12,
    R13,
    R14,
    R15,
    /// At a probe hit: the site's address (a uprobe's and a breakpoint's view of it).
    Rip,
}

impl Reg {
    /// The register of an AT&T name without `%` (`edi`, `r8d`, `sil`); the 8-bit high halves
    /// (`ah`) are not registers of their own and give `None`.
    fn parse(name: &str) -> Option<Reg> {
        use Reg::*;
        const LEGACY: [(Reg, [&str; 4]); 8] = [
            (Rax, ["rax", "eax", "ax", "al"]),
            (Rbx, ["rbx", "ebx", "bx", "bl"]),
            (Rcx, ["rcx", "ecx", "cx", "cl"]),
            (Rdx, ["rdx", "edx", "dx", "dl"]),
            (Rsi, ["rsi", "esi", "si", "sil"]),
            (Rdi, ["rdi", "edi", "di", "dil"]),
            (Rbp, ["rbp", "ebp", "bp", "bpl"]),
            (Rsp, ["rsp", "esp", "sp", "spl"]),
        ];
        if name == "rip" {
            return Some(Rip);
        }
        if let Some((r, _)) = LEGACY.iter().find(|(_, names)| names.contains(&name)) {
            return Some(*r);
        }
        let n: u8 = name
            .strip_prefix('r')?
            .trim_end_matches(['d', 'w', 'b'])
            .parse()
            .ok()?;
        [R8, R9, R10, R11, R12, R13, R14, R15]
            .get(usize::from(n).checked_sub(8)?)
            .copied()
    }

    /// Its offset in the kernel's x86-64 `struct pt_regs` (what a BPF program reads), which
    /// is also the layout of ptrace's `user_regs_struct`.
    pub fn pt_regs_offset(self) -> u32 {
        use Reg::*;
        match self {
            R15 => 0,
            R14 => 8,
            R13 => 16,
            R12 => 24,
            Rbp => 32,
            Rbx => 40,
            R11 => 48,
            R10 => 56,
            R9 => 64,
            R8 => 72,
            Rax => 80,
            Rcx => 88,
            Rdx => 96,
            Rsi => 104,
            Rdi => 112,
            Rip => 128,
            Rsp => 152,
        }
    }
}

/// Where an argument's value is at the probe site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operand {
    /// `%reg`: the register's value.
    Reg(Reg),
    /// `$imm`: a constant.
    Imm(i64),
    /// `OFF(%base,%index,scale)`: memory at base + OFF + index * scale. A `symbol(%rip)` is
    /// turned into this form with `Rip` and the symbol's distance from the site.
    Mem {
        /// The base register.
        base: Reg,
        /// The displacement.
        offset: i64,
        /// The index register and its scale.
        index: Option<(Reg, u8)>,
    },
    /// An operand this tool cannot read (its text): printed as `?`.
    Unknown(String),
}

/// One argument of a USDT probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsdtArg {
    /// Its size in bytes (1, 2, 4 or 8).
    pub size: u8,
    /// Whether it is signed (a negative size in the note).
    pub signed: bool,
    /// Where it is.
    pub operand: Operand,
}

impl UsdtArg {
    /// The argument's value from the `raw` 64 bits read for it: cut to its size, sign
    /// extended when signed; signed values in decimal, unsigned ones in decimal up to 10^12
    /// and in hex above (pointers).
    pub fn show(&self, raw: u64) -> String {
        if matches!(self.operand, Operand::Unknown(_)) {
            return "?".into();
        }
        let bits = u32::from(self.size.clamp(1, 8)) * 8;
        let cut = if bits == 64 {
            raw
        } else {
            raw & ((1u64 << bits) - 1)
        };
        if self.signed {
            let shift = 64 - bits;
            (((cut << shift) as i64) >> shift).to_string()
        } else if cut <= 1_000_000_000_000 {
            cut.to_string()
        } else {
            format!("{cut:#x}")
        }
    }

    /// Reads the argument's raw value at a hit: `reg` gives a register (`Rip`: the site's
    /// address), `read` fills a buffer from the process's memory. `None` when it cannot.
    pub fn read(
        &self,
        reg: &dyn Fn(Reg) -> Option<u64>,
        read: &mut dyn FnMut(u64, &mut [u8]) -> bool,
    ) -> Option<u64> {
        match &self.operand {
            Operand::Reg(r) => reg(*r),
            Operand::Imm(v) => Some(*v as u64),
            Operand::Mem {
                base,
                offset,
                index,
            } => {
                let mut addr = reg(*base)?.wrapping_add(*offset as u64);
                if let Some((i, scale)) = index {
                    addr = addr.wrapping_add(reg(*i)?.wrapping_mul(u64::from(*scale)));
                }
                let mut buf = [0u8; 8];
                let n = usize::from(self.size.clamp(1, 8));
                read(addr, &mut buf[..n]).then(|| u64::from_le_bytes(buf))
            }
            Operand::Unknown(_) => None,
        }
    }
}

/// Parses a note's argument format (`-4@%edi 8@-16(%rbp) 8@$5`), one [`UsdtArg`] per word.
/// `symbol` gives a symbol's address for `symbol(%rip)` operands, relative to the site.
/// An operand this tool does not know becomes [`Operand::Unknown`] (its value prints as `?`).
pub fn parse_args(text: &str, symbol: &dyn Fn(&str) -> Option<i64>) -> Vec<UsdtArg> {
    text.split_ascii_whitespace()
        .map(|word| {
            let (size, op) = match word.split_once('@') {
                Some((size, op)) => (size.parse::<i8>().ok(), op),
                None => (Some(8), word),
            };
            let operand = parse_operand(op, symbol).unwrap_or_else(|| Operand::Unknown(op.into()));
            match size.filter(|s| matches!(s.unsigned_abs(), 1 | 2 | 4 | 8)) {
                Some(s) => UsdtArg {
                    size: s.unsigned_abs(),
                    signed: s < 0,
                    operand,
                },
                None => UsdtArg {
                    size: 8,
                    signed: false,
                    operand: Operand::Unknown(word.into()),
                },
            }
        })
        .collect()
}

fn parse_operand(op: &str, symbol: &dyn Fn(&str) -> Option<i64>) -> Option<Operand> {
    if let Some(r) = op.strip_prefix('%') {
        return Reg::parse(r).map(Operand::Reg);
    }
    if let Some(imm) = op.strip_prefix('$') {
        return parse_int(imm).map(Operand::Imm);
    }
    let (disp, inner) = op.strip_suffix(')')?.split_once('(')?;
    let mut parts = inner.split(',');
    let base = Reg::parse(parts.next()?.strip_prefix('%')?)?;
    let index = match (parts.next(), parts.next()) {
        (None, _) => None,
        (Some(i), scale) => {
            let scale = scale.map_or(Some(1), |s| s.parse::<u8>().ok())?;
            Some((Reg::parse(i.strip_prefix('%')?)?, scale))
        }
    };
    let offset = match parse_int(disp) {
        Some(n) => n,
        None if disp.is_empty() => 0,
        // `counter(%rip)`, `counter+8(%rip)`: a symbol, only meaningful relative to rip.
        None if base == Reg::Rip => {
            let (name, add) = match disp.split_once('+') {
                Some((name, add)) => (name, parse_int(add)?),
                None => (disp, 0),
            };
            symbol(name)?.checked_add(add)?
        }
        None => return None,
    };
    Some(Operand::Mem {
        base,
        offset,
        index,
    })
}

fn parse_int(s: &str) -> Option<i64> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s),
    };
    let v = match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        Some(hex) => u64::from_str_radix(hex, 16).ok()? as i64,
        None => digits.parse::<i64>().ok()?,
    };
    Some(if neg { v.wrapping_neg() } else { v })
}

/// One SDT note of a binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsdtNote {
    /// The provider (`libstdcxx`).
    pub provider: String,
    /// The probe's name (`throw`).
    pub name: String,
    /// ELF virtual address of the site, adjusted for prelinking.
    pub pc: u64,
    /// ELF virtual address of the semaphore (a 2-byte counter the program tests before
    /// computing the arguments), if the probe has one.
    pub semaphore: Option<u64>,
    /// The argument format as in the note.
    pub args: String,
}

impl UsdtNote {
    /// `provider:name`.
    pub fn full_name(&self) -> String {
        format!("{}:{}", self.provider, self.name)
    }
}

/// A USDT probe site as a [`ResolvedProbe`] carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsdtSite {
    /// The provider.
    pub provider: String,
    /// The probe's name.
    pub name: String,
    /// The arguments, decoded from the note's format.
    pub args: Vec<UsdtArg>,
    /// The argument format as in the note.
    pub args_text: String,
    /// File offset of the semaphore (as the kernel's uprobe `ref_ctr_offset` takes it).
    pub semaphore: Option<u64>,
    /// Which of the probe's sites this is (0: the first, the row the report keeps).
    pub site: usize,
}

/// Every SDT note of `data` (an ELF file), in file order; a malformed note is an error.
pub(crate) fn notes(path: &Path, data: &[u8]) -> Result<Vec<UsdtNote>, SymbolError> {
    use object::read::elf::{ElfFile64, SectionHeader};
    let bad = |reason: String| SymbolError::BadUsdtNote {
        path: path.into(),
        reason,
    };
    let elf = ElfFile64::<object::Endianness>::parse(data).map_err(|e| bad(e.to_string()))?;
    let endian = elf.endian();
    let actual_base = elf.section_by_name(".stapsdt.base").map(|s| s.address());
    let mut out = Vec::new();
    for section in elf.elf_section_table().iter() {
        let Some(mut it) = section
            .notes(endian, data)
            .map_err(|e| bad(e.to_string()))?
        else {
            continue;
        };
        while let Some(note) = it.next().map_err(|e| bad(e.to_string()))? {
            if note.name() != b"stapsdt" || note.n_type(endian) != NT_STAPSDT {
                continue;
            }
            out.push(parse_note(note.desc(), actual_base).map_err(&bad)?);
        }
    }
    Ok(out)
}

/// One note's descriptor: three addresses (pc, base, semaphore), then three NUL-terminated
/// strings (provider, name, arguments).
fn parse_note(desc: &[u8], actual_base: Option<u64>) -> Result<UsdtNote, String> {
    let word = |i: usize| {
        desc.get(i * 8..i * 8 + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
            .ok_or_else(|| format!("a note of {} bytes is too short", desc.len()))
    };
    let (pc, base, sema) = (word(0)?, word(1)?, word(2)?);
    let mut strings = desc[24..].split(|&b| b == 0);
    let mut text = |what: &str| -> Result<String, String> {
        let s = strings
            .next()
            .ok_or_else(|| format!("a note without its {what}"))?;
        String::from_utf8(s.to_vec()).map_err(|_| format!("the note's {what} is not UTF-8"))
    };
    let (provider, name, args) = (text("provider")?, text("name")?, text("arguments")?);
    if provider.is_empty() || name.is_empty() {
        return Err("a note with an empty provider or name".into());
    }
    // Prelinked: the file moved by (actual - linked) since the note was written.
    let delta = match actual_base {
        Some(actual) if base != 0 => actual.wrapping_sub(base),
        _ => 0,
    };
    Ok(UsdtNote {
        provider,
        name,
        pc: pc.wrapping_add(delta),
        semaphore: (sema != 0).then(|| sema.wrapping_add(delta)),
        args,
    })
}

/// The USDT notes of BINARY (resolved like a uprobe's binary) whose `provider:name` matches
/// `pattern` (`*` for all), with the binary's path.
/// What `--list` shows: a binary's functions (matching a pattern) and its USDT probe sites.
#[derive(Debug, Clone)]
pub struct ListReport {
    /// The binary.
    pub path: PathBuf,
    /// Its instruction set (`None` for a USDT-only listing).
    pub machine: Option<Machine>,
    /// Its functions, when asked for.
    pub functions: Vec<Listing>,
    /// Its USDT probe sites, one per site.
    pub usdt: Vec<UsdtNote>,
    /// What the user should know (a damaged note that cost the USDT part).
    pub warnings: Vec<String>,
}

/// `--list BINARY[:PATTERN]`: the functions that could be probed and, for a whole binary,
/// its USDT probes too; `--list usdt:BINARY[:PATTERN]`: only the USDT probes.
pub fn list_report(what: &str, lookup: &Lookup) -> Result<ListReport, SymbolError> {
    if let Some(rest) = what.strip_prefix("usdt:") {
        let (binary, pattern) = rest.split_once(':').unwrap_or((rest, "*"));
        let (path, usdt) = list(binary.as_ref(), pattern, lookup)?;
        return Ok(ListReport {
            path,
            machine: None,
            functions: Vec::new(),
            usdt,
            warnings: Vec::new(),
        });
    }
    let (path, machine, functions) = crate::symbols::list(what, lookup)?;
    let mut warnings = Vec::new();
    // A whole binary: its USDT probes too (a malformed note only costs that part).
    let usdt = match what.contains(':') {
        true => Vec::new(),
        false => list(&path, "*", lookup).map_or_else(
            |e| {
                warnings.push(e.to_string());
                Vec::new()
            },
            |(_, notes)| notes,
        ),
    };
    Ok(ListReport {
        path,
        machine: Some(machine),
        functions,
        usdt,
        warnings,
    })
}

/// The USDT probe sites of `binary` whose `provider:name` or name matches `pattern`.
pub fn list(
    binary: &Path,
    pattern: &str,
    lookup: &Lookup,
) -> Result<(PathBuf, Vec<UsdtNote>), SymbolError> {
    let path = find_binary(binary, lookup)?;
    let elf = Elf::load(&path)?;
    let pattern = compile(pattern)?;
    let notes = notes(&path, &elf.data)?
        .into_iter()
        .filter(|n| pattern.matches(&n.full_name()) || pattern.matches(&n.name))
        .collect();
    Ok((path, notes))
}

fn compile(pattern: &str) -> Result<glob::Pattern, SymbolError> {
    glob::Pattern::new(pattern).map_err(|e| SymbolError::BadPattern {
        pattern: pattern.into(),
        reason: e.to_string(),
    })
}

/// Resolves a `usdt:` spec into one probe per site of every `provider:name` it names (globs
/// allowed in both), in name order; more than `max` probes (not sites), none, a binary
/// without notes, or a name several providers have are errors that say what exists.
pub fn resolve(spec: &ProbeSpec, lookup: &Lookup, max: usize) -> Result<Expansion, SymbolError> {
    let ProbeLocation::Usdt { provider, name } = &spec.location else {
        return Err(SymbolError::KernelProbe {
            spec: spec.text.clone(),
        });
    };
    let path = find_binary(&spec.binary, lookup)?;
    let elf = Elf::load(&path)?;
    let all = notes(&path, &elf.data)?;
    if all.is_empty() {
        return Err(SymbolError::NoUsdtNotes { path });
    }
    let (pp, np) = (compile(provider.as_deref().unwrap_or("*"))?, compile(name)?);
    let chosen: BTreeSet<(&str, &str)> = all
        .iter()
        .filter(|n| pp.matches(&n.provider) && np.matches(&n.name))
        .map(|n| (n.provider.as_str(), n.name.as_str()))
        .collect();
    let wanted = provider
        .as_deref()
        .map_or(name.clone(), |p| format!("{p}:{name}"));
    let pattern = wanted.contains(['*', '?', '[']);
    if chosen.is_empty() {
        return Err(SymbolError::UsdtNotFound {
            probe: wanted.clone(),
            suggestions: usdt_suggestions(&wanted, &all),
            path,
        });
    }
    if provider.is_none() && !pattern && chosen.len() > 1 {
        return Err(SymbolError::UsdtAmbiguous {
            name: name.clone(),
            path,
            candidates: chosen.iter().map(|(p, n)| format!("{p}:{n}")).collect(),
        });
    }
    if chosen.len() > max {
        return Err(SymbolError::PatternMatches {
            pattern: wanted,
            path,
            count: chosen.len(),
            max,
        });
    }
    let mut expansion = Expansion::default();
    for (prov, nm) in chosen {
        let text = if pattern || provider.is_none() {
            format!("usdt:{}:{prov}:{nm}", spec.binary.display())
        } else {
            spec.text.clone()
        };
        let sites = all.iter().filter(|n| n.provider == prov && n.name == nm);
        for (i, note) in sites.enumerate() {
            let mut concrete = spec.clone();
            concrete.text = text.clone();
            expansion
                .probes
                .push(place(&concrete, &path, &elf, note, i)?);
        }
    }
    Ok(expansion)
}

/// Places one site: the file offsets of the site and its semaphore, the arguments.
fn place(
    spec: &ProbeSpec,
    path: &Path,
    elf: &Elf,
    note: &UsdtNote,
    site: usize,
) -> Result<ResolvedProbe, SymbolError> {
    if !elf.is_code(note.pc) {
        return Err(SymbolError::NotCode {
            vaddr: note.pc,
            path: path.into(),
        });
    }
    let file_offset = elf.file_offset(note.pc)?;
    let semaphore = note.semaphore.map(|s| elf.file_offset(s)).transpose()?;
    let symbol =
        |name: &str| data_symbol(&elf.data, name).map(|addr| addr.wrapping_sub(note.pc) as i64);
    // The operands are x86-64 AT&T; another machine's are shown as unknown (`?`).
    let args = if elf.machine == Machine::X86_64 {
        parse_args(&note.args, &symbol)
    } else {
        let unknown = |word: &str| UsdtArg {
            size: 8,
            signed: false,
            operand: Operand::Unknown(word.into()),
        };
        note.args.split_ascii_whitespace().map(unknown).collect()
    };
    Ok(ResolvedProbe {
        spec: spec.clone(),
        binary: path.into(),
        symbol: Some(note.full_name()),
        symbol_vaddr: note.pc,
        symbol_size: 0,
        vaddr: note.pc,
        file_offset,
        code: elf.bytes(file_offset, 16).to_vec(),
        machine: elf.machine.clone(),
        ifunc: None,
        usdt: Some(UsdtSite {
            provider: note.provider.clone(),
            name: note.name.clone(),
            args,
            args_text: note.args.clone(),
            semaphore,
            site,
        }),
    })
}

/// The address of a symbol of any kind (arguments name global variables).
fn data_symbol(data: &[u8], name: &str) -> Option<u64> {
    let file = object::File::parse(data).ok()?;
    file.symbols()
        .chain(file.dynamic_symbols())
        .find(|s| s.name() == Ok(name) && s.address() != 0)
        .map(|s| s.address())
}

/// Up to five `provider:name`s near `wanted`, best first.
fn usdt_suggestions(wanted: &str, all: &[UsdtNote]) -> Vec<String> {
    let names: BTreeSet<String> = all.iter().map(UsdtNote::full_name).collect();
    let mut scored: Vec<(usize, String)> = names
        .into_iter()
        .map(|n| {
            let short = n.split_once(':').map_or(n.as_str(), |(_, s)| s);
            let d = strsim::levenshtein(wanted, &n).min(strsim::levenshtein(wanted, short));
            (d, n)
        })
        .collect();
    scored.sort();
    scored.into_iter().take(5).map(|(_, n)| n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: &str) -> Option<i64> {
        None
    }

    #[test]
    fn argument_formats() {
        let args = parse_args(
            "-4@%edi 8@-16(%rbp) 2@$-3 1@%sil 8@8(%rax,%rbx,4) 4@%ah",
            &none,
        );
        assert_eq!(
            args[0],
            UsdtArg {
                size: 4,
                signed: true,
                operand: Operand::Reg(Reg::Rdi)
            }
        );
        assert_eq!(
            args[1].operand,
            Operand::Mem {
                base: Reg::Rbp,
                offset: -16,
                index: None
            }
        );
        assert_eq!(args[2].operand, Operand::Imm(-3));
        assert_eq!(args[3].operand, Operand::Reg(Reg::Rsi));
        assert_eq!(
            args[4].operand,
            Operand::Mem {
                base: Reg::Rax,
                offset: 8,
                index: Some((Reg::Rbx, 4))
            }
        );
        assert!(matches!(args[5].operand, Operand::Unknown(_)));
        let rip = parse_args("4@counter+4(%rip) 4@other(%rip)", &|n| {
            (n == "counter").then_some(0x100)
        });
        assert_eq!(
            rip[0].operand,
            Operand::Mem {
                base: Reg::Rip,
                offset: 0x104,
                index: None
            }
        );
        assert!(matches!(rip[1].operand, Operand::Unknown(_)));
        // Garbage is an unknown operand, never a panic.
        for junk in [
            "@",
            "-@%",
            "99@%rax",
            "4@(",
            "4@)(",
            "4@1(%rax,",
            "x@y@z",
            "4@%r99",
        ] {
            let a = parse_args(junk, &none);
            assert!(matches!(a[0].operand, Operand::Unknown(_)), "{junk}");
        }
    }

    #[test]
    fn values_honour_size_and_sign() {
        let arg = |size, signed| UsdtArg {
            size,
            signed,
            operand: Operand::Imm(0),
        };
        assert_eq!(arg(4, true).show(0xffff_ffff), "-1");
        assert_eq!(arg(4, false).show(0x1_ffff_ffff), "4294967295");
        assert_eq!(arg(2, true).show(0x8000), "-32768");
        assert_eq!(arg(8, false).show(u64::MAX), "0xffffffffffffffff");
        assert_eq!(arg(8, true).show(u64::MAX), "-1");
        let mem = UsdtArg {
            size: 2,
            signed: true,
            operand: Operand::Mem {
                base: Reg::Rbp,
                offset: -16,
                index: None,
            },
        };
        let raw = mem.read(&|r| (r == Reg::Rbp).then_some(0x1010), &mut |addr, buf| {
            assert_eq!((addr, buf.len()), (0x1000, 2));
            buf.copy_from_slice(&[0xfe, 0xff]);
            true
        });
        assert_eq!(mem.show(raw.unwrap()), "-2");
    }

    #[test]
    fn malformed_notes_are_errors() {
        assert!(parse_note(&[0; 10], None).is_err());
        assert!(parse_note(&[0; 24], None).is_err());
        let mut desc = vec![0u8; 24];
        desc[0] = 0x10;
        desc[8] = 0x20;
        desc.extend(b"prov\0name\0-4@%edi\0");
        let n = parse_note(&desc, Some(0x1020)).unwrap();
        assert_eq!((n.pc, n.semaphore), (0x1010, None));
        assert_eq!(n.full_name(), "prov:name");
        desc.truncate(24 + 5);
        assert!(parse_note(&desc, None).is_err());
    }
}

#[cfg(test)]
mod file_tests {
    use super::*;
    use object::read::elf::{ElfFile64, SectionHeader};

    /// The test program, and the file range of its `.note.stapsdt`.
    fn program() -> (Vec<u8>, std::ops::Range<usize>) {
        let path = crate::test_support::compile("usdt.c", "usdt-notes", &[]);
        let data = std::fs::read(path).unwrap();
        let range = {
            let elf = ElfFile64::<object::Endianness>::parse(&*data).unwrap();
            let s = elf
                .elf_section_table()
                .iter()
                .find(|s| {
                    elf.elf_section_table().section_name(elf.endian(), s) == Ok(b".note.stapsdt")
                })
                .unwrap();
            let (off, size) = s.file_range(elf.endian()).unwrap();
            off as usize..(off + size) as usize
        };
        (data, range)
    }

    #[test]
    fn the_test_program_has_its_notes() {
        let (data, _) = program();
        let notes = notes(Path::new("usdt"), &data).unwrap();
        let names: Vec<String> = notes.iter().map(UsdtNote::full_name).collect();
        assert_eq!(names, ["tk:step", "tk:plain", "tk:plain", "tk:plain"]);
        assert!(notes.iter().all(|n| n.semaphore.is_some()));
        assert!(
            notes[0].args.starts_with("-8@%rdi -4@"),
            "{}",
            notes[0].args
        );
    }

    #[test]
    fn damaged_notes_are_errors_never_panics() {
        let (data, range) = program();
        // The first note's descriptor size (bytes 4..8 of its header) cut to 10 bytes.
        let mut cut = data.clone();
        cut[range.start + 4..range.start + 8].copy_from_slice(&10u32.to_le_bytes());
        assert!(matches!(
            notes(Path::new("cut"), &cut),
            Err(SymbolError::BadUsdtNote { .. })
        ));
        // Every byte of the section set to each of a few values, one at a time.
        for i in range.clone() {
            for v in [0u8, 0x7f, 0xff] {
                let mut bad = data.clone();
                bad[i] = v;
                let _ = notes(Path::new("bad"), &bad);
            }
        }
    }
}
