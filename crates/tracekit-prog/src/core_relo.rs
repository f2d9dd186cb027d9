//! Naming a CO-RE relocation that could not be applied. aya-obj turns such an instruction into
//! a call of the non-existent helper 0xbad2310 (as libbpf does), so the verifier can only say
//! `invalid func unknown#195896080`; libbpf's loader says which type and field. This reads the
//! object's `.BTF` and `.BTF.ext` to say the same.

use crate::btf::Btf;
use object::{Object, ObjectSection};

/// The name of a CO-RE relocation kind (`enum bpf_core_relo_kind`).
fn kind_name(kind: u32) -> &'static str {
    const NAMES: [&str; 13] = [
        "field_byte_offset",
        "field_byte_size",
        "field_exists",
        "field_signed",
        "field_lshift_u64",
        "field_rshift_u64",
        "type_id_local",
        "type_id_target",
        "type_exists",
        "type_size",
        "enumval_exists",
        "enumval_value",
        "type_matches",
    ];
    NAMES.get(kind as usize).copied().unwrap_or("unknown kind")
}

/// The CO-RE relocation of the instruction at byte `offset` of section `section`: what it
/// reaches (`struct bitfields.b`) and its kind (`field_lshift_u64`); `None` when the object
/// has none there.
pub(crate) fn describe(elf: &[u8], section: &str, offset: usize) -> Option<(String, &'static str)> {
    let file = object::File::parse(elf).ok()?;
    let btf = Btf::parse(file.section_by_name(".BTF")?.data().ok()?)?;
    let ext = file.section_by_name(".BTF.ext")?.data().ok()?;
    let (_, type_id, access, kind) = core_relo_at(ext, &btf, section, offset)?;
    Some((btf.access_path(type_id, &access), kind_name(kind)))
}

/// One record of `.BTF.ext`'s CO-RE relocation subsection (`struct bpf_core_relo`).
#[derive(Debug, Clone)]
pub(crate) struct CoreRelo<'a> {
    /// The program section the instruction is in.
    pub section: &'a str,
    /// Where the section's name is in the `.BTF` strings.
    pub section_name_off: u32,
    /// Byte offset of the instruction in the section.
    pub insn_off: u32,
    /// The local root type.
    pub type_id: u32,
    pub access: &'a str,
    pub kind: u32,
    /// The record's bytes: insn_off, type_id, access_str_off, kind.
    pub raw: &'a [u8],
}

/// The CO-RE relocation subsection of `ext`: (start, length) in `ext`, `None` when it has none.
pub(crate) fn subsection(ext: &[u8]) -> Option<(usize, usize)> {
    let hdr_len = u32_at(ext, 4)? as usize;
    if hdr_len < 32 {
        return None;
    }
    let start = hdr_len + u32_at(ext, 24)? as usize;
    let len = u32_at(ext, 28)? as usize;
    (len >= 4 && start + len <= ext.len()).then_some((start, len))
}

/// Every CO-RE relocation record of `ext` (whose strings are in `btf`), in order.
pub(crate) fn records<'a>(ext: &'a [u8], btf: &Btf<'a>) -> Option<Vec<CoreRelo<'a>>> {
    let (start, len) = subsection(ext)?;
    let end = start + len;
    let rec_size = u32_at(ext, start)? as usize;
    if rec_size < 16 {
        return None;
    }
    let mut found = Vec::new();
    let mut at = start + 4;
    while at + 8 <= end {
        let section_name_off = u32_at(ext, at)?;
        let section = btf.string(section_name_off)?;
        let count = u32_at(ext, at + 4)? as usize;
        if at + 8 + count.checked_mul(rec_size)? > end {
            return None;
        }
        for i in 0..count {
            let rec = at + 8 + i * rec_size;
            found.push(CoreRelo {
                section,
                section_name_off,
                insn_off: u32_at(ext, rec)?,
                type_id: u32_at(ext, rec + 4)?,
                access: btf.string(u32_at(ext, rec + 8)?)?,
                kind: u32_at(ext, rec + 12)?,
                raw: ext.get(rec..rec + rec_size)?,
            });
        }
        at += 8 + count.checked_mul(rec_size)?;
    }
    Some(found)
}

/// (insn_off, type_id, access string, kind) of the relocation at `offset` in `section`.
fn core_relo_at(
    ext: &[u8],
    btf: &Btf<'_>,
    section: &str,
    offset: usize,
) -> Option<(u32, u32, String, u32)> {
    let relo = records(ext, btf)?
        .into_iter()
        .find(|r| r.section == section && r.insn_off as usize == offset)?;
    Some((
        relo.insn_off,
        relo.type_id,
        relo.access.to_owned(),
        relo.kind,
    ))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}
