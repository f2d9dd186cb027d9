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

/// (insn_off, type_id, access string, kind) of the relocation at `offset` in `section`.
fn core_relo_at(
    ext: &[u8],
    btf: &Btf<'_>,
    section: &str,
    offset: usize,
) -> Option<(u32, u32, String, u32)> {
    let hdr_len = u32_at(ext, 4)? as usize;
    if hdr_len < 32 {
        return None;
    }
    let start = hdr_len + u32_at(ext, 24)? as usize;
    let end = start + u32_at(ext, 28)? as usize;
    let rec_size = u32_at(ext, start)? as usize;
    let mut at = start + 4;
    while at + 8 <= end {
        let name = btf.string(u32_at(ext, at)?)?;
        let count = u32_at(ext, at + 4)? as usize;
        for i in 0..count {
            let rec = at + 8 + i * rec_size;
            let insn_off = u32_at(ext, rec)?;
            if name == section && insn_off as usize == offset {
                let access = btf.string(u32_at(ext, rec + 8)?)?.to_owned();
                return Some((
                    insn_off,
                    u32_at(ext, rec + 4)?,
                    access,
                    u32_at(ext, rec + 12)?,
                ));
            }
        }
        at += 8 + count.checked_mul(rec_size)?;
    }
    None
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}
