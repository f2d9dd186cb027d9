//! `__kconfig` externs (`extern int LINUX_KERNEL_VERSION __kconfig;`, `extern bool
//! CONFIG_BPF_SYSCALL __kconfig __weak;`), given their values as libbpf gives them: from the
//! running kernel's configuration (/proc/config.gz) and a few values libbpf computes itself.
//!
//! libbpf puts them in a read-only map of its own. Here the externs become a real
//! `.rodata.kconfig` section of a copy of the ELF (symbols defined in it, the `.kconfig` DATASEC
//! renamed and sized, the variables given a linkage the kernel accepts), so that aya-obj makes
//! the map and the relocations as for any `.rodata`, and the verifier sees the values as
//! constants (which is what lets `if (CONFIG_X)` remove code for other kernels).

use crate::btf::{self, Btf, BtfBlob};
use crate::rename::{Elf, c_str, move_section, u32_at};
use std::collections::HashMap;
use std::io::Read;

const KCONFIG: &str = ".kconfig";
const SECTION: &str = ".rodata.kconfig";

/// Whether the object has `__kconfig` externs.
pub(crate) fn has_kconfig(bytes: &[u8]) -> bool {
    Elf::has_datasec(bytes, KCONFIG)
}

/// One extern: its name, where it goes in the section and how many bytes it has.
struct Var<'a> {
    name: &'a str,
    /// The VAR record in the type section.
    record: usize,
    /// The DATASEC entry for it.
    entry: usize,
    offset: u32,
    value: Vec<u8>,
}

/// The object with its `__kconfig` externs turned into a `.rodata.kconfig` section.
pub(crate) fn resolve(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let elf = Elf::parse(bytes)?;
    let btf_index = elf.section(".BTF").ok_or("no .BTF section")?;
    let local = Btf::parse(elf.contents(btf_index)?).ok_or("cannot read .BTF")?;
    let datasec = local.datasec(KCONFIG).ok_or("no .kconfig in .BTF")?;
    let config = KernelConfig::read()?;
    let weak = weak_symbols(&elf)?;
    let mut vars = Vec::new();
    let mut size = 0u32;
    for (id, entry) in local.datasec_entries(datasec) {
        let (_, name, record) = local.get(id).ok_or("bad .kconfig entry")?;
        let value = config
            .value(&local, name, u32_at(local.types, record + 8)?)
            .or_else(|e| {
                if weak.contains(&name) {
                    Ok(Vec::new())
                } else {
                    Err(e)
                }
            })?;
        let width = type_size(&local, u32_at(local.types, record + 8)?, 0)
            .ok_or_else(|| format!("cannot size __kconfig '{name}'"))?;
        if width > MAX_VALUE {
            return Err(format!(
                "__kconfig '{name}' is {width} bytes (at most {MAX_VALUE}): the .BTF is damaged"
            ));
        }
        let offset = size.next_multiple_of(width.clamp(1, 8));
        let mut value = value;
        value.resize(width as usize, 0);
        size = offset
            .checked_add(width)
            .ok_or("the .kconfig section would exceed 4 GiB: the .BTF is damaged")?;
        vars.push(Var {
            name,
            record,
            entry,
            offset,
            value,
        });
    }
    let mut data = vec![0u8; size as usize];
    for v in &vars {
        data[v.offset as usize..v.offset as usize + v.value.len()].copy_from_slice(&v.value);
    }
    let mut out = bytes.to_vec();
    let (_, _, datasec_at) = local.get(datasec).ok_or("bad .kconfig")?;
    let mut blob = BtfBlob::new(elf.contents(btf_index)?).ok_or("cannot read .BTF")?;
    let name = blob.add_string(SECTION);
    blob.patch(datasec_at, name);
    blob.patch(datasec_at + 8, size);
    for v in &vars {
        blob.patch(v.record + 12, 1);
        blob.patch(v.entry + 4, v.offset);
    }
    move_section(&mut out, &elf, btf_index, &blob.to_bytes());
    let section = elf.count();
    define_symbols(&mut out, &elf, section, &vars)?;
    add_section(&mut out, &elf, SECTION, &data)?;
    Ok(out)
}

/// Bytes of a type (behind typedefs and qualifiers).
/// The largest `__kconfig` value: libbpf's are bools, tristates, integers and strings of a
/// configuration line. A size read from damaged BTF (4 GiB) was allocated and zeroed for
/// tens of seconds.
const MAX_VALUE: u32 = 4096;

/// The size of type `id`; `None` when it has none or is nested deeper than any real
/// `__kconfig` (an array that contains itself recursed until the stack overflowed).
fn type_size(btf: &Btf<'_>, id: u32, depth: u32) -> Option<u32> {
    if depth > 4 {
        return None;
    }
    let (kind, _, at) = btf.get(btf.resolve(id))?;
    match kind {
        btf::INT | btf::ENUM | btf::STRUCT => u32_at(btf.types, at + 8).ok(),
        3 => {
            let elem = type_size(btf, u32_at(btf.types, at + 12).ok()?, depth + 1)?;
            elem.checked_mul(u32_at(btf.types, at + 20).ok()?)
        }
        _ => None,
    }
}

/// Defines each extern's symbol in the new section at its offset.
fn define_symbols(
    out: &mut [u8],
    elf: &Elf<'_>,
    section: usize,
    vars: &[Var<'_>],
) -> Result<(), String> {
    let symtab = elf.symtab()?;
    let (at, size) = elf.extent(symtab)?;
    let names = elf.contents(elf.header_u32(symtab, 40) as usize)?;
    for sym in (at..at + size).step_by(24) {
        let Some(name) = c_str(names, u32_at(out, sym)? as usize) else {
            continue;
        };
        let Some(v) = vars.iter().find(|v| v.name == name) else {
            continue;
        };
        // STT_OBJECT, binding kept; defined in `section` at the offset, with its size.
        out[sym + 4] = (out[sym + 4] & 0xf0) | 1;
        out[sym + 6..sym + 8].copy_from_slice(&(section as u16).to_le_bytes());
        out[sym + 8..sym + 16].copy_from_slice(&u64::from(v.offset).to_le_bytes());
        out[sym + 16..sym + 24].copy_from_slice(&(v.value.len() as u64).to_le_bytes());
    }
    Ok(())
}

/// Appends a section (read-only data) named `name`: its name to `.shstrtab`, its contents and
/// a new section header table with one more entry at the end of the file.
fn add_section(out: &mut Vec<u8>, elf: &Elf<'_>, name: &str, data: &[u8]) -> Result<(), String> {
    let shstrndx = u16::from_le_bytes([out[0x3e], out[0x3f]]) as usize;
    let mut strtab = {
        let h = elf.header(shstrndx);
        let off =
            u64::from_le_bytes(out[h + 24..h + 32].try_into().map_err(|_| "bad header")?) as usize;
        let len =
            u64::from_le_bytes(out[h + 32..h + 40].try_into().map_err(|_| "bad header")?) as usize;
        out.get(off..off + len).ok_or("bad .shstrtab")?.to_vec()
    };
    let name_at = strtab.len() as u32;
    strtab.extend_from_slice(name.as_bytes());
    strtab.push(0);
    move_section(out, elf, shstrndx, &strtab);
    out.resize(out.len().next_multiple_of(8), 0);
    let data_at = out.len() as u64;
    out.extend_from_slice(data);
    let mut header = [0u8; 64];
    header[0..4].copy_from_slice(&name_at.to_le_bytes());
    header[4..8].copy_from_slice(&1u32.to_le_bytes()); // SHT_PROGBITS
    header[8..16].copy_from_slice(&2u64.to_le_bytes()); // SHF_ALLOC
    header[24..32].copy_from_slice(&data_at.to_le_bytes());
    header[32..40].copy_from_slice(&(data.len() as u64).to_le_bytes());
    header[48..56].copy_from_slice(&8u64.to_le_bytes());
    let table = out[elf.header(0)..elf.header(0) + 64 * elf.count()].to_vec();
    out.resize(out.len().next_multiple_of(8), 0);
    let table_at = out.len() as u64;
    out.extend_from_slice(&table);
    out.extend_from_slice(&header);
    out[0x28..0x30].copy_from_slice(&table_at.to_le_bytes());
    out[0x3c..0x3e].copy_from_slice(&((elf.count() + 1) as u16).to_le_bytes());
    Ok(())
}

/// The names of weak symbols (a weak `__kconfig` the kernel lacks is 0, not an error).
fn weak_symbols<'a>(elf: &Elf<'a>) -> Result<Vec<&'a str>, String> {
    let symtab = elf.symtab()?;
    let table = elf.contents(symtab)?;
    let names = elf.contents(elf.header_u32(symtab, 40) as usize)?;
    Ok(table
        .chunks_exact(24)
        .filter(|s| s[4] >> 4 == 2)
        .filter_map(|s| c_str(names, u32_at(s, 0).ok()? as usize))
        .collect())
}

/// The running kernel's configuration and release.
struct KernelConfig {
    options: HashMap<String, String>,
    release: String,
}

impl KernelConfig {
    fn read() -> Result<KernelConfig, String> {
        let gz = std::fs::read("/proc/config.gz").map_err(|e| {
            format!("__kconfig externs need the kernel's configuration: /proc/config.gz: {e}")
        })?;
        let mut text = String::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut text)
            .map_err(|e| format!("/proc/config.gz: {e}"))?;
        let options = text
            .lines()
            .filter_map(|l| {
                if let Some(name) = l
                    .strip_prefix("# ")
                    .and_then(|l| l.strip_suffix(" is not set"))
                {
                    return Some((name.to_owned(), "n".to_owned()));
                }
                let (k, v) = l.split_once('=')?;
                Some((k.to_owned(), v.to_owned()))
            })
            .collect();
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        Ok(KernelConfig {
            options,
            release: release.trim().to_owned(),
        })
    }

    /// The bytes of extern `name` of BTF type `ty`, as libbpf sets them.
    fn value(&self, btf: &Btf<'_>, name: &str, ty: u32) -> Result<Vec<u8>, String> {
        let text = match name {
            "LINUX_KERNEL_VERSION" => return Ok(self.kernel_version().to_le_bytes().to_vec()),
            "LINUX_HAS_BPF_COOKIE" | "LINUX_HAS_SYSCALL_WRAPPER" => return Ok(vec![1]),
            _ => self.options.get(name).map(String::as_str).ok_or_else(|| {
                format!("the kernel's configuration has no {name} (and the extern is not __weak)")
            })?,
        };
        let (kind, _, at) = btf.get(btf.resolve(ty)).ok_or("bad __kconfig type")?;
        let size = type_size(btf, ty, 0).unwrap_or(0) as usize;
        let tristate = |t: &str| match t {
            "y" => Some(1u8),
            "m" => Some(2),
            "n" => Some(0),
            _ => None,
        };
        if kind == btf::ENUM {
            let v = tristate(text).ok_or_else(|| format!("{name}={text} is not y, m or n"))?;
            return Ok(vec![v, 0, 0, 0]);
        }
        if kind == btf::INT {
            let encoding = u32_at(btf.types, at + 12).unwrap_or(0) >> 24;
            if encoding & 4 != 0 {
                // bool
                return Ok(vec![u8::from(matches!(text, "y" | "m"))]);
            }
            if size == 1 && tristate(text).is_some() {
                return Ok(vec![text.as_bytes()[0]]);
            }
            let number = match text.strip_prefix("0x") {
                Some(hex) => i128::from_str_radix(hex, 16),
                None => text.parse::<i128>(),
            }
            .map_err(|_| format!("{name}={text} is not a number"))?;
            return Ok((number as u64).to_le_bytes()[..size.min(8)].to_vec());
        }
        // A char array: the string without its quotes.
        Ok(text
            .trim_matches('"')
            .as_bytes()
            .iter()
            .copied()
            .take(size.saturating_sub(1))
            .collect())
    }

    /// KERNEL_VERSION(a, b, c) of the running kernel.
    fn kernel_version(&self) -> u32 {
        let mut parts = self
            .release
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|p| p.parse::<u32>().ok());
        let (a, b, c) = (
            parts.next().unwrap_or(0),
            parts.next().unwrap_or(0),
            parts.next().unwrap_or(0),
        );
        (a << 16) + (b << 8) + c.min(255)
    }
}
