//! Renaming program sections in a BPF ELF object, for aya-obj.
//!
//! aya-obj 0.3 refuses a whole object when one program section has a name it does not know
//! (`tc`, `lwt_xmit`, `syscall`, `tcx/ingress`, ... all standard libbpf names). tracekit types
//! programs from libbpf's table itself (`section`), so it only needs aya-obj to parse the
//! object: each section aya-obj would refuse gets a name it accepts (`socket/tracekit.N`).
//!
//! Section names are also keys into `.BTF.ext` (function and line info, CO-RE relocations), by
//! an offset into the `.BTF` string table, so the new names are appended to that table and the
//! `.BTF.ext` records of a renamed section point at them. The new `.shstrtab` and `.BTF` are
//! appended to the file and their section headers moved there; nothing else moves.

use crate::btf::BtfBlob;
use std::collections::HashMap;

const EHDR_SIZE: usize = 64;
const SHDR_SIZE: usize = 64;

/// The name a renamed section gets: `socket` is a name aya-obj parses, and what follows the
/// slash keeps the names unique.
pub(crate) fn stand_in_name(n: usize) -> String {
    format!("socket/tracekit.{n}")
}

/// Returns `bytes` with the sections named in `renames` (old name → new name) renamed.
pub(crate) fn rename_sections(
    bytes: &[u8],
    renames: &HashMap<String, String>,
) -> Result<Vec<u8>, String> {
    let elf = Elf::parse(bytes)?;
    let mut out = bytes.to_vec();
    if let (Some(btf), Some(ext)) = (elf.section(".BTF"), elf.section(".BTF.ext")) {
        let new_offsets = append_btf_strings(&mut out, &elf, btf, renames)?;
        repoint_btf_ext(&mut out, &elf, btf, ext, &new_offsets)?;
    }
    rename_in_shstrtab(&mut out, &elf, renames)?;
    Ok(out)
}

/// The parts of an ELF64 little-endian file the renaming and extern resolution need.
pub(crate) struct Elf<'a> {
    bytes: &'a [u8],
    shoff: usize,
    shnum: usize,
    shstrndx: usize,
}

impl<'a> Elf<'a> {
    pub(crate) fn parse(bytes: &'a [u8]) -> Result<Self, String> {
        if bytes.len() < EHDR_SIZE || &bytes[..4] != b"\x7fELF" {
            return Err("not an ELF file".into());
        }
        if bytes[4] != 2 || bytes[5] != 1 {
            return Err(
                "only 64-bit little-endian BPF objects (clang -target bpfel) are supported".into(),
            );
        }
        let elf = Elf {
            bytes,
            shoff: u64_at(bytes, 0x28)? as usize,
            shnum: u16_at(bytes, 0x3c)? as usize,
            shstrndx: u16_at(bytes, 0x3e)? as usize,
        };
        let end = elf
            .shnum
            .checked_mul(SHDR_SIZE)
            .and_then(|n| n.checked_add(elf.shoff));
        if end.is_none_or(|end| end > bytes.len()) || elf.shstrndx >= elf.shnum {
            return Err("section headers outside the file".into());
        }
        Ok(elf)
    }

    /// How many sections there are.
    pub(crate) fn count(&self) -> usize {
        self.shnum
    }

    /// A u32 field of section header `index` (`sh_type` at 4, `sh_link` at 40, `sh_info` at 44).
    pub(crate) fn header_u32(&self, index: usize, field: usize) -> u32 {
        u32_at(self.bytes, self.header(index) + field).unwrap_or(0)
    }

    pub(crate) fn header(&self, index: usize) -> usize {
        self.shoff + index * SHDR_SIZE
    }

    /// (file offset, size) of a section's contents.
    pub(crate) fn extent(&self, index: usize) -> Result<(usize, usize), String> {
        let h = self.header(index);
        let offset = u64_at(self.bytes, h + 24)? as usize;
        let size = u64_at(self.bytes, h + 32)? as usize;
        if offset
            .checked_add(size)
            .is_none_or(|end| end > self.bytes.len())
        {
            return Err(format!("section {index} lies outside the file"));
        }
        Ok((offset, size))
    }

    pub(crate) fn contents(&self, index: usize) -> Result<&'a [u8], String> {
        let (offset, size) = self.extent(index)?;
        Ok(&self.bytes[offset..offset + size])
    }

    pub(crate) fn name(&self, index: usize) -> Result<&'a str, String> {
        let strtab = self.contents(self.shstrndx)?;
        let at = u32_at(self.bytes, self.header(index))? as usize;
        c_str(strtab, at).ok_or_else(|| format!("section {index} has a bad name"))
    }

    /// The index of the symbol table (`SHT_SYMTAB`).
    pub(crate) fn symtab(&self) -> Result<usize, String> {
        (0..self.shnum)
            .find(|&i| self.header_u32(i, 4) == 2)
            .ok_or_else(|| "no symbol table".to_owned())
    }

    /// Whether the object's `.BTF` has a DATASEC called `name` (`.ksyms`, `.kconfig`).
    pub(crate) fn has_datasec(bytes: &[u8], name: &str) -> bool {
        let Ok(elf) = Elf::parse(bytes) else {
            return false;
        };
        let btf = elf.section(".BTF").and_then(|i| elf.contents(i).ok());
        btf.and_then(crate::btf::Btf::parse)
            .is_some_and(|b| b.datasec(name).is_some())
    }

    pub(crate) fn section(&self, name: &str) -> Option<usize> {
        (0..self.shnum).find(|&i| self.name(i) == Ok(name))
    }
}

/// Appends `data` at the end of `out` (8-byte aligned) and points section `index` at it.
pub(crate) fn move_section(out: &mut Vec<u8>, elf: &Elf<'_>, index: usize, data: &[u8]) {
    out.resize(out.len().next_multiple_of(8), 0);
    let offset = out.len() as u64;
    out.extend_from_slice(data);
    let h = elf.header(index);
    out[h + 24..h + 32].copy_from_slice(&offset.to_le_bytes());
    out[h + 32..h + 40].copy_from_slice(&(data.len() as u64).to_le_bytes());
}

fn rename_in_shstrtab(
    out: &mut Vec<u8>,
    elf: &Elf<'_>,
    renames: &HashMap<String, String>,
) -> Result<(), String> {
    let mut strtab = elf.contents(elf.shstrndx)?.to_vec();
    for index in 0..elf.shnum {
        let Some(new) = renames.get(elf.name(index)?) else {
            continue;
        };
        let at = strtab.len() as u32;
        strtab.extend_from_slice(new.as_bytes());
        strtab.push(0);
        let h = elf.header(index);
        out[h..h + 4].copy_from_slice(&at.to_le_bytes());
    }
    move_section(out, elf, elf.shstrndx, &strtab);
    Ok(())
}

/// Appends the new names to the `.BTF` string table; returns old name → new string offset.
fn append_btf_strings(
    out: &mut Vec<u8>,
    elf: &Elf<'_>,
    btf: usize,
    renames: &HashMap<String, String>,
) -> Result<HashMap<String, u32>, String> {
    let mut blob = BtfBlob::new(elf.contents(btf)?).ok_or("cannot read .BTF")?;
    let offsets = renames
        .iter()
        .map(|(old, new)| (old.clone(), blob.add_string(new)))
        .collect();
    move_section(out, elf, btf, &blob.to_bytes());
    Ok(offsets)
}

/// Points every `.BTF.ext` record block of a renamed section at the section's new name.
fn repoint_btf_ext(
    out: &mut [u8],
    elf: &Elf<'_>,
    btf: usize,
    ext: usize,
    new_offsets: &HashMap<String, u32>,
) -> Result<(), String> {
    let btf_data = elf.contents(btf)?;
    let strings = &btf_data[(u32_at(btf_data, 4)? + u32_at(btf_data, 16)?) as usize..];
    let (ext_at, ext_len) = elf.extent(ext)?;
    let ext_data = &elf.bytes[ext_at..ext_at + ext_len];
    let hdr_len = u32_at(ext_data, 4)? as usize;
    // func_info, line_info and (in longer headers) CO-RE relocations: (offset, length) pairs.
    let subsections = if hdr_len >= 32 { 3 } else { 2 };
    for k in 0..subsections {
        let off = u32_at(ext_data, 8 + 8 * k)? as usize;
        let len = u32_at(ext_data, 12 + 8 * k)? as usize;
        let start = hdr_len + off;
        let end = start + len;
        if len == 0 {
            continue;
        }
        let rec_size = u32_at(ext_data, start)? as usize;
        let mut at = start + 4;
        while at + 8 <= end {
            let name_off = u32_at(ext_data, at)? as usize;
            let count = u32_at(ext_data, at + 4)? as usize;
            let name = c_str(strings, name_off).ok_or(".BTF.ext names a missing string")?;
            if let Some(&new) = new_offsets.get(name) {
                out[ext_at + at..ext_at + at + 4].copy_from_slice(&new.to_le_bytes());
            }
            at += 8 + count * rec_size;
        }
    }
    Ok(())
}

pub(crate) fn c_str(table: &[u8], at: usize) -> Option<&str> {
    let rest = table.get(at..)?;
    let end = rest.iter().position(|&b| b == 0)?;
    std::str::from_utf8(&rest[..end]).ok()
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, String> {
    b.get(at..at + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or_else(|| "truncated ELF".to_owned())
}

pub(crate) fn u32_at(b: &[u8], at: usize) -> Result<u32, String> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| "truncated ELF or BTF".to_owned())
}

pub(crate) fn u64_at(b: &[u8], at: usize) -> Result<u64, String> {
    b.get(at..at + 8)
        .map(|s| u64::from_le_bytes(s.try_into().unwrap_or_default()))
        .ok_or_else(|| "truncated ELF".to_owned())
}
